"""Is token importance faithful? Atom q against the attribution methods people use, on the same samples and metrics.

    python benchmarks/faithfulness.py --text_model outputs/faith/poem_atom_s0 outputs/faith/poem_base_s0 \\
        --text_file ../shared/data/poem_sentiment/test.tsv
    python benchmarks/faithfulness.py --text_model outputs/cola_atom outputs/cola_base --text_stride 5 \
        --text_file ../shared/data/cola/in_domain_dev.tsv   # every 5th sentence: all sources of the sorted file
    python benchmarks/faithfulness.py --image_model out/pets3-atom --pets_dir ../shared/data/pets3
    python benchmarks/faithfulness.py --summarize benchmarks/results/faithfulness_poem.json   # tables over seeds

Methods (hf_atom.attribution, one home each): q, |q|, last-layer attention, attention rollout, Captum's Integrated
Gradients (`--ig_steps`, baseline: scored tokens -> [MASK], images: the normalised mean image, 0), Saliency,
InputXGradient, occlusion (text: one token at a time -> [MASK]; images: one patch-sized window per patch -> 0) and a
seeded random map. Every method explains the predicted class's softmax probability of the same model on the same
samples, scored by the same code, one sample at a time and the methods side by side for each sample.

Metrics (definitions and sources in docs/INTERPRETATION.md):
- deletion / insertion AUC: the predicted class's probability while the most important units (text: non-special
  tokens; images: patches) are removed (deletion, lower = more faithful) or restored into a fully removed input
  (insertion, higher = more faithful), at 0, 10, ..., 50 % of the units, trapezoid area divided by the 0.5 range;
- ERASER comprehensiveness and sufficiency (DeYoung et al., ACL 2020) at the top 10/20/50 %: p(x) - p(x without the
  top k %) (higher = better) and p(x) - p(top k % only) (lower = better), removed units replaced, not deleted;
- images also: AUROC of the patch scores against the pets3 trimap foreground and the pointing game;
- cost: backbone forwards and backwards per sample (counted with `PassCounter`) and milliseconds per sample.
Prints tables and writes JSON (rewritten after each model, so a cut-off run keeps what it finished) with every
sample's values, so that methods are compared paired by sample: each method against q, and each method on the atom
models against the same method on the baselines (Wilcoxon signed-rank over the samples of each sample's value
averaged over the seeds' models, `paired_comparisons`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hf_atom import AutoAtomModel  # noqa: E402
from hf_atom.attribution import PassCounter, get_attribution_method  # noqa: E402

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
ERASER_FRACTIONS = (0.1, 0.2, 0.5)
METHODS = ("q", "abs_q", "attention", "rollout", "ig", "saliency", "input_x_gradient", "occlusion", "random")


# -- metrics (pure: a ranking and a probability function of the removed units) ----------------------------------


def curve_auc(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Area under a deletion / insertion curve, divided by the fraction range: the mean probability over it."""
    fractions, values = np.asarray(fractions, dtype=float), np.asarray(values, dtype=float)
    return float(np.trapezoid(values, fractions) / (fractions[-1] - fractions[0]))


def removal_sets(order: Sequence[int], units: int) -> dict[str, list[np.ndarray]]:
    """The boolean "removed" masks (over `units`) each metric evaluates, for a ranking `order` (most important
    first, over the scored units only): deletion and insertion at `FRACTIONS`, comprehensiveness and sufficiency at
    `ERASER_FRACTIONS`. k = round(fraction * len(order)), at least 1 for a non-zero fraction."""
    order = np.asarray(order, dtype=int)
    n = len(order)

    def top(fraction: float) -> np.ndarray:
        k = 0 if fraction == 0 else max(1, int(round(fraction * n)))
        removed = np.zeros(units, dtype=bool)
        removed[order[:k]] = True
        return removed

    everything = np.zeros(units, dtype=bool)
    everything[order] = True
    return {
        "deletion": [top(f) for f in FRACTIONS],
        "insertion": [everything & ~top(f) for f in FRACTIONS],
        "comprehensiveness": [top(f) for f in ERASER_FRACTIONS],
        "sufficiency": [everything & ~top(f) for f in ERASER_FRACTIONS],
    }


