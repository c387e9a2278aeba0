"""The mode-collapse study on the 2D mixtures: ensembles of runs (recipes/gan_ensemble.py), then tables with
mean +- standard error and paired tests against the `gan` control, curves, and sample scatters.

    python benchmarks/gan_study.py run --study cpu             # every ensemble of the CPU study, resumable
    python benchmarks/gan_study.py run --study cpu --only main_s0-4
    python benchmarks/gan_study.py summarize --study cpu       # tables.md, stats.json, curves.png, scatter.png

A study is a list of ensembles (one program each, `--resume` when its checkpoint exists, so a cut run continues
where it stopped). Finished members are copied as one JSON each to docs/results/gan_study/<study>/runs/, which is
what `summarize` reads: a half-finished ensemble contributes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

from _stats import mean_se, paired_test

if TYPE_CHECKING:
    import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "gan_study")
OUTPUTS = os.path.join(ROOT, "outputs", "gan_study")

# The CPU budget (ours, calibrated in docs/GENERATION.md): the protocol's networks and batch, Adam lr 1e-3 with
# beta1 0.5 decayed linearly to 0, one thread per program, bf16 matmuls (the fp32 control is run beside it).
CPU_BUDGET = ["--max_steps", "10000", "--learning_rate", "1e-3", "--adam_beta1", "0.5", "--lr_scheduler_type",
              "linear", "--eval_steps", "1000", "--save_steps", "1000", "--num_threads", "1"]  # fmt: skip
BF16 = ["--precision", "bf16"]


# Ensembles of at most 15 members (per member, a CPU step gets slower as the stacked tensors outgrow the caches), in
# the order they run; with `--lane K/2` two programs take every other one. Seeds 0-4 first, then 5-9.
def _cpu_study() -> list[tuple[str, list[str]]]:
    def ensemble(name, dataset, methods, seeds, precision=BF16):
        return f"{name}_{dataset}_s{seeds}", ["--datasets", dataset, "--methods", methods, "--seeds", seeds,
                                                *CPU_BUDGET, *precision]  # fmt: skip

    study = []
    for seeds in ("0-4", "5-9"):
        study += [
            ensemble("main", "grid", "gan,atom:0.1,atom:1", seeds),
            ensemble("main", "ring", "gan,atom:0.1,atom:1", seeds),
            ensemble("pacgan", "grid", "pacgan:2", seeds),
            ensemble("pacgan", "ring", "pacgan:2", seeds),
            ensemble("fp32control", "grid", "gan", seeds, precision=[]),  # the bf16 control's fp32 twin
            ensemble("fp32control", "ring", "gan", seeds, precision=[]),
            # the short lambda sweep on the grid: {0.01, 3} beside main's {0.1, 1}
            ensemble("sweep0.01", "grid", "atom:0.01", seeds),
            ensemble("sweep3", "grid", "atom:3", seeds),
        ]
    return study


# Issue 20's cross-batch memory on the grid: lambda 0.1 with M in {0, 4096}, the same 10 seeds, the CPU budget in
# fp32 (bf16 matmuls are emulated, about 25x slower, on CPUs without AVX-512 BF16). One ensemble per arm.
MEMORY_STUDY = [
    (
        f"memory_m{size}_grid_s0-9",
        [
            "--datasets",
            "grid",
            "--methods",
            "atom:0.1",
            "--seeds",
            "0-9",
            *CPU_BUDGET,
            "--atom_memory_size",
            str(size),
        ],
    )  # fmt: skip
    for size in (4096, 0)
]

STUDIES: dict[str, list[tuple[str, list[str]]]] = {"cpu": _cpu_study(), "memory": MEMORY_STUDY}

METRICS = (("modes", "modes"), ("high_quality", "high quality"), ("reverse_kl", "reverse KL"))
CONTROL = "gan"


def method_of(run: dict) -> str:
    """Row label: gan, pacgan2, atom_w0.1, atom_w0.1_m4096 (a cross-batch memory), ...; fp32 runs get a suffix so
    they never mix with bf16 ones."""
    label = run["name"].split("__")[1]
    return label + (" (fp32)" if run["settings"].get("precision") == "fp32" else "")


def reference_of(method: str) -> str:
    """What a row is tested against: the control, or for a memory row (`_m<M>`) the same method without memory."""
    without_memory = re.sub(r"_m\d+", "", method)
    return without_memory if without_memory != method else CONTROL


def run_study(
    study: str, only: str | None = None, lane: str = "0/1", outputs: str = OUTPUTS, results: str = RESULTS
) -> None:
    """Runs the ensembles of `study` in turn, each in its own process: all, just `only`, or every N-th from the
    K-th for `lane="K/N"` (N lanes side by side, one core each)."""
    k, n = (int(x) for x in lane.split("/"))
    for i, (name, flags) in enumerate(STUDIES[study]):
        if (only and name != only) or i % n != k:
            continue
        out = os.path.join(outputs, study, name)
        target = os.path.join(results, study, "runs")
        summary = os.path.join(out, "summary.json")
        if not os.path.exists(summary):
            resume = ["--resume", "true"] if os.path.exists(os.path.join(out, "checkpoint.pt")) else []
            command = [sys.executable, os.path.join(ROOT, "recipes", "gan_ensemble.py"), *flags,
                       "--output_dir", out, *resume]  # fmt: skip
            print(f"[{study}/{name}] {' '.join(command[1:])}", flush=True)
            subprocess.run(command, check=True)
        os.makedirs(target, exist_ok=True)
        for file in sorted(os.listdir(os.path.join(out, "runs"))):
            copy_result(os.path.join(out, "runs", file), target)


def result_file_name(run: dict) -> str:
    """`<dataset>__<method>__<precision>__s<seed>.json`: the precision is part of the name because the fp32 control
    twin shares its member names (grid__gan__s0) with the bf16 control."""
    dataset, method, seed = run["name"].split("__")
    return f"{dataset}__{method}__{run['settings']['precision']}__{seed}.json"


def copy_result(source: str, target: str) -> str:
    """Copies one member's JSON into the results folder under `result_file_name`; refuses to replace a result of
    another ensemble (other settings), so a second study entry can never overwrite a finished run."""
    with open(source, encoding="utf-8") as handle:
        run = json.load(handle)
    path = os.path.join(target, result_file_name(run))
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            kept = json.load(handle)
        if kept["settings"] != run["settings"]:
            raise SystemExit(
                f"{path} already holds {kept['name']} from another ensemble (settings {kept['settings']}); "
                f"not replacing it with the one from {source}. Move one of them away first."
            )
    shutil.copyfile(source, path)
    return path


def load_runs(folder: str) -> list[dict]:
    runs = []
    for file in sorted(os.listdir(folder)):
        if file.endswith(".json"):
            with open(os.path.join(folder, file), encoding="utf-8") as handle:
                runs.append(json.load(handle))
    return runs


def final_value(run: dict, key: str) -> float:
    value = run["final"][key]
    return math.nan if value is None else float(value)


def summarize(runs: list[dict]) -> dict:
    """{dataset: {method: {metric: {mean, se, n, test}}}} with the paired tests against the control."""
    grouped: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        grouped[run["member"]["dataset"]][method_of(run)][run["member"]["seed"]] = run
    table: dict = {}
    for dataset, methods in sorted(grouped.items()):
        table[dataset] = {}
        for method, by_seed in sorted(methods.items(), key=lambda kv: _method_order(kv[0])):
            row = {"seeds": sorted(by_seed), "reference": reference_of(method)}
            reference = methods.get(row["reference"], {}) if method != CONTROL else {}
            for key, _ in METRICS:
                values = {seed: final_value(run, key) for seed, run in by_seed.items()}
                mean, se = mean_se(list(values.values()))
                row[key] = {"mean": mean, "se": se, "nan_runs": sum(math.isnan(v) for v in values.values())}
                if reference:
                    tested = {s: final_value(r, key) for s, r in reference.items()}
                    row[key]["vs_reference"] = paired_test(tested, values)
            row["all_modes"] = sum(
                run["final"]["modes"] == len(run["final"]["mode_counts"]) for run in by_seed.values()
            )
            table[dataset][method] = row
    return table


def _method_order(method: str) -> tuple:
    base = method.split(" ")[0]
    rank = 0 if base == "gan" else 1 if base.startswith("pacgan") else 2
    found = re.search(r"_w([0-9.e+-]+?)(?:_m(\d+))?$", base)
    weight, memory = (float(found.group(1)), int(found.group(2) or 0)) if found else (0.0, 0)
    return (rank, weight, memory, method)


def _fmt(value: float, digits: int) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def tables_markdown(table: dict) -> str:
    """One table per dataset: mean +- s.e. per metric, all-modes count, and the paired test p-values (against the
    control; a memory row `_m<M>` against the same method without memory)."""
    lines = []
    for dataset, methods in table.items():
        tested_against = sorted({row["reference"] for m, row in methods.items() if m != CONTROL} - {CONTROL})
        lines += [f"**{dataset}**", "",
                  "| method | seeds | modes | high quality | reverse KL | all modes | p modes | p HQ | p rKL |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for method, row in methods.items():
            cells = []
            for key, _ in METRICS:
                scale, digits = (100, 1) if key == "high_quality" else (1, 2 if key == "modes" else 3)
                cell = f"{_fmt(row[key]['mean'] * scale, digits)} ± {_fmt(row[key]['se'] * scale, digits)}"
                cells.append(cell + (f" ({row[key]['nan_runs']} n/a)" if row[key]["nan_runs"] else ""))
            tests = []
            for key, _ in METRICS:
                test = row[key].get("vs_reference")
                if test is not None:
                    tests.append(f"{_fmt(test['wilcoxon_p'], 3)} ({test['higher']}↑ {test['lower']}↓)")
                else:  # the control itself, or a dataset without a control run
                    tests.append("control" if method == CONTROL else "—")
            n = len(row["seeds"])
            lines.append(f"| {method} | {n} | {' | '.join(cells)} | {row['all_modes']}/{n} | {' | '.join(tests)} |")
        if tested_against:
            lines += ["", f"p of an `_m<M>` row (cross-batch memory): paired against {', '.join(tested_against)} "
                          "(the same method without memory), not against the control."]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def plot_curves(runs: list[dict], path: str) -> None:
    """Modes and high-quality share against steps, mean with standard-error bands, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    datasets = sorted({run["member"]["dataset"] for run in runs})
    figure = Figure(figsize=(10, 3.6 * len(datasets)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(datasets), 2, squeeze=False)
    for row, dataset in enumerate(datasets):
        by_method: dict[str, list[dict]] = defaultdict(list)
        for run in runs:
            if run["member"]["dataset"] == dataset:
                by_method[method_of(run)].append(run)
        for method, group in sorted(by_method.items(), key=lambda kv: _method_order(kv[0])):
            steps = [h["step"] for h in group[0]["history"]]
            for col, (key, label) in enumerate(METRICS[:2]):
                scale = 100 if key == "high_quality" else 1
                stats = [mean_se([scale * r["history"][i][key] for r in group if len(r["history"]) > i])
                         for i in range(len(steps))]  # fmt: skip
                mean = [m for m, _ in stats]
                se = [0.0 if math.isnan(s) else s for _, s in stats]
                ax = axes[row][col]
                ax.plot(steps, mean, label=f"{method} (n={len(group)})")
                ax.fill_between(steps, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)], alpha=0.2)
                ax.set_title(f"{dataset}: {label}{' (%)' if scale == 100 else ''}", fontsize=9)
                ax.set_xlabel("step", fontsize=8)
        axes[row][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def scatter_panels(outputs: str, runs: list[dict], seed: int = 0) -> list[tuple[dict, torch.Tensor]]:
    """(run, final samples) of one seed for every run whose ensemble folder under `outputs` kept its samples.pt."""
    import torch

    panels = []
    for folder in sorted(os.listdir(outputs)) if os.path.isdir(outputs) else []:
        summary_path = os.path.join(outputs, folder, "summary.json")
        samples_path = os.path.join(outputs, folder, "samples.pt")
        if not (os.path.exists(summary_path) and os.path.exists(samples_path)):
            continue
        with open(summary_path, encoding="utf-8") as handle:
            summary = json.load(handle)
        names = [row["name"] for row in summary["members"]]
        precision = summary["settings"]["precision"]
        samples = torch.load(samples_path, weights_only=True)
        # Member names repeat across precisions (the fp32 control twin), so the precision is part of the key.
        by_key = {(run["name"], run["settings"]["precision"]): run for run in runs}
        for i, name in enumerate(names):
            if name.endswith(f"__s{seed}") and (name, precision) in by_key:
                panels.append((by_key[name, precision], samples[i]))
    return panels


def plot_scatter(outputs: str, runs: list[dict], path: str, seed: int = 0) -> bool:
    """Final samples of one seed per (dataset, method) over the mixture's centres; False if no samples.pt is here."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from hf_atom.metrics import mixture_spec

    panels = scatter_panels(outputs, runs, seed)
    if not panels:
        return False
    panels.sort(key=lambda p: (p[0]["member"]["dataset"], _method_order(method_of(p[0]))))
    columns = max(
        sum(p[0]["member"]["dataset"] == d for p in panels) for d in {p[0]["member"]["dataset"] for p in panels}
    )
    datasets = sorted({p[0]["member"]["dataset"] for p in panels})
    figure = Figure(figsize=(2.6 * columns, 2.8 * len(datasets)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(datasets), columns, squeeze=False)
    for r, dataset in enumerate(datasets):
        row_panels = [p for p in panels if p[0]["member"]["dataset"] == dataset]
        spec = mixture_spec(dataset)
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row_panels):
                ax.axis("off")
                continue
            run, points = row_panels[c]
            lim = 1.6 if dataset == "ring" else 5.5
            ax.scatter(points[:, 0], points[:, 1], s=1, c="tab:red", alpha=0.4)
            ax.scatter(spec.centres[:, 0], spec.centres[:, 1], s=10, marker="x", c="black")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            final = run["final"]
            ax.set_title(f"{dataset} {method_of(run)} s{seed}: {final['modes']} modes, "
                         f"{100 * final['high_quality']:.0f}% HQ", fontsize=7)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return True


def plot_calibration(folder: str, path: str) -> list[str]:
    """The control's high-quality share and modes against steps for every calibration run in `folder` (ensemble
    member JSONs and single-run results.json files); returns one line per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    lines = []
    for file in sorted(os.listdir(folder)):
        if not file.endswith(".json"):
            continue
        with open(os.path.join(folder, file), encoding="utf-8") as handle:
            run = json.load(handle)
        if "member" in run:  # an ensemble member
            dataset, seed, settings = run["member"]["dataset"], run["member"]["seed"], run["settings"]
            label = f"{dataset} s{seed} T={settings['max_steps']} {settings['precision']} (ensemble)"
        else:  # a single gan_mixture.py run
            dataset, seed, settings = run["dataset"], run["args"]["seed"], run["args"]
            label = f"{dataset} s{seed} T={settings['max_steps']} fp32 (gan_mixture.py)"
        steps = [h["step"] for h in run["history"]]
        style = "-" if dataset == "grid" else "--"
        axes[0].plot(steps, [100 * h["high_quality"] for h in run["history"]], style, label=label)
        axes[1].plot(steps, [h["modes"] for h in run["history"]], style, label=label)
        final = run["history"][-1]
        lines.append(
            f"{label}: {final['modes']} modes, {100 * final['high_quality']:.1f} % high quality at step {final['step']}"
        )
    axes[0].set_title("gan control: high quality (%) against steps (lr 1e-3 decayed linearly to 0 at T)", fontsize=8)
    axes[1].set_title("gan control: modes against steps (grid of 25: solid; ring of 8: dashed)", fontsize=8)
    axes[0].axhline(80, color="grey", lw=0.5)
    axes[0].axhline(90, color="grey", lw=0.5)
    axes[1].legend(fontsize=5)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return lines


