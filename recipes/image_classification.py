"""Finetune any image classifier with atom modeling (or without: `--atom_weight 0`).

Models: any `AutoModelForImageClassification` (ViT, DINOv2, ConvNeXt, ResNet, ...) from a Hub id or a local folder,
or a small ViT / ResNet / ConvNeXt trained from scratch (`--scratch_architecture`, when no model is given).
Data: a Hub dataset id (e.g. `--dataset_name timm/oxford-iiit-pet`), a local `imagefolder` directory
(`--train_dir DIR`, class sub-folders), or the embedded default: scikit-learn's bundled digits (no network).

    python recipes/image_classification.py --output_dir out/digits                          # embedded default
    python recipes/image_classification.py --train_dir ../shared/data/pets3/images \\
        --model_name_or_path DINOV2_FOLDER --output_dir out/pets3 --atom_weight 0.1
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/image_classification.py \\
        --dataset_name ILSVRC/imagenet-1k --model_name_or_path google/vit-base-patch16-224 --output_dir out/in1k --bf16 true

Arguments come as flags, or as one JSON / YAML file with the same keys; every `AtomTrainingArguments` field applies.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import transformers
from _common import classification_metrics, parse_arguments, train_and_evaluate
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, set_seed

from hf_atom import AtomTrainer, AtomTrainingArguments

logger = logging.getLogger(__name__)

FLIP = 0  # PIL.Image.Transpose.FLIP_LEFT_RIGHT (PIL is imported lazily, with the data)
SCRATCH_ARCHITECTURES = ("vit", "resnet", "convnext")


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "Hub id or local folder of a pretrained image model. Unset: train a small model from scratch."
        },
    )
    scratch_architecture: str = field(
        default="vit",
        metadata={"help": "From-scratch model when no model is given.", "choices": list(SCRATCH_ARCHITECTURES)},
    )
    image_size: int = field(
        default=16, metadata={"help": "Input size of a from-scratch model (pixels); the ViT uses 8x8 patches of it."}
    )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="digits",
        metadata={
            "help": "'digits' (scikit-learn's bundled 8x8 digits, offline), a Hub dataset id, or 'imagefolder' "
            "(set --train_dir)."
        },
    )
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_dir: Optional[str] = field(
        default=None, metadata={"help": "Local imagefolder root (one sub-folder per class); implies 'imagefolder'."}
    )
    image_column: Optional[str] = field(default=None, metadata={"help": "Image column (default: image or img)."})
    label_column: Optional[str] = field(default=None, metadata={"help": "Label column (default: label or labels)."})
    validation_split: float = field(
        default=0.15, metadata={"help": "Share of all samples held out for validation when there is no such split."}
    )
    test_split: float = field(
        default=0.15, metadata={"help": "Share of all samples held out for testing when there is no test split."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the held-out splits (fixed across runs)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Truncate validation and test sets."})
    augment: str = field(
        default="auto",
        metadata={
            "help": "Training augmentation: 'crop_flip', 'crop', 'none', or 'auto' (crop for digits, "
            "crop_flip otherwise).",
            "choices": ["auto", "crop_flip", "crop", "none"],
        },
    )

    def __post_init__(self):
        if self.train_dir is not None:
            self.dataset_name = "imagefolder"
        if self.dataset_name == "imagefolder" and self.train_dir is None:
            raise ValueError("--dataset_name imagefolder needs --train_dir DIR (one sub-folder per class).")
        for name in ("validation_split", "test_split"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"--{name} must be in [0, 0.5), got {getattr(self, name)}.")


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def digits_dataset():
    """scikit-learn's bundled digits (1797 8x8 images, 10 classes) as a `datasets.Dataset`, no network needed."""
    import datasets
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [Image.fromarray((image * 255.0 / 16.0).astype(np.uint8), mode="L") for image in digits.images]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[str(d) for d in range(10)])}
    )
    return datasets.Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)


def _pick_column(columns: list[str], requested: Optional[str], candidates: tuple[str, ...], what: str) -> str:
    if requested is not None:
        if requested not in columns:
            raise ValueError(f"--{what}_column {requested!r} is not a column of the dataset; columns: {columns}.")
        return requested
    for name in candidates:
        if name in columns:
            return name
    raise ValueError(f"No {what} column found among {columns}; set --{what}_column.")


