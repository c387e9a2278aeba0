"""Can token importance be trusted? Localisation on pets3 and a deletion test, for models trained with the recipes.

    python benchmarks/faithfulness.py --image_model out/pets3-atom --pets_dir ../shared/data/pets3 \\
        --text_model out/poem-atom --text_file ../shared/data/poem_sentiment/test.tsv

Image model (pets3 test split, the recipe's fixed seeded split):
- localisation: per-image AUROC of a patch score against the trimap foreground (pet = positive, background =
  negative, patches that are mostly border ignored), and the pointing game (is the top patch on the pet?), for
  |q|, for the signed q, for the class-token attention of the last layer (averaged over heads), and for a random
  map;
- deletion: masking the k patches of highest |q| (pixels set to the normalised mean, 0) against k random patches:
  mean drop of the predicted class's probability and share of changed predictions.
Text model: the same deletion test with the top 20% tokens (by |q|, special tokens excluded) replaced by [MASK].
Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

from hf_atom import AutoAtomModel  # noqa: E402


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


@torch.no_grad()
def image_study(
    model_dir: str,
    pets_dir: str,
    split_seed: int,
    ks: list[int],
    draws: int,
    seed: int,
    max_samples: int | None = None,
) -> dict:
    from PIL import Image
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoAtomModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    paths, _ = pets_test_split(pets_dir, split_seed)
    paths = paths[:max_samples]
    rng = np.random.default_rng(seed)
    per_image = {"abs_q": [], "q": [], "cls_attention": [], "random": []}
    pointing = {name: [] for name in per_image}
    deletion = {k: {"top_abs_q": [], "random": []} for k in ks}
    for path in paths:
        pixels = processor(Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
        importance = model.token_importance(pixel_values=pixels)
        rows, cols = importance.grid_shape
        q = importance.grid()[0].numpy().reshape(-1)
        abs_q = np.abs(q)
        outputs = model(pixel_values=pixels, output_attentions=True)
        prefix = outputs.attentions[-1].shape[-1] - rows * cols
        attention = outputs.attentions[-1][0, :, 0, prefix:].mean(0).numpy()
        labels = trimap_patch_labels(
            os.path.join(pets_dir, "trimaps", os.path.splitext(os.path.basename(path))[0] + ".png"),
            processor,
            (rows, cols),
        )
        scores_by_name = {"abs_q": abs_q, "q": q, "cls_attention": attention, "random": rng.random(rows * cols)}
        for name, scores in scores_by_name.items():
            per_image[name].append(auroc(scores, labels))
            pointing[name].append(float(labels[int(np.argmax(scores))] == 1))

        probabilities = outputs.logits.softmax(-1)[0]
        predicted = int(probabilities.argmax())
        patch_h, patch_w = (int(c) for c in importance.cell_size)

        def masked_probability(
            patches: np.ndarray,
            pixels=pixels,
            predicted=predicted,
            cols=cols,
            cell=(patch_h, patch_w),
            probabilities=probabilities,
        ) -> tuple[float, bool]:
            masked = pixels.clone()
            height, width = cell
            for patch in patches:
                r, c = divmod(int(patch), cols)
                masked[..., r * height : (r + 1) * height, c * width : (c + 1) * width] = 0.0
            probs = model(pixel_values=masked).logits.softmax(-1)[0]
            return float(probabilities[predicted] - probs[predicted]), int(probs.argmax()) != predicted

        order = np.argsort(-abs_q)
        for k in ks:
            deletion[k]["top_abs_q"].append(masked_probability(order[:k]))
            deletion[k]["random"].append(
                np.mean(
                    [masked_probability(rng.choice(rows * cols, k, replace=False)) for _ in range(draws)], axis=0
                ).tolist()
            )
    return {
        "model": model_dir,
        "images": len(paths),
        "auroc_mean": {name: float(np.nanmean(v)) for name, v in per_image.items()},
        "auroc_std": {name: float(np.nanstd(v)) for name, v in per_image.items()},
        "pointing_game": {name: float(np.mean(v)) for name, v in pointing.items()},
        "deletion": {
            str(k): {
                name: {
                    "probability_drop": float(np.mean([d for d, _ in v])),
                    "prediction_changed": float(np.mean([f for _, f in v])),
                }
                for name, v in runs.items()
            }
            for k, runs in deletion.items()
        },
        "patches": rows * cols,
    }


@torch.no_grad()
def text_study(
    model_dir: str, text_file: str, fraction: float, draws: int, seed: int, max_samples: int | None = None
) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoAtomModel.from_pretrained(model_dir).eval()
    with open(text_file, encoding="utf-8") as handle:
        texts = [line.rstrip("\n").split("\t")[1] for line in handle if line.strip()][:max_samples]
    replacement = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.unk_token_id
    rng = np.random.default_rng(seed)
    results = {"top_abs_q": [], "random": []}
    for text in texts:
        encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
        special = encoded.pop("special_tokens_mask")[0].bool()
        importance = model.token_importance(**encoded)
        probabilities = importance.logits.softmax(-1)[0]
        predicted = int(probabilities.argmax())
        candidates = torch.nonzero(~special).flatten().numpy()
        k = max(1, int(round(fraction * len(candidates))))

        def masked_probability(
            positions: np.ndarray, encoded=encoded, predicted=predicted, probabilities=probabilities
        ) -> tuple[float, bool]:
            ids = encoded["input_ids"].clone()
            ids[0, positions] = replacement
            probs = model(input_ids=ids, attention_mask=encoded["attention_mask"]).logits.softmax(-1)[0]
            return float(probabilities[predicted] - probs[predicted]), int(probs.argmax()) != predicted

        scores = importance.q[0].abs().numpy()[candidates]
        results["top_abs_q"].append(masked_probability(candidates[np.argsort(-scores)[:k]]))
        results["random"].append(
            np.mean(
                [masked_probability(rng.choice(candidates, k, replace=False)) for _ in range(draws)], axis=0
            ).tolist()
        )
    return {
        "model": model_dir,
        "texts": len(texts),
        "fraction_masked": fraction,
        "deletion": {
            name: {
                "probability_drop": float(np.mean([d for d, _ in v])),
                "prediction_changed": float(np.mean([f for _, f in v])),
            }
            for name, v in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_model", nargs="*", default=[], help="Image atom model folder(s) (pets3).")
    parser.add_argument("--pets_dir", default=os.path.join(ROOT, "..", "shared", "data", "pets3"))
    parser.add_argument("--split_seed", type=int, default=0)
    parser.add_argument("--ks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--text_model", nargs="*", default=[], help="Text atom model folder(s).")
    parser.add_argument(
        "--text_file", default=os.path.join(ROOT, "..", "shared", "data", "poem_sentiment", "test.tsv")
    )
    parser.add_argument("--text_fraction", type=float, default=0.2)
    parser.add_argument("--draws", type=int, default=5, help="Random draws averaged per sample.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_samples", type=int, default=None, help="Only the first N test images / texts.")
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "faithfulness.json")
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    report = {
        "image": [
            image_study(m, args.pets_dir, args.split_seed, args.ks, args.draws, args.seed, args.max_samples)
            for m in args.image_model
        ],
        "text": [
            text_study(m, args.text_file, args.text_fraction, args.draws, args.seed, args.max_samples)
            for m in args.text_model
        ],
    }
    for study in report["image"]:
        print(
            f"\nLocalisation on pets3 test ({study['images']} images, {study['patches']} patches): {study['model']}\n"
        )
        print("| patch score | AUROC vs trimap (mean ± std over images) | pointing game |")
        print("| --- | --- | --- |")
        for name in study["auroc_mean"]:
            print(
                f"| {name} | {study['auroc_mean'][name]:.3f} ± {study['auroc_std'][name]:.3f} | {study['pointing_game'][name]:.3f} |"
            )
        print("\n| patches masked | by | mean drop of predicted-class probability | predictions changed |")
        print("| --- | --- | --- | --- |")
        for k, runs in study["deletion"].items():
            for name, values in runs.items():
                print(f"| {k} | {name} | {values['probability_drop']:.4f} | {values['prediction_changed']:.3f} |")
    for study in report["text"]:
        print(
            f"\nDeletion on {study['texts']} texts, {study['fraction_masked']:.0%} of tokens -> [MASK]: {study['model']}\n"
        )
        print("| tokens masked by | mean drop of predicted-class probability | predictions changed |")
        print("| --- | --- | --- |")
        for name, values in study["deletion"].items():
            print(f"| {name} | {values['probability_drop']:.4f} | {values['prediction_changed']:.3f} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