def write_summary(study: str, results: str = RESULTS, outputs: str = OUTPUTS) -> str:
    folder = os.path.join(results, study)
    runs = load_runs(os.path.join(folder, "runs"))
    if not runs:
        raise SystemExit(
            f"No finished runs in {folder}/runs: run `python benchmarks/gan_study.py run --study {study}`."
        )
    table = summarize(runs)
    markdown = tables_markdown(table)
    with open(os.path.join(folder, "tables.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    with open(os.path.join(folder, "stats.json"), "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=2, sort_keys=True)
    plot_curves(runs, os.path.join(folder, "curves.png"))
    plot_scatter(os.path.join(outputs, study), runs, os.path.join(folder, "scatter.png"))
    return markdown


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "summarize", "calibration"))
    parser.add_argument("--study", default="cpu", choices=sorted(STUDIES))
    parser.add_argument("--only", default=None, help="Run just this ensemble of the study.")
    parser.add_argument("--lane", default="0/1", help="K/N: run every N-th ensemble from the K-th (N lanes at once).")
    args = parser.parse_args(argv)
    if args.only and args.only not in {name for name, _ in STUDIES[args.study]}:
        parser.error(
            f"--only {args.only!r} is not an ensemble of study {args.study!r}: {[n for n, _ in STUDIES[args.study]]}"
        )
    if args.command == "calibration":
        folder = os.path.join(RESULTS, "calibration")
        print("\n".join(plot_calibration(folder, os.path.join(folder, "calibration.png"))))
        return
    if args.command == "run":
        if not re.fullmatch(r"\d+/[1-9]\d*", args.lane) or int(args.lane.split("/")[0]) >= int(
            args.lane.split("/")[1]
        ):
            parser.error(f"--lane must be K/N with 0 <= K < N, got {args.lane!r}.")
        run_study(args.study, args.only, args.lane if not args.only else "0/1")
    print(write_summary(args.study))


if __name__ == "__main__":
    main()