def load_splits(data_args: DataArguments):
    """Returns a DatasetDict with train / validation / test and the image and label column names."""
    import datasets

    if data_args.dataset_name == "digits":
        raw = datasets.DatasetDict({"train": digits_dataset()})
    elif data_args.dataset_name == "imagefolder":
        raw = datasets.load_dataset("imagefolder", data_dir=data_args.train_dir)
    else:
        try:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        except Exception as error:  # noqa: BLE001 - re-raised with the fix
            raise ValueError(
                f"Could not load dataset {data_args.dataset_name!r} ({type(error).__name__}: {error}). Use a Hub "
                "dataset id (needs network), --train_dir for a local imagefolder, or the default 'digits'."
            ) from error
    if "train" not in raw:
        raise ValueError(f"Dataset {data_args.dataset_name!r} has no 'train' split; splits: {list(raw)}.")
    columns = raw["train"].column_names
    image_column = _pick_column(columns, data_args.image_column, ("image", "img", "pixel_values"), "image")
    label_column = _pick_column(columns, data_args.label_column, ("label", "labels", "fine_label"), "label")
    if not isinstance(raw["train"].features[label_column], datasets.ClassLabel):
        raw = raw.class_encode_column(label_column)

    splits = {"train": raw["train"]}
    for name, aliases in (("validation", ("validation", "valid", "val")), ("test", ("test",))):
        found = next((alias for alias in aliases if alias in raw), None)
        if found is not None:
            splits[name] = raw[found]
    total = len(splits["train"])
    for name, share in (("test", data_args.test_split), ("validation", data_args.validation_split)):
        if name not in splits and share > 0:
            held_out = max(1, round(share * total))
            parts = splits["train"].train_test_split(
                test_size=held_out, seed=data_args.split_seed, stratify_by_column=label_column
            )
            splits["train"], splits[name] = parts["train"], parts["test"]
    if data_args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(data_args.max_train_samples, len(splits["train"]))))
    if data_args.max_eval_samples is not None:
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = splits[name].select(range(min(data_args.max_eval_samples, len(splits[name]))))
    return datasets.DatasetDict(splits), image_column, label_column


# ---------------------------------------------------------------------------------------------------------
# Model and transforms
# ---------------------------------------------------------------------------------------------------------


def scratch_config(architecture: str, image_size: int, labels: list[str]):
    label2id = {label: i for i, label in enumerate(labels)}
    common = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label2id}
    if architecture == "vit":
        return transformers.ViTConfig(
            image_size=image_size,
            patch_size=max(1, image_size // 8),
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=128,
            hidden_dropout_prob=0.0,
            **common,
        )
    if architecture == "resnet":
        return transformers.ResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1], layer_type="basic", **common
        )
    return transformers.ConvNextConfig(
        hidden_sizes=[16, 32, 64], depths=[1, 1, 1], num_stages=3, patch_size=2, **common
    )


def build_model_and_processor(model_args: ModelArguments, labels: list[str]):
    label2id = {label: i for i, label in enumerate(labels)}
    if model_args.model_name_or_path is None:
        config = scratch_config(model_args.scratch_architecture, model_args.image_size, labels)
        model = AutoModelForImageClassification.from_config(config)
        size = model_args.image_size
        processor = transformers.ViTImageProcessor(
            do_resize=True, size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        return model, processor
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    model = AutoModelForImageClassification.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True
    )
    processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
    return model, processor


def random_resized_crop(image, scale: tuple[float, float], rng: random.Random):
    """torchvision's RandomResizedCrop area/aspect sampling, on a PIL image (the resize is the processor's)."""
    width, height = image.size
    for _ in range(10):
        area = width * height * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.crop((left, top, left + w, top + h))
    return image


def make_transforms(processor, image_column: str, label_column: str, augment: str, seed: int):
    rng = random.Random(seed)
    crop_scale = (0.85, 1.0) if augment == "crop" else (0.5, 1.0)

    def prepare(batch: dict[str, list[Any]], train: bool) -> dict[str, Any]:
        images = [image.convert("RGB") for image in batch[image_column]]
        if train and augment != "none":
            images = [random_resized_crop(image, crop_scale, rng) for image in images]
            if augment == "crop_flip":
                images = [image.transpose(FLIP) if rng.random() < 0.5 else image for image in images]
        pixel_values = processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.tensor(batch[label_column])}

    return (lambda batch: prepare(batch, True)), (lambda batch: prepare(batch, False))


def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([row["pixel_values"] for row in rows]),
        "labels": torch.stack([torch.as_tensor(row["labels"]) for row in rows]),
    }


# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------


def run(model_args: ModelArguments, data_args: DataArguments, training_args: AtomTrainingArguments):
    """Trains, evaluates on validation and test, saves the model with its processor; returns (trainer, results)."""
    set_seed(training_args.seed)
    splits, image_column, label_column = load_splits(data_args)
    labels = list(splits["train"].features[label_column].names)
    model, processor = build_model_and_processor(model_args, labels)
    augment = data_args.augment
    if augment == "auto":
        augment = "crop" if data_args.dataset_name == "digits" else "crop_flip"
    train_transform, eval_transform = make_transforms(
        processor, image_column, label_column, augment, training_args.seed
    )
    splits["train"].set_transform(train_transform)
    for name in ("validation", "test"):
        if name in splits:
            splits[name].set_transform(eval_transform)
    training_args.remove_unused_columns = False  # the transforms read the raw image column

    trainer = AtomTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        data_collator=collate,
        compute_metrics=classification_metrics,
        processing_class=processor,
    )
    results = train_and_evaluate(
        trainer,
        splits,
        {
            "model": model_args.model_name_or_path or f"scratch-{model_args.scratch_architecture}",
            "dataset": data_args.train_dir or data_args.dataset_name,
            "split_seed": data_args.split_seed,
        },
    )
    return trainer, results


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataArguments, AtomTrainingArguments), argv
    )
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    _, results = run(model_args, data_args, training_args)
    return results


if __name__ == "__main__":
    main()
