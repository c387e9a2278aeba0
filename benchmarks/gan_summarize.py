"""The tables and figures of docs/GENERATION.md, computed only from the run JSON files of `gan_benchmarks.py`.

    python benchmarks/gan_summarize.py               # prints the tables, writes docs/results/gan/tables.md
    python benchmarks/gan_summarize.py --figures     # also the scatter / sample montages in docs/images/gan_*.png
    python benchmarks/gan_summarize.py --update_doc  # also the tables between the markers of docs/GENERATION.md

Rows: mean ± sample standard deviation (ddof = 1) over the seeds present, with the seed count. Reverse KL is
undefined for a run without a single high-quality point; such runs are left out of that column's mean and counted.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
from collections import defaultdict

from _stats import mean_std

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results", "gan")
OUTPUTS = os.path.join(ROOT, "outputs", "gan")
IMAGES = os.path.join(ROOT, "docs", "images")


def fmt(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "n/a"
    text = f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"
    return text if n == len(values) else f"{text} ({len(values) - n} undefined)"


def load(group: str) -> dict[tuple[str, str], list[dict]]:
    """(dataset, label) -> the runs' results, sorted by seed. File names are `<dataset>__<label>__s<seed>.json`."""
    runs = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(RESULTS, group, "*.json"))):
        dataset, label, _ = os.path.basename(path)[: -len(".json")].split("__")
        with open(path, encoding="utf-8") as handle:
            runs[(dataset, label)].append(json.load(handle))
    for key in runs:
        runs[key].sort(key=lambda r: r["args"]["seed"])
    return runs


def mixture_row(label: str, runs: list[dict], num_modes: int) -> str:
    finals = [r["final"] for r in runs]
    full = sum(f["modes"] == num_modes for f in finals)
    seeds = ",".join(str(r["args"]["seed"]) for r in runs)
    walls = mean_std([r["train_wall_s"] for r in runs])[0]
    return (
        f"| {label} | {fmt([f['modes'] for f in finals], digits=1)} | {full}/{len(runs)} | "
        f"{fmt([f['high_quality'] for f in finals], 100, 1)} % | {fmt([f['reverse_kl'] for f in finals])} | "
        f"{' '.join(str(f['modes']) for f in finals)} | {seeds} | {walls:.0f} |"
    )


MIXTURE_HEADER = (
    "| method | modes | all modes (runs) | high quality | reverse KL | modes per seed | seeds | train s / run |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- |"
)


def mixture_tables(main_runs) -> str:
    lines = []
    for dataset, num_modes in (("grid", 25), ("ring", 8)):
        lines += [f"\n#### 2D {dataset} ({num_modes} modes), ours\n", MIXTURE_HEADER]
        for method in ("gan", "pacgan", "atom"):
            if (dataset, method) in main_runs:
                lines.append(mixture_row(method, main_runs[(dataset, method)], num_modes))
    return "\n".join(lines)


def atom_stats_cells(runs: list[dict]) -> str:
    """Mean over seeds of the per-run means over steps of L_A, mean |q| and the mean pair distance d-bar."""
    if not runs[0].get("atom_stats_mean"):
        return " - | - | - |"
    cells = [mean_std([r["atom_stats_mean"][key] for r in runs])[0] for key in ATOM_KEYS]
    return " " + " | ".join(f"{c:.3f}" for c in cells) + " |"


ATOM_KEYS = ("atom_loss", "atom_mean_abs_q", "atom_mean_distance")  # the columns shown: a subset of ATOM_STATISTICS


def ablation_table(main_runs, ablation_runs) -> str:
    if not ablation_runs:
        return ""
    seeds = sorted({r["args"]["seed"] for runs in ablation_runs.values() for r in runs})
    header = MIXTURE_HEADER.split("\n")
    lines = [
        f"\n#### Ablations of atom on the 2D grid (seeds {seeds}), ours\n",
        header[0] + " L_A | mean abs q | mean d-bar |",
        header[1] + " --- | --- | --- |",
    ]
    for method in ("gan", "atom"):
        reference = [r for r in main_runs.get(("grid", method), []) if r["args"]["seed"] in seeds]
        if reference:
            label = f"{method} (main table, same seeds)"
            lines.append(mixture_row(label, reference, 25) + atom_stats_cells(reference))
    for (_, label), runs in sorted(ablation_runs.items()):
        lines.append(mixture_row(label, runs, 25) + atom_stats_cells(runs))
    return "\n".join(lines)


