"""The atom objective's step (forward + backward) with a cross-batch memory of M = 0, 1024, 8192 samples (D9).

    python benchmarks/memory_speed.py                      # B = 16, N = 64, D = 384 (MiniLM-sized), CPU
    python benchmarks/memory_speed.py --batch 8 --dim 576  # SmolLM2-135M width

Prints one table (median ms, ratio to M = 0, peak tensor MiB, pairs per step) with the thread count and load
average (the machine may be shared), and writes JSON to benchmarks/results/memory_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import median_ms, peak_mb  # noqa: E402

from hf_atom import AtomConfig  # noqa: E402
from hf_atom.regularizer import AtomObjective  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1024, 8192])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    q = (torch.rand(args.batch, args.tokens, generator=generator) * 2 - 1).requires_grad_()
    p = torch.nn.functional.normalize(torch.randn(args.batch, args.tokens, args.dim, generator=generator), dim=-1)
    p.requires_grad_()
    rows = []
    for size in args.sizes:
        objective = AtomObjective(AtomConfig(weight=0.1, memory_size=size))
        for _ in range(max(1, size // args.batch)):  # a full queue
            with torch.no_grad():
                objective(q, p + 0.01 * torch.randn_like(p))

        def step(objective=objective):
            out = objective(q, p)
            out.objective.backward()
            return out

        ms = median_ms(step, device, repeats=args.repeats)
        peak = peak_mb(step, device)
        out = step()
        rows.append(
            {
                "memory_size": size,
                "median_ms": ms,
                "peak_mib": peak,
                "pairs": int(out.parts.num_pairs),
                "memory_pairs": int(out.statistics()["atom_memory_pairs"]),
            }  # fmt: skip
        )
    base = rows[0]["median_ms"]
    load = os.getloadavg()
    print(f"B={args.batch} N={args.tokens} D={args.dim}  threads={torch.get_num_threads()}  load average={load}")
    print(f"{'M':>6} {'median ms':>10} {'x M=0':>7} {'peak MiB':>9} {'pairs':>6} {'memory pairs':>13}")
    for row in rows:
        print(
            f"{row['memory_size']:>6} {row['median_ms']:>10.2f} {row['median_ms'] / base:>7.2f} "
            f"{row['peak_mib']:>9.1f} {row['pairs']:>6} {row['memory_pairs']:>13}"
        )
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "memory_speed.json"), "w") as handle:
        payload = {"args": vars(args), "threads": torch.get_num_threads(), "loadavg": load, "rows": rows}
        json.dump(payload, handle, indent=2)


if __name__ == "__main__":
    main()