def faithfulness_metrics(
    order: Sequence[int], units: int, probability: Callable[[list[np.ndarray]], np.ndarray], original: float
) -> dict[str, float]:
    """Every metric for one sample and one ranking. `probability(removed_masks)` returns the target class's
    probability with each mask's units removed (one batched call); `original` is p(x)."""
    sets = removal_sets(order, units)
    names = list(sets)
    flat = [mask for name in names for mask in sets[name]]
    values = np.asarray(probability(flat), dtype=float)
    out, start = {}, 0
    for name in names:
        part = values[start : start + len(sets[name])]
        start += len(sets[name])
        if name in ("deletion", "insertion"):
            out[f"{name}_auc"] = curve_auc(FRACTIONS, part)
        else:
            for fraction, value in zip(ERASER_FRACTIONS, part):
                out[f"{name}@{int(fraction * 100)}"] = float(original - value)
    return out


def ranking(scores: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Scored units, highest score first (ties: earlier position first)."""
    positions = torch.nonzero(mask).flatten()
    values = scores[positions].double().numpy()
    return positions.numpy()[np.argsort(-values, kind="stable")]


# -- studies ------------------------------------------------------------------------------------------------------


def _settings(name: str, args) -> dict:
    return {"ig": {"n_steps": args.ig_steps, "internal_batch_size": args.ig_steps}, "random": {"seed": args.seed}}.get(
        name, {}
    )


def _attribute(method, model, inputs, **kwargs):
    """One attribution with its cost: (attribution, forwards, backwards, milliseconds)."""
    start = time.perf_counter()
    with PassCounter(model) as passes:
        attribution = method(model, inputs, **kwargs)
    return attribution, passes.forwards, passes.backwards, 1000 * (time.perf_counter() - start)


def _summarise(per_sample: dict[str, list[dict]]) -> dict:
    """Mean and standard deviation over samples of every metric and cost, per method, and the samples' values (in
    sample order, for paired tests)."""
    summary = {}
    for name, rows in per_sample.items():
        summary[name] = {}
        for key in rows[0]:
            values = [float(r[key]) for r in rows]
            summary[name][key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "values": values}
    return summary


def read_texts(text_file: str, max_samples: int | None) -> list[str]:
    """Texts of a TSV (Poem Sentiment: id, verse, label; CoLA: source, label, mark, sentence) or one per line."""
    texts = []
    with open(text_file, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            texts.append(fields[1] if len(fields) == 3 else fields[-1])
    return texts[:max_samples]


def text_study(model_dir: str, texts: list[str], methods: Sequence[str], args) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoAtomModel.from_pretrained(model_dir).eval()
    replacement = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    built = {name: get_attribution_method(name, **_settings(name, args)) for name in methods}
    per_sample: dict[str, list[dict]] = {name: [] for name in methods}
    deltas = []
    for text in texts:
        encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True, truncation=True)
        ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        with torch.no_grad():
            probabilities = model(input_ids=ids, attention_mask=attention_mask).logits.softmax(-1)[0]
        target = int(probabilities.argmax())

        def probability(removed: list[np.ndarray], ids=ids, attention_mask=attention_mask, target=target):
            batch = ids.repeat(len(removed), 1)
            batch[torch.as_tensor(np.stack(removed))] = replacement
            with torch.no_grad():
                logits = model(input_ids=batch, attention_mask=attention_mask.repeat(len(removed), 1)).logits
            return logits.softmax(-1)[:, target].numpy()

        for name, method in built.items():
            attribution, forwards, backwards, ms = _attribute(
                method, model, encoded, baseline_token_id=replacement, target=torch.tensor([target])
            )
            if attribution.delta is not None:
                deltas.append(float(attribution.delta.abs().max()))
            order = ranking(attribution.scores[0], attribution.mask[0])
            row = faithfulness_metrics(order, ids.shape[1], probability, float(probabilities[target]))
            per_sample[name].append({**row, "forwards": forwards, "backwards": backwards, "ms": ms})
    return {
        "model": model_dir,
        "atom_weight": _atom_weight(model_dir),
        "texts": len(texts),
        "methods": _summarise(per_sample),
        "ig_abs_delta_max": max(deltas) if deltas else None,
    }


def _atom_weight(model_dir: str) -> float | None:
    path = os.path.join(model_dir, "results.json")
    if os.path.isfile(path):
        with open(path) as handle:
            return json.load(handle).get("atom_weight")
    return None


def pets_test_split(pets_dir: str, split_seed: int):
    """The image recipe's test split (same seeded stratified split), with the image file paths."""
    import datasets
    from _image import DataArguments, load_splits

    splits, image_column, label_column = load_splits(
        DataArguments(train_dir=os.path.join(pets_dir, "images"), split_seed=split_seed)
    )
    test = splits["test"].cast_column(image_column, datasets.Image(decode=False))
    return [row[image_column]["path"] for row in test], test[label_column]


