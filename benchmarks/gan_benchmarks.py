"""Runs the GAN benchmark grid of docs/GENERATION.md one run at a time and keeps each run's results JSON.

    python benchmarks/gan_benchmarks.py main        # 2D ring + grid, gan / atom / pacgan, 5 seeds
    python benchmarks/gan_benchmarks.py ablations   # atom settings on the grid
    python benchmarks/gan_benchmarks.py smnist      # stacked MNIST, 3 methods x 2 seeds
    python benchmarks/gan_benchmarks.py smnist_long # the same with 1000 steps instead of 300
    python benchmarks/gan_summarize.py              # the tables of docs/GENERATION.md from the JSON files

Every run uses one thread (`--num_threads 1`): the budget of docs/GENERATION.md. Runs execute one after another in
this process (imports once; each run re-seeds everything); `--subprocess` gives each run its own process. A run
whose JSON already exists is skipped, so an interrupted grid resumes (the JSON is written whole or not at all, and a
run without one starts over). Run JSON: `docs/results/gan/<group>/<name>.json` (the recipe's results.json without
checkpoints); the full outputs stay in `outputs/gan/<group>/<name>/`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from hf_atom.output_files import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "gan")
OUTPUTS = os.path.join(ROOT, "outputs", "gan")

# The reduced 2D budget (ours): see docs/GENERATION.md for why these numbers.
MIXTURE_BUDGET = [
    "--max_steps", "2000", "--batch_size", "100", "--learning_rate", "1e-3", "--adam_beta1", "0.5",
    "--hidden_size", "64", "--disc_units", "64", "--eval_steps", "500",
]  # fmt: skip
SMNIST_BUDGET = ["--max_steps", "300", "--num_eval_samples", "5000", "--learning_rate", "2e-4", "--adam_beta1", "0.5",
                 "--batch_size", "64", "--atom_layer", "1", "--eval_steps", "150"]  # fmt: skip
# A longer stacked-MNIST budget, run when time was left after the grid above.
SMNIST_LONG_BUDGET = [*SMNIST_BUDGET[:1], "1000", *SMNIST_BUDGET[2:-1], "500"]
SEEDS = (0, 1, 2, 3, 4)

# name -> extra flags of the atom ablations on the grid (the default atom run is the reference row).
ABLATIONS = {
    "atom_w1": ["--atom_weight", "1.0"],
    "atom_w10": ["--atom_weight", "10.0"],
    "atom_n1": ["--atom_tokens", "1"],
    "atom_layer1": ["--atom_layer", "1"],
    "atom_literal": ["--atom_step", "literal"],
    "atom_nocharge": ["--atom_charge_constraint", "none"],
}
ABLATION_SEEDS = (0, 1)


def runs(group: str, methods=("gan", "atom", "pacgan")):
    """(name, recipe, flags) of every run of a group."""
    if group == "main":
        for dataset in ("grid", "ring"):
            for method in methods:
                for seed in SEEDS:
                    flags = ["--dataset", dataset, "--method", method, "--seed", str(seed), *MIXTURE_BUDGET]
                    yield f"{dataset}__{method}__s{seed}", "gan_mixture.py", flags
    elif group == "ablations":
        for label, extra in ABLATIONS.items():
            for seed in ABLATION_SEEDS:
                flags = ["--dataset", "grid", "--method", "atom", "--seed", str(seed), *MIXTURE_BUDGET, *extra]
                yield f"grid__{label}__s{seed}", "gan_mixture.py", flags
    elif group in ("smnist", "smnist_long"):
        budget = SMNIST_BUDGET if group == "smnist" else SMNIST_LONG_BUDGET
        for seed in (0, 1):
            for method in methods:
                flags = ["--method", method, "--seed", str(seed), *budget,
                         "--classifier_dir", os.path.join(OUTPUTS, "mnist_classifier")]  # fmt: skip
                yield f"stacked_mnist__{method}__s{seed}", "gan_stacked_mnist.py", flags
    else:
        raise ValueError(f"Unknown group {group!r}; choose main, ablations, smnist or smnist_long.")


def _run_in_process(recipe: str, argv: list[str]) -> None:
    import importlib

    import torch

    sys.path.insert(0, os.path.join(ROOT, "recipes"))
    torch.set_num_threads(1)
    importlib.import_module(recipe.removesuffix(".py")).main(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("group", choices=("main", "ablations", "smnist", "smnist_long"))
    parser.add_argument("--methods", nargs="+", default=["gan", "atom", "pacgan"], help="A subset, in this order.")
    parser.add_argument("--subprocess", action="store_true", help="One process per run.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands only.")
    cli = parser.parse_args()
    os.environ.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=ROOT)
    for name, recipe, flags in runs(cli.group, tuple(cli.methods)):
        target = os.path.join(RESULTS, cli.group, f"{name}.json")
        if os.path.exists(target):
            continue
        out = os.path.join(OUTPUTS, cli.group, name)
        # no JSON yet: what an earlier, killed run left in `out` is started over
        command = [sys.executable, os.path.join(ROOT, "recipes", recipe), *flags, "--num_threads", "1",
                   "--disable_tqdm", "true", "--overwrite_output_dir", "true", "--output_dir", out]  # fmt: skip
        print(" ".join(command[1:]), flush=True)
        if cli.dry_run:
            continue
        start = time.perf_counter()
        if cli.subprocess:
            subprocess.run(command, check=True, env=env, cwd=ROOT)
        else:
            _run_in_process(recipe, command[2:])
        with open(os.path.join(out, "results.json"), encoding="utf-8") as handle:
            results = json.load(handle)
        results["command"] = "python " + " ".join(
            os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in command[1:]
        )
        results["process_wall_s"] = round(time.perf_counter() - start, 1)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        atomic_write_text(target, json.dumps(results, indent=1, sort_keys=True))  # whole, or absent and rerun
        if os.path.exists(os.path.join(out, "samples.png")):
            shutil.copy(os.path.join(out, "samples.png"), os.path.join(out, "..", f"{name}.png"))
        print(f"  done in {results['process_wall_s']} s", flush=True)


if __name__ == "__main__":
    main()
