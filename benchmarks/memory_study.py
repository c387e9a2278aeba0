"""The cross-batch memory study (issue 20, docs/DESIGN.md D9): M = 1024 against M = 0 on the same seeds.

    python benchmarks/memory_study.py --root outputs/x20 --out docs/results/memory

Reads
- CoLA runs of `recipes/text_classification.py`: ROOT/cola/<variant>/seed<k>/results.json (variants `atom_m0`,
  `atom_m1024`, optionally `baseline`), validation MCC and accuracy;
- language-model generation evaluations of `benchmarks/generation_eval.py`: ROOT/lm_eval/<name>__<name>.json with
  names `w<lambda>_m<M>_s<seed>` (and `base_s<seed>` for lambda = 0), the diversity and quality metrics per
  sampling temperature;
and writes tables.md (the markdown tables), stats.json and, for the language models, a diversity-quality plot.
Every comparison is paired by seed (`_stats.paired_test`: sign test and Wilcoxon; with 3 seeds the smallest
two-sided p either can give is 0.25, so a paired t-test is shown beside them: it assumes normal differences).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _stats import mean_std, paired_test  # noqa: E402

LM_NAME = re.compile(r"^(?:w(?P<weight>[0-9.]+)_m(?P<memory>\d+)|base)_s(?P<seed>\d+)$")
LM_METRICS = ("heldout_ppl", "base_ppl_of_samples", "distinct_1", "distinct_2", "self_bleu", "self_bleu_within_prompt")
COLA_METRICS = ("mcc", "accuracy")


def paired_row(control: dict[int, float], method: dict[int, float]) -> dict[str, Any]:
    """Mean ± std of each arm and of the per-seed differences, the sign/Wilcoxon test and a paired t-test."""
    from scipy.stats import ttest_rel

    seeds = sorted(set(control) & set(method))
    diffs = [method[s] - control[s] for s in seeds]
    row = {"seeds": seeds, "control": mean_std(control[s] for s in seeds)._asdict(),
           "method": mean_std(method[s] for s in seeds)._asdict(), "diff": mean_std(diffs)._asdict(),
           "per_seed_diff": dict(zip(seeds, diffs)), **paired_test(control, method)}  # fmt: skip
    row["t_p"] = (
        float(ttest_rel([method[s] for s in seeds], [control[s] for s in seeds]).pvalue)
        if len(seeds) > 1
        else math.nan
    )
    return row


def _fmt(stats: dict, digits: int) -> str:
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _p(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def cola(root: str) -> tuple[str, dict]:
    folder = os.path.join(root, "cola")
    runs: dict[str, dict[int, dict]] = {}
    for variant in sorted(os.listdir(folder)):
        for entry in sorted(os.listdir(os.path.join(folder, variant))):
            path = os.path.join(folder, variant, entry, "results.json")
            if entry.startswith("seed") and os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    runs.setdefault(variant, {})[int(entry[4:])] = json.load(handle)
    lines = ["| metric | M = 0 | M = 1024 | difference (M 1024 - M 0) | per seed | sign p | Wilcoxon p | t-test p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    stats = {}
    for metric in COLA_METRICS:
        control = {s: r["validation"][metric] for s, r in runs.get("atom_m0", {}).items()}
        method = {s: r["validation"][metric] for s, r in runs.get("atom_m1024", {}).items()}
        row = stats[metric] = paired_row(control, method)
        per_seed = ", ".join(f"s{s}: {d:+.4f}" for s, d in row["per_seed_diff"].items())
        lines.append(f"| validation {metric} | {_fmt(row['control'], 4)} | {_fmt(row['method'], 4)} | "
                     f"{_fmt(row['diff'], 4)} | {per_seed} | {_p(row['sign_p'])} | {_p(row['wilcoxon_p'])} | "
                     f"{_p(row['t_p'])} |")  # fmt: skip
    runtime = {v: mean_std(r["train_runtime_s"] for r in seeds.values())._asdict() for v, seeds in runs.items()}
    pairs = {v: [r["validation"].get("atom_memory_pairs") for r in seeds.values()] for v, seeds in runs.items()}
    stats["train_runtime_s"] = runtime
    lines += ["", "Train runtime (s, mean over seeds; the 2 cores ran two jobs at once, 1 thread each): "
              + ", ".join(f"{v} {t['mean']:.0f}" for v, t in runtime.items()) + "."]  # fmt: skip
    stats["seeds"] = {v: sorted(seeds) for v, seeds in runs.items()}
    stats["validation_memory_pairs"] = pairs  # evaluation neither reads nor changes the queue: 0
    return "\n".join(lines) + "\n", stats


def language_models(root: str) -> tuple[str, dict, dict]:
    folder = os.path.join(root, "lm_eval")
    models: dict[tuple[float, int], dict[int, dict]] = {}
    for file in sorted(os.listdir(folder)):
        name = file.split("__")[0]
        match = LM_NAME.match(name)
        if not match or not file.endswith(".json"):
            continue
        weight = float(match["weight"]) if match["weight"] else 0.0
        memory = int(match["memory"]) if match["memory"] else 0
        with open(os.path.join(folder, file), encoding="utf-8") as handle:
            models.setdefault((weight, memory), {})[int(match["seed"])] = json.load(handle)
    lines = ["| λ | T | metric | M = 0 | M = 1024 | difference (M 1024 - M 0) | sign p | t-test p |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    stats: dict[str, Any] = {}
    for weight in sorted({w for w, _ in models if w > 0}):
        control, method = models.get((weight, 0), {}), models.get((weight, 1024), {})
        if not control or not method:
            continue
        for temperature in next(iter(control.values()))["temperatures"]:
            for metric in LM_METRICS:
                c = {s: r["temperatures"][temperature][metric] for s, r in control.items()}
                m = {s: r["temperatures"][temperature][metric] for s, r in method.items()}
                row = stats.setdefault(f"w{weight:g}", {}).setdefault(temperature, {})[metric] = paired_row(c, m)
                digits = 2 if "ppl" in metric else 4
                lines.append(f"| {weight:g} | {temperature} | {metric} | {_fmt(row['control'], digits)} | "
                             f"{_fmt(row['method'], digits)} | {_fmt(row['diff'], digits)} | {_p(row['sign_p'])} | "
                             f"{_p(row['t_p'])} |")  # fmt: skip
    labelled = []
    for (weight, memory), seeds in sorted(models.items()):
        label = "baseline (λ 0)" if weight == 0 else f"λ {weight:g}, M {memory}"
        labelled += [(label, result) for _, result in sorted(seeds.items())]
    return "\n".join(lines) + "\n", stats, labelled


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="outputs/x20", help="Folder with cola/ and lm_eval/.")
    parser.add_argument("--out", default="docs/results/memory", help="tables.md, stats.json and the plot go here.")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    record: dict[str, Any] = {}
    sections = []
    if os.path.isdir(os.path.join(args.root, "cola")):
        table, record["cola"] = cola(args.root)
        sections.append(f"## CoLA, λ 0.1: M = 1024 against M = 0 (paired by seed)\n\n{table}")
    if os.path.isdir(os.path.join(args.root, "lm_eval")):
        import generation_eval

        table, record["lm"], labelled = language_models(args.root)
        summary = generation_eval.summarize(labelled)
        record["lm_summary"] = summary
        sections.append(f"## SmolLM2-135M on Poem verses: M = 1024 against M = 0 (paired by seed)\n\n{table}")
        sections.append(
            f"## SmolLM2-135M: every arm, mean ± std over seeds\n\n{generation_eval.markdown_table(summary)}"
        )
        curves = []
        for label in summary:
            if label.startswith("λ") and label.endswith("M 1024"):
                reference = label.replace("M 1024", "M 0")
                for quality in ("base_ppl_of_samples", "heldout_ppl"):
                    for diversity in ("distinct_2", "self_bleu"):
                        rows = generation_eval.compare_curves(summary, reference, label, quality, diversity)
                        gains = ", ".join(f"T {r['temperature']:g}: {r['gain']:+.4f}" for r in rows) or "no overlap"
                        curves.append(f"| {label} vs {reference} | {quality} | {diversity} | {gains} | "
                                      f"{generation_eval.verdict(rows)} |")  # fmt: skip
        if curves:
            head = ["| comparison | quality axis | diversity | gain at equal quality | verdict |",
                    "| --- | --- | --- | --- | --- |"]  # fmt: skip
            sections.append(
                "## At equal quality (`generation_eval.compare_curves`)\n\n" + "\n".join(head + curves) + "\n"
            )
        generation_eval.plot_curves(summary, os.path.join(args.out, "lm_diversity_quality.png"))
    with open(os.path.join(args.out, "tables.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(sections))
    with open(os.path.join(args.out, "stats.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=True, default=str)
    print("\n".join(sections))
    return record


if __name__ == "__main__":
    main()