def trimap_patch_labels(trimap_path: str, processor, grid: tuple[int, int]) -> np.ndarray:
    """Per patch: 1 = pet, 0 = background, -1 = ignored (mostly border), after the processor's resize and crop."""
    from PIL import Image

    trimap = Image.open(trimap_path)
    size, crop = processor.size, getattr(processor, "crop_size", None)
    width, height = trimap.size
    if "shortest_edge" in size:
        short = size["shortest_edge"]
        scale = short / min(width, height)
        trimap = trimap.resize((max(short, int(width * scale)), max(short, int(height * scale))), Image.NEAREST)
    else:
        trimap = trimap.resize((size["width"], size["height"]), Image.NEAREST)
    if crop and getattr(processor, "do_center_crop", False):
        width, height = trimap.size
        left, top = (width - crop["width"]) // 2, (height - crop["height"]) // 2
        trimap = trimap.crop((left, top, left + crop["width"], top + crop["height"]))
    values = np.asarray(trimap)
    rows, cols = grid
    cell_h, cell_w = values.shape[0] // rows, values.shape[1] // cols
    cells = values[: rows * cell_h, : cols * cell_w].reshape(rows, cell_h, cols, cell_w).transpose(0, 2, 1, 3)
    cells = cells.reshape(rows, cols, -1)
    pet, background = (cells == 1).mean(-1), (cells == 2).mean(-1)
    labels = np.where(pet >= background, 1, 0)
    labels[(pet + background) < 0.5] = -1
    return labels.reshape(-1)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    keep = labels >= 0
    if len(np.unique(labels[keep])) < 2:
        return float("nan")
    return float(roc_auc_score(labels[keep], scores[keep]))


