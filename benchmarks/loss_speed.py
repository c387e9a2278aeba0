"""The atomic loss alone, forward + backward: naive double sums vs the factorised form vs a compiled one.

    python benchmarks/loss_speed.py                 # CPU sizes: N = 197, D = 192, B in 8..256
    python benchmarks/loss_speed.py --device cuda   # B in 32..256, N = 197, D = 768

Prints a table (median ms, speed-up over the naive loop, peak MiB) and writes JSON to benchmarks/results/.
Variants:
- naive_loop: `hf_atom.reference.naive_atom_loss`, the literal Eq. 5 double sum, pair by pair (the test reference);
- naive_vectorized: the same double sum as one (B, B, N, N) tensor (skipped where it needs > --naive_max_gb);
- factorised: `hf_atom.atom_loss` (exact factorisation D2, eager);
- compiled: `torch.compile(hf_atom.atom_loss)`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import median_ms, peak_mb  # noqa: E402

import hf_atom  # noqa: E402
from hf_atom.reference import naive_atom_loss  # noqa: E402

SOFTENING = 0.1


def naive_vectorized(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 5 with every token pair of every sample pair materialised: (B, B, N, N)."""
    weights = mask.to(q.dtype)
    q = q * weights
    n = weights.sum(1)
    m = (1 - q.clamp(min=0)) * weights
    mu = (m[..., None] * p).sum(1) / n[:, None]
    r = (q.clamp(min=0) * (p - mu[:, None]).norm(dim=-1)).sum(1) / n
    dbar = (mu[:, None] - mu[None]).norm(dim=-1)
    rbar = (r[:, None] + r[None]) / 2
    products = q[:, None, :, None] * q[None, :, None, :]  # (B, B, N, N)
    d = dbar[..., None, None] + rbar[..., None, None] * (products < 0)
    energy = (products / torch.sqrt(d**2 + SOFTENING**2)).sum((-1, -2)) / (n[:, None] * n[None])
    off_diagonal = ~torch.eye(q.shape[0], dtype=torch.bool, device=q.device)
    return energy[off_diagonal].mean()


def make_inputs(batch: int, tokens: int, dim: int, device: torch.device):
    generator = torch.Generator(device="cpu").manual_seed(0)
    q = (torch.rand(batch, tokens, generator=generator) * 2 - 1).to(device).requires_grad_()
    p = torch.randn(batch, tokens, dim, generator=generator).to(device).requires_grad_()
    mask = torch.ones(batch, tokens, dtype=torch.bool, device=device)
    return q, p, mask


def forward_backward(loss_fn, q, p, mask):
    def step():
        q.grad = p.grad = None
        loss_fn(q, p, mask).backward()

    return step


def measure(
    variants: dict, batch: int, tokens: int, dim: int, device: torch.device, naive_max_batch: int = 32,
    naive_max_gb: float = 2.0, log=print,
) -> list[dict]:  # fmt: skip
    """Median forward + backward ms and peak MiB of each variant on the same random inputs (one row each)."""
    q, p, mask = make_inputs(batch, tokens, dim, device)
    rows, reference = [], None
    for name, loss_fn in variants.items():
        if name == "naive_loop" and batch > naive_max_batch:
            continue
        if name == "naive_vectorized" and batch * batch * tokens**2 * 4 * 6 / 2**30 > naive_max_gb:
            continue
        step = forward_backward(loss_fn, q, p, mask)
        value = loss_fn(q, p, mask).item()
        reference = value if reference is None else reference
        slow = name.startswith("naive")
        ms = median_ms(step, device, warmup=1 if slow else 5, repeats=5 if slow else 50)
        # compiled kernels bypass the op-level tracker on CPU: no peak there
        memory = peak_mb(step, device) if not name.startswith("compiled") or device.type == "cuda" else float("nan")
        rows.append({"batch": batch, "tokens": tokens, "dim": dim, "variant": name, "ms": ms, "peak_mib": memory,
                     "loss": value, "abs_diff_vs_first": abs(value - reference)})  # fmt: skip
        log(f"B={batch:4d} {name:17s} {ms:10.3f} ms  peak {memory:9.2f} MiB  loss {value:.6g}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_sizes", type=int, nargs="+")
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--dim", type=int)
    parser.add_argument(
        "--naive_max_batch",
        type=int,
        default=None,
        help="Skip the naive loop above this batch size (default: 32 on CPU, 256 on CUDA).",
    )
    parser.add_argument("--naive_max_gb", type=float, default=2.0)
    parser.add_argument("--no_compile", action="store_true")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch_sizes = args.batch_sizes or ([32, 64, 128, 256] if cuda else [8, 16, 32, 64, 128, 256])
    dim = args.dim or (768 if cuda else 192)
    naive_max_batch = args.naive_max_batch or (256 if cuda else 32)

    variants = {
        "naive_loop": lambda q, p, m: naive_atom_loss(q, p, m, softening=SOFTENING),
        "naive_vectorized": naive_vectorized,
        "factorised": lambda q, p, m: hf_atom.atom_loss(q, p, m, softening=SOFTENING),
    }
    if not args.no_compile:
        variants["compiled"] = torch.compile(
            lambda q, p, m: hf_atom.atom_loss(q, p, m, softening=SOFTENING), dynamic=False
        )

    rows = []
    for batch in batch_sizes:
        rows += measure(variants, batch, args.tokens, dim, device, naive_max_batch, args.naive_max_gb)

    print(f"\nAtomic loss forward+backward, N={args.tokens}, D={dim}, {device_name(device)}\n")
    print("| B | variant | median ms | speed-up vs naive_loop | peak MiB | loss diff. vs first variant |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        naive = next((r["ms"] for r in rows if r["batch"] == row["batch"] and r["variant"] == "naive_loop"), None)
        speedup = f"{naive / row['ms']:.0f}x" if naive else "n/a"
        print(
            f"| {row['batch']} | {row['variant']} | {row['ms']:.3f} | {speedup} | {row['peak_mib']:.2f} | "
            f"{row['abs_diff_vs_first']:.1e} |"
        )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"loss_speed_{device.type}.json")
    with open(path, "w") as handle:
        json.dump({"device": device_name(device), "torch": torch.__version__, "rows": rows}, handle, indent=2)
    print(f"\nwritten {path}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
