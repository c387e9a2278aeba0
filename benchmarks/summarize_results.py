"""Summarise finetuning runs (baseline vs atom modeling) as Markdown tables.

Reads every ``results.json`` written by ``recipes/image_classification.py`` or ``recipes/text_classification.py``
laid out as::

    ROOT/<task>/<variant>/seed<k>/results.json

and prints one Markdown table per task: variant, number of seeds, mean ± sample std of the task's metrics
(test accuracy and test macro F1 when the run has a test split, validation MCC when it does not, e.g. CoLA),
mean training runtime, and the per-seed values.

    python benchmarks/summarize_results.py                      # ROOT = outputs/results
    python benchmarks/summarize_results.py --root other/results --variants baseline,atom

Standard library only (the statistics: `benchmarks/_stats.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from _stats import mean_std

# Variants listed first, in this order; any other variant follows alphabetically.
PREFERRED_ORDER = ("baseline", "atom")
SEED_DIR = re.compile(r"^seed(\d+)$")


def load_runs(root: str) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """``{task: {variant: {seed: results}}}`` for every ROOT/task/variant/seed<k>/results.json."""
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    if not os.path.isdir(root):
        raise SystemExit(f"No results directory at {root!r}.")
    for task in sorted(os.listdir(root)):
        task_dir = os.path.join(root, task)
        if not os.path.isdir(task_dir):
            continue
        for variant in sorted(os.listdir(task_dir)):
            variant_dir = os.path.join(task_dir, variant)
            if not os.path.isdir(variant_dir):
                continue
            for seed_name in sorted(os.listdir(variant_dir)):
                match = SEED_DIR.match(seed_name)
                path = os.path.join(variant_dir, seed_name, "results.json")
                if match is None or not os.path.isfile(path):
                    continue
                with open(path, encoding="utf-8") as handle:
                    runs.setdefault(task, {}).setdefault(variant, {})[int(match.group(1))] = json.load(handle)
    return runs


def metric_columns(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(label, split, key)`` of the metrics to report: test accuracy + macro F1 if any run has a test split,
    else validation MCC (the CoLA / GLUE metric) plus validation accuracy."""
    if any(isinstance(r.get("test"), dict) and "accuracy" in r["test"] for r in results):
        return [("test acc", "test", "accuracy"), ("test F1-macro", "test", "f1_macro")]
    return [("val MCC", "validation", "mcc"), ("val acc", "validation", "accuracy")]


def get(results: dict[str, Any], split: str | None, key: str) -> float | None:
    """A number from one run's results (None when absent)."""
    source = results.get(split) if split else results
    value = source.get(key) if isinstance(source, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def mean_std_cell(values: list[float]) -> str:
    """``mean ± sample std`` (std shown as n/a for a single value)."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f} ± n/a"


def order_variants(variants: list[str]) -> list[str]:
    first = [v for v in PREFERRED_ORDER if v in variants]
    return first + sorted(v for v in variants if v not in PREFERRED_ORDER)


def task_table(task: str, by_variant: dict[str, dict[int, dict[str, Any]]], variants: list[str] | None) -> str:
    """The Markdown table of one task."""
    all_results = [r for seeds in by_variant.values() for r in seeds.values()]
    columns = metric_columns(all_results)
    header = ["variant", "seeds"] + [f"{label} (mean ± std)" for label, _, _ in columns]
    header += ["train runtime s (mean)", f"per-seed {columns[0][0]}"]
    lines = [f"### {task}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = order_variants(list(by_variant)) if variants is None else [v for v in variants if v in by_variant]
    for variant in names:
        seeds = by_variant[variant]
        row = [variant, str(len(seeds))]
        for _, split, key in columns:
            row.append(mean_std_cell([v for r in seeds.values() if (v := get(r, split, key)) is not None]))
        runtimes = [v for r in seeds.values() if (v := get(r, None, "train_runtime_s")) is not None]
        row.append(f"{mean_std(runtimes).mean:.0f}" if runtimes else "n/a")
        _, split, key = columns[0]
        per_seed = []
        for seed in sorted(seeds):
            value = get(seeds[seed], split, key)
            per_seed.append(f"s{seed}: {value:.4f}" if value is not None else f"s{seed}: n/a")
        row.append(", ".join(per_seed))
        lines.append("| " + " | ".join(row) + " |")
    first = all_results[0] if all_results else {}
    size_keys = ("num_train", "num_validation", "num_test")
    sizes = ", ".join(f"{key.split('_', 1)[1]}={first[key]}" for key in size_keys if key in first)
    if sizes:
        lines += ["", f"Model: {first.get('model', '?')}; data sizes: {sizes}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="outputs/results", help="Results root: ROOT/<task>/<variant>/seed<k>/.")
    parser.add_argument("--tasks", default=None, help="Comma-separated tasks to show (default: all, alphabetical).")
    parser.add_argument("--variants", default=None, help="Comma-separated variants to show, in this order.")
    args = parser.parse_args(argv)

    runs = load_runs(args.root)
    tasks = args.tasks.split(",") if args.tasks else sorted(runs)
    variants = args.variants.split(",") if args.variants else None
    tables = [task_table(task, runs[task], variants) for task in tasks if task in runs]
    if not tables:
        raise SystemExit(f"No results.json found under {args.root!r}/<task>/<variant>/seed<k>/.")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