def image_study(model_dir: str, pets_dir: str, methods: Sequence[str], args) -> dict:
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoAtomModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    paths, _ = pets_test_split(pets_dir, args.split_seed)
    paths = paths[: args.max_samples]
    built = {name: get_attribution_method(name, **_settings(name, args)) for name in methods}
    per_sample: dict[str, list[dict]] = {name: [] for name in methods}
    for path in paths:
        pixels = processor(Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            probabilities = model(pixel_values=pixels).logits.softmax(-1)[0]
        target = int(probabilities.argmax())
        trimap = os.path.join(pets_dir, "trimaps", os.path.splitext(os.path.basename(path))[0] + ".png")
        for name, method in built.items():
            attribution, forwards, backwards, ms = _attribute(method, model, {"pixel_values": pixels})
            rows, cols = attribution.grid_shape
            patch_h, patch_w = attribution.cell_size

            def probability(removed, pixels=pixels, target=target, cols=cols, cell=(patch_h, patch_w)):
                batch = pixels.repeat(len(removed), 1, 1, 1)
                for i, mask in enumerate(removed):
                    for patch in np.nonzero(mask)[0]:
                        r, c = divmod(int(patch), cols)
                        batch[i, :, r * cell[0] : (r + 1) * cell[0], c * cell[1] : (c + 1) * cell[1]] = 0.0
                with torch.no_grad():
                    return model(pixel_values=batch).logits.softmax(-1)[:, target].numpy()

            scores = attribution.scores[0]
            labels = trimap_patch_labels(trimap, processor, (rows, cols))
            row = faithfulness_metrics(
                ranking(scores, attribution.mask[0]), rows * cols, probability, float(probabilities[target])
            )
            row["auroc"] = auroc(scores.numpy(), labels)
            row["pointing_game"] = float(labels[int(np.nanargmax(scores.numpy()))] == 1)
            per_sample[name].append({**row, "forwards": forwards, "backwards": backwards, "ms": ms})
    return {
        "model": model_dir,
        "atom_weight": _atom_weight(model_dir),
        "images": len(paths),
        "methods": _summarise(per_sample),
    }


def method_panel(model_dir: str, inputs: list[str], methods: Sequence[str], out_png: str, width: int = 560) -> str:
    """One PNG: a row per method, a column per input, each cell the picture `hf-atom explain --method` draws."""
    import tempfile

    from PIL import Image

    from hf_atom.explain import Explainer

    first = Explainer.from_pretrained(model_dir, method=methods[0])
    cells = []
    with tempfile.TemporaryDirectory() as folder:
        for name in methods:
            explainer = Explainer(first.model, first.processor, method=name)
            explanations = explainer.export(inputs, os.path.join(folder, name))
            row = []
            for explanation in explanations:
                png = next(f for f in explanation.files if f.endswith(".png"))
                with Image.open(png) as picture:
                    picture = picture.convert("RGB")
                    row.append(picture.resize((width, round(picture.height * width / picture.width))))
            cells.append(row)
    heights = [max(cell.height for cell in row) for row in cells]
    panel = Image.new("RGB", (width * len(cells[0]), sum(heights)), "white")
    top = 0
    for row, height in zip(cells, heights):
        for column, cell in enumerate(row):
            panel.paste(cell, (column * width, top))
        top += height
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    panel.save(out_png)
    return out_png


# -- report -------------------------------------------------------------------------------------------------------

COLUMNS = (
    ("deletion_auc", "deletion AUC ↓"),
    ("insertion_auc", "insertion AUC ↑"),
    ("comprehensiveness@10", "comp@10 ↑"),
    ("comprehensiveness@20", "comp@20 ↑"),
    ("comprehensiveness@50", "comp@50 ↑"),
    ("sufficiency@10", "suff@10 ↓"),
    ("sufficiency@20", "suff@20 ↓"),
    ("sufficiency@50", "suff@50 ↓"),
    ("auroc", "AUROC vs trimap ↑"),
    ("pointing_game", "pointing ↑"),
    ("forwards", "forwards / sample"),
    ("backwards", "backwards / sample"),
    ("ms", "ms / sample"),
)


def print_table(study: dict) -> None:
    methods = study["methods"]
    columns = [(key, title) for key, title in COLUMNS if key in next(iter(methods.values()))]
    print(
        f"\n{study['model']} (atom_weight {study['atom_weight']}, {study.get('texts', study.get('images'))} samples)\n"
    )
    print("| method | " + " | ".join(title for _, title in columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, values in methods.items():
        cells = [
            f"{values[key]['mean']:.4g}" if key in ("forwards", "backwards", "ms") else f"{values[key]['mean']:.3f}"
            for key, _ in columns
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


def _by_atom_weight(studies: list[dict]) -> dict[float | None, list[dict]]:
    """The studies grouped by their model's atom_weight (one model per seed in each group), in order of appearance."""
    groups: dict[float | None, list[dict]] = {}
    for study in studies:
        groups.setdefault(study["atom_weight"], []).append(study)
    return groups


def seed_summary(studies: list[dict]) -> dict:
    """Per atom_weight (the atom models and the baselines), per method and metric: mean and sample std over the
    models (one per seed) of each model's mean over samples."""
    from _stats import mean_std

    summary = {}
    for weight, members in ((str(w), group) for w, group in _by_atom_weight(studies).items()):
        methods = members[0]["methods"]
        summary[weight] = {
            "models": [m["model"] for m in members],
            "methods": {
                name: {
                    key: mean_std(m["methods"][name][key]["mean"] for m in members)._asdict() for key in methods[name]
                }
                for name in methods
            },
        }
    return summary


# The metrics the paired tests cover (one per family; the others are in the tables) and which way is better.
PAIRED_METRICS = {"deletion_auc": "lower", "insertion_auc": "higher", "comprehensiveness@20": "higher",
                  "sufficiency@20": "lower"}  # fmt: skip


def _per_sample_mean(models: list[dict], method: str, key: str) -> dict[int, float]:
    """Each sample's value averaged over the models (seeds) of a group, keyed by sample index."""
    rows = [model["methods"][method][key].get("values") for model in models]
    if any(row is None for row in rows) or len({len(row) for row in rows}) != 1:
        raise ValueError(
            "Paired tests need every model's per-sample values over the same samples: rerun benchmarks/"
            "faithfulness.py (JSON written before per-sample values were kept has only means)."
        )
    return {i: float(np.nanmean(values)) for i, values in enumerate(zip(*rows))}


def paired_comparisons(studies: list[dict], reference: str = "q") -> dict:
    """Paired by sample (Wilcoxon signed-rank and sign test over samples, `_stats.paired_test`):

    - `vs_<reference>`, per atom_weight group: every method against `reference` on the same models;
    - `atom_vs_baseline`: every method on the atom models (the largest atom_weight) against the same method on the
      baselines (atom_weight 0): does atom training change that method's faithfulness?

    Each sample's value is first averaged over the group's models (seeds), so a test has one pair per sample. A
    test's `mean_difference` is method - reference (atom - baseline) and `better` the samples where it is better.
    """
    from _stats import paired_test

    # a model without its results.json (atom_weight None) belongs to no group
    groups = {float(w): group for w, group in _by_atom_weight(studies).items() if w is not None}

    def test(first: dict[int, float], second: dict[int, float], better: str) -> dict:
        out = paired_test(first, second)
        out["mean_difference"] = float(np.nanmean([second[i] - first[i] for i in first]))
        out["better"] = out["higher" if better == "higher" else "lower"]
        return out

    result: dict = {"reference": reference, "metrics": PAIRED_METRICS}
    for weight, models in sorted(groups.items()):
        methods = models[0]["methods"]
        if reference not in methods:
            continue
        result.setdefault(f"vs_{reference}", {})[str(weight)] = {
            name: {
                key: test(_per_sample_mean(models, reference, key), _per_sample_mean(models, name, key), better)
                for key, better in PAIRED_METRICS.items()
            }
            for name in methods
            if name != reference
        }
    atom_weights = [w for w in groups if w > 0]
    if 0.0 in groups and atom_weights:
        atom, base = groups[max(atom_weights)], groups[0.0]
        result["atom_vs_baseline"] = {
            name: {
                key: test(_per_sample_mean(base, name, key), _per_sample_mean(atom, name, key), better)
                for key, better in PAIRED_METRICS.items()
            }
            for name in atom[0]["methods"]
            if name in base[0]["methods"]
        }
    return result


def print_paired(comparisons: dict) -> None:
    """Markdown tables of `paired_comparisons`: mean difference, Wilcoxon p, and samples better / paired."""
    metrics = list(comparisons["metrics"])
    header = "| method | " + " | ".join(f"{key} ({comparisons['metrics'][key]} is better)" for key in metrics) + " |"

    def table(title: str, rows: dict) -> None:
        print(f"\n{title}\n\n{header}\n| --- |" + " --- |" * len(metrics))
        for name, tests in rows.items():
            cells = [
                f"{t['mean_difference']:+.3f}, p {t['wilcoxon_p']:.2g} ({t['better']}/{t['n']} better)"
                for t in (tests[key] for key in metrics)
            ]
            print(f"| {name} | " + " | ".join(cells) + " |")

    reference = comparisons["reference"]
    for weight, rows in comparisons.get(f"vs_{reference}", {}).items():
        table(f"atom_weight {weight}: each method - {reference}, paired by sample (values averaged over seeds)", rows)
    if "atom_vs_baseline" in comparisons:
        table("each method: atom models - baseline models, paired by sample", comparisons["atom_vs_baseline"])


def print_seed_summary(summary: dict) -> None:
    for weight, group in summary.items():
        methods = group["methods"]
        columns = [(key, title) for key, title in COLUMNS if key in next(iter(methods.values()))]
        print(f"\natom_weight {weight}: mean ± std over {len(group['models'])} models (seeds)\n")
        print("| method | " + " | ".join(title for _, title in columns) + " |")
        print("| --- |" + " --- |" * len(columns))
        for name, values in methods.items():
            cells = []
            for key, _ in columns:
                mean, std = values[key]["mean"], values[key]["std"]
                cells.append(
                    f"{mean:.4g}"
                    if key in ("forwards", "backwards")
                    else f"{mean:.0f} ± {std:.0f}"
                    if key == "ms"
                    else f"{mean:.3f} ± {std:.3f}"
                )
            print(f"| {name} | " + " | ".join(cells) + " |")


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_model", nargs="*", default=[], help="Image model folder(s) (pets3).")
    parser.add_argument("--pets_dir", default=os.path.join(ROOT, "..", "shared", "data", "pets3"))
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--text_model", nargs="*", default=[], help="Text model folder(s).")
    parser.add_argument(
        "--text_file", default=os.path.join(ROOT, "..", "shared", "data", "poem_sentiment", "test.tsv")
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"Default: {' '.join(METHODS)}.")
    parser.add_argument("--ig_steps", type=int, default=50, help="Integrated Gradients points (Captum's default).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random map.")
    parser.add_argument("--max_samples", type=int, default=None, help="Only the first N test images / texts.")
    parser.add_argument(
        "--text_stride",
        type=int,
        default=1,
        help="Every K-th text of --text_file (a file sorted by source, e.g. CoLA).",
    )
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "faithfulness.json")
    )
    parser.add_argument("--panel_out", default=None, help="Also draw a panel PNG (rows: methods) of the first model.")
    parser.add_argument("--panel_samples", type=int, default=4, help="Inputs in the panel (the first N).")
    parser.add_argument("--summarize", default=None, help="Only print the over-seeds tables of a written JSON.")
    args = parser.parse_args(argv)
    if args.text_stride < 1:
        parser.error(f"--text_stride must be >= 1 (1 = every text), got {args.text_stride}.")
    if args.summarize:
        with open(args.summarize) as handle:
            written = json.load(handle)
        for kind in ("text", "image"):
            if written.get(kind):
                print_seed_summary(seed_summary(written[kind]))
                print_paired(paired_comparisons(written[kind]))
        return
    for name in args.methods:
        get_attribution_method(name)  # an unknown name stops here, before any model is loaded
    torch.manual_seed(args.seed)
    report = {"machine_start": machine(), "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    report.update(image=[], text=[])

    def write() -> None:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        report["machine_end"] = machine()
        with open(args.out + ".tmp", "w") as handle:
            json.dump(report, handle, indent=2)
        os.replace(args.out + ".tmp", args.out)

    all_texts = read_texts(args.text_file, None)[:: args.text_stride] if args.text_model else []
    texts = all_texts[: args.max_samples]
    if args.panel_out:
        from hf_atom.explain import ALL_METHODS

        if args.text_model:
            inputs, model_dir = all_texts[: args.panel_samples], args.text_model[0]
        else:
            inputs, model_dir = (
                pets_test_split(args.pets_dir, args.split_seed)[0][: args.panel_samples],
                args.image_model[0],
            )
        print(f"panel: {method_panel(model_dir, inputs, ALL_METHODS, args.panel_out)}")
        if args.max_samples == 0:
            return
    for model_dir in args.text_model:
        report["text"].append(text_study(model_dir, texts, args.methods, args))
        print_table(report["text"][-1])
        report["text_over_seeds"] = seed_summary(report["text"])
        report["text_paired"] = paired_comparisons(report["text"])
        write()
    for model_dir in args.image_model:
        report["image"].append(image_study(model_dir, args.pets_dir, args.methods, args))
        print_table(report["image"][-1])
        report["image_over_seeds"] = seed_summary(report["image"])
        report["image_paired"] = paired_comparisons(report["image"])
        write()
    for kind in ("text", "image"):
        if report.get(f"{kind}_over_seeds"):
            print_seed_summary(report[f"{kind}_over_seeds"])
            print_paired(report[f"{kind}_paired"])
    write()
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