def history_table(main_runs) -> str:
    """Modes over training (mean over seeds) per dataset and method."""
    lines = ["\n#### Modes over training (mean over seeds), ours\n"]
    for dataset in ("grid", "ring"):
        rows = {m: main_runs[(dataset, m)] for m in ("gan", "pacgan", "atom") if (dataset, m) in main_runs}
        if not rows:
            continue
        steps = [h["step"] for h in next(iter(rows.values()))[0]["history"]]
        lines += [f"| {dataset} | " + " | ".join(f"step {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
        for method, runs in rows.items():
            cells = []
            for i in range(len(steps)):
                modes = mean_std([r["history"][i]["modes"] for r in runs])[0]
                hq = mean_std([r["history"][i]["high_quality"] for r in runs])[0]
                cells.append(f"{modes:.1f} ({100 * hq:.0f} % HQ)")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def smnist_table(runs, title: str = "Stacked MNIST (1,000 modes), ours") -> str:
    if not runs:
        return ""
    steps = sorted({r["args"]["max_steps"] for group in runs.values() for r in group})
    lines = [
        f"\n#### {title}: {', '.join(map(str, steps))} steps\n",
        "| method | modes | KL | modes per seed | seeds | classifier accuracy | train s / run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method in ("gan", "pacgan", "atom"):
        group = runs.get(("stacked_mnist", method))
        if not group:
            continue
        finals = [r["final"] for r in group]
        accuracy = mean_std([r["classifier"]["accuracy"] for r in group])[0]
        lines.append(
            f"| {method} | {fmt([f['modes'] for f in finals], digits=1)} | {fmt([f['kl'] for f in finals])} | "
            f"{' '.join(str(f['modes']) for f in finals)} | {','.join(str(r['args']['seed']) for r in group)} | "
            f"{100 * accuracy:.1f} % | {mean_std([r['train_wall_s'] for r in group])[0]:.0f} |"
        )
    return "\n".join(lines)


def montage(paths: list[str], titles: list[str], out: str, columns: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    rows = math.ceil(len(paths) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), dpi=80, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, title in zip(axes.flat, paths, titles):
        ax.imshow(mpimg.imread(path))
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def figures(seed: int = 0) -> list[str]:
    written = []
    for dataset in ("grid", "ring"):
        paths, titles = [], []
        for method in ("gan", "pacgan", "atom"):
            path = os.path.join(OUTPUTS, "main", f"{dataset}__{method}__s{seed}.png")
            if os.path.exists(path):
                paths.append(path)
                titles.append(f"{method}, seed {seed}")
        if paths:
            out = os.path.join(IMAGES, f"gan_{dataset}_scatter.png")
            montage(paths, titles, out)
            written.append(out)
    # The longer stacked-MNIST budget when all three of its seed-0 runs exist, else the short one.
    for group in ("smnist_long", "smnist"):
        paths = [os.path.join(OUTPUTS, group, f"stacked_mnist__{m}__s{seed}.png") for m in ("gan", "pacgan", "atom")]
        paths = [p for p in paths if os.path.exists(p)]
        if len(paths) == 3:
            break
    if paths:
        out = os.path.join(IMAGES, "gan_stacked_mnist_samples.png")
        montage(paths, [os.path.basename(p)[:-4] for p in paths], out)
        written.append(out)
    return written


def update_doc(path: str, blocks: dict[str, str]) -> None:
    """Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` in `path` with each block."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for name, block in blocks.items():
        begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            text = head + begin + "\n" + block.strip("\n") + "\n" + end + rest.split(end, 1)[1]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", action="store_true")
    parser.add_argument("--update_doc", action="store_true", help="Write the tables into docs/GENERATION.md.")
    cli = parser.parse_args()
    main_runs, ablation_runs, smnist_runs = load("main"), load("ablations"), load("smnist")
    blocks = {
        "mixtures": mixture_tables(main_runs),
        "history": history_table(main_runs),
        "ablations": ablation_table(main_runs, ablation_runs),
        "smnist": smnist_table(smnist_runs) + "\n" + smnist_table(load("smnist_long")),
    }
    text = "\n".join(blocks.values())
    print(text)
    with open(os.path.join(RESULTS, "tables.md"), "w", encoding="utf-8") as handle:
        handle.write("<!-- generated by benchmarks/gan_summarize.py from the JSON files beside it -->\n" + text + "\n")
    if cli.update_doc:
        update_doc(os.path.join(ROOT, "docs", "GENERATION.md"), blocks)
    if cli.figures:
        for path in figures():
            print("wrote", os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
