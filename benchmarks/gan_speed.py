"""Milliseconds per seed-step of the 2D-mixture GAN at protocol width: today's one-run recipe loop against the
ensemble engine (recipes/gan_ensemble.py) in fp32, bf16 and compiled, side by side in one run.

    python benchmarks/gan_speed.py                       # protocol width, 1 thread, the table of docs/PERFORMANCE.md
    python benchmarks/gan_speed.py --tiny --steps 4      # the test's smoke run

Each row runs two lengths (K and 2K steps) and reports (wall(2K) - wall(K)) / K per member, so set-up, the final
evaluation and the checkpoint cancel out. A "seed-step" is one D update and one G update of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes"))

TINY = ["--hidden_size", "16", "--disc_units", "8", "--num_train", "500", "--num_eval_samples", "50",
        "--batch_size", "10", "--atom_tokens", "4"]  # fmt: skip


def recipe_ms(steps: int, network: list[str], threads: int, method: str = "gan") -> float:
    """Today's recipe: `gan_mixture.main`, one run, fp32 (its train_wall_s excludes the final evaluation)."""
    import gan_mixture

    walls = []
    for k in (steps, 2 * steps):
        with tempfile.TemporaryDirectory() as out:
            flags = ["--dataset", "grid", "--method", method, "--max_steps", str(k), "--output_dir", out,
                     "--disable_tqdm", "true", "--plot", "false", "--num_threads", str(threads), *network]  # fmt: skip
            walls.append(gan_mixture.main(flags)["train_wall_s"])
    return 1000 * (walls[1] - walls[0]) / steps


def ensemble_ms(steps: int, network: list[str], threads: int, seeds: int, methods: str, extra: list[str]) -> float:
    import gan_ensemble

    walls = []
    for k in (steps, 2 * steps):
        with tempfile.TemporaryDirectory() as out:
            flags = ["--datasets", "grid", "--methods", methods, "--seeds", f"0-{seeds - 1}", "--max_steps", str(k),
                     "--output_dir", out, "--num_threads", str(threads), *network, *extra]  # fmt: skip
            args, atom_args = gan_ensemble.parse(flags)
            start = time.perf_counter()
            gan_ensemble.train_ensemble(args, atom_args, log=lambda *_: None)
            walls.append(time.perf_counter() - start)
    return 1000 * (walls[1] - walls[0]) / steps / len(args.members)


def compiled_ms(steps: int, network: list[str], threads: int, seeds: int, dtype) -> float:
    """The ensemble's networks under `torch.compile` (inductor); the optimiser step stays eager."""
    import gan_ensemble

    torch.set_num_threads(threads)
    args, atom_args = gan_ensemble.parse(["--seeds", f"0-{seeds - 1}", "--output_dir", "unused", *network])
    ensemble = gan_ensemble.MixtureGanEnsemble(args.members, args, atom_args)
    generate, discriminate = torch.compile(ensemble.generate), torch.compile(ensemble.discriminate)
    opt_g = torch.optim.Adam(ensemble.generator_parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(ensemble.discriminator_parameters(), lr=1e-4)
    members, n = len(args.members), args.batch_size
    real = torch.randn(members, n, 2)

    def step():
        with torch.no_grad():
            fake, _ = generate(torch.randn(members, n, 2), dtype=dtype)
        loss = (gan_ensemble._softplus_mean(-discriminate(real, dtype=dtype))
                + gan_ensemble._softplus_mean(discriminate(fake, dtype=dtype))).sum()  # fmt: skip
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
        fake, _ = generate(torch.randn(members, n, 2), dtype=dtype)
        loss = gan_ensemble._softplus_mean(-discriminate(fake, dtype=dtype)).sum()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()

    for _ in range(3):  # compilation (both graphs, with and without grad)
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps / members


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="K: each row runs K and 2K steps.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=10, help="Members of the larger ensembles.")
    parser.add_argument("--tiny", action="store_true", help="Tiny networks (a smoke run, not a measurement).")
    parser.add_argument("--no_compile", action="store_true", help="Skip the torch.compile row.")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "gan_speed_cpu.json"))
    args = parser.parse_args(argv)
    network = TINY if args.tiny else []
    torch.set_num_threads(args.threads)
    bf16 = ["--precision", "bf16"]
    rows = [("today's recipe (gan_mixture.py), 1 run, fp32", lambda: recipe_ms(args.steps, network, args.threads))]
    rows += [
        (f"ensemble, {s} run{'s' * (s > 1)}, {p}", (lambda s=s, e=e: ensemble_ms(args.steps, network, args.threads, s, "gan", e)))
        for s, p, e in ((1, "fp32", []), (5, "fp32", []), (args.seeds, "fp32", []), (5, "bf16", bf16), (args.seeds, "bf16", bf16))
    ]  # fmt: skip
    rows.append((f"ensemble, {args.seeds} runs, bf16, atom lambda 0.1",
                 lambda: ensemble_ms(args.steps, network, args.threads, args.seeds, "atom:0.1", bf16)))  # fmt: skip
    if not args.no_compile:
        rows.append((f"ensemble, {args.seeds} runs, bf16, torch.compile (networks only)",
                     lambda: compiled_ms(args.steps, network, args.threads, args.seeds, torch.bfloat16)))  # fmt: skip
    results = []
    for name, fn in rows:
        try:
            ms = fn()
        except Exception as error:  # a compiler missing on this machine is a result, not a crash
            results.append({"setting": name, "ms_per_seed_step": None, "error": f"{type(error).__name__}: {error}"})
            continue
        results.append({"setting": name, "ms_per_seed_step": round(ms, 3)})
    base = results[0]["ms_per_seed_step"]
    print(f"\nms per seed-step (one D + one G update of one run), {'tiny' if args.tiny else 'protocol'} networks, "
          f"{args.threads} thread(s), load average {os.getloadavg()[0]:.2f}, {platform.processor() or platform.machine()}")  # fmt: skip
    print("| setting | ms per seed-step | vs today's recipe |\n| --- | --- | --- |")
    for row in results:
        ms = row["ms_per_seed_step"]
        ratio = f"{base / ms:.2f}x fewer ms" if ms and base else row.get("error", "")[:80]
        print(f"| {row['setting']} | {ms if ms is not None else 'failed'} | {ratio} |")
    if not args.tiny:
        payload = {"rows": results, "threads": args.threads, "steps": args.steps, "torch": torch.__version__,
                   "load_average": os.getloadavg()}  # fmt: skip
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
