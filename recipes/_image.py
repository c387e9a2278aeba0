"""The image-classification recipe's pieces, shared by `image_classification.py` (the command line) and `main_job.py`
(baseline vs atom on digits): arguments, data, model and processor, and the run. Pixels: `_image_transforms.py`.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import transformers
from _common import classification_metrics, train_and_evaluate
from _data import (
    check_label_ids,
    check_shuffle_buffer,
    check_streaming,
    check_streaming_source,
    load_hub_dataset,
    materialise,
    named_splits,
    pick_column,
    truncate,
)
from _image_transforms import FastPixels, ImageTransform, collate
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, set_seed

from hf_atom import AtomTrainer, AtomTrainingArguments, with_atom

logger = logging.getLogger(__name__)

SCRATCH_ARCHITECTURES = ("vit", "resnet", "convnext")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
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
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_dir: str | None = field(
        default=None, metadata={"help": "Local imagefolder root (one sub-folder per class); implies 'imagefolder'."}
    )
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: image or img)."})
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: label or labels)."})
    validation_split: float = field(
        default=0.15, metadata={"help": "Share of all samples held out for validation when there is no such split."}
    )
    test_split: float = field(
        default=0.15, metadata={"help": "Share of all samples held out for testing when there is no test split."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the held-out splits (fixed across runs)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test sets."})
    augment: str = field(
        default="auto",
        metadata={
            "help": "Training augmentation: 'crop_flip', 'crop', 'none', or 'auto' (crop for digits, "
            "crop_flip otherwise).",
            "choices": ["auto", "crop_flip", "crop", "none"],
        },
    )
    image_pipeline: str = field(
        default="processor",
        metadata={
            "help": "How pixels are made: 'processor' (the model's image processor) or 'fast' (the same PIL resize and "
            "the normalisation as one multiply-add in torch: equal to the processor to float32 rounding, faster; "
            "fixed-size processors such as ViT's and DeiT's only). See docs/PERFORMANCE.md.",
            "choices": ["processor", "fast"],
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split of a Hub (or local Hub-layout) dataset instead of materialising it "
            "(ImageNet-1K); needs --max_steps. Validation and test are read in full as usual."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "With --streaming: rows in the shuffle buffer (raw, undecoded rows)."}
    )

    def __post_init__(self):
        if self.train_dir is not None:
            self.dataset_name = "imagefolder"
        if self.dataset_name == "imagefolder" and self.train_dir is None:
            raise ValueError("--dataset_name imagefolder needs --train_dir DIR (one sub-folder per class).")
        for name in ("validation_split", "test_split"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"--{name} must be in [0, 0.5), got {getattr(self, name)}.")
        check_streaming_source(self.streaming, from_hub=self.dataset_name not in ("digits", "imagefolder"))
        check_shuffle_buffer(self.shuffle_buffer_size)


# The Trainer drops the dataset columns its model does not take; the transforms read the raw image column, so the
# recipe's command line defaults this to False (`parse_arguments(..., defaults=TRAINING_DEFAULTS)`).
TRAINING_DEFAULTS = {"remove_unused_columns": False}


def check_arguments(data_args: DataArguments, training_args: AtomTrainingArguments) -> None:
    """Checks that need both argument groups, before any data is read."""
    check_streaming(data_args.streaming, training_args.max_steps)
    if training_args.remove_unused_columns:
        raise ValueError(
            "remove_unused_columns=True makes the Trainer drop the raw image column that this recipe's transforms "
            "read. The recipe's command line defaults it to False: drop --remove_unused_columns true, or build the "
            "arguments with remove_unused_columns=False."
        )


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


def _load_raw(data_args: DataArguments):
    import datasets

    if data_args.dataset_name == "digits":
        return datasets.DatasetDict({"train": digits_dataset()})
    if data_args.dataset_name == "imagefolder":
        return datasets.load_dataset("imagefolder", data_dir=data_args.train_dir)
    return load_hub_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        streaming=data_args.streaming,
        offline_hint="offline, use --train_dir for a local imagefolder, or the default 'digits'.",
    )


def load_splits(data_args: DataArguments):
    """Returns train / validation / test and the image and label column names. The training split is a
    `datasets.Dataset`, or with `--streaming` a shuffled `datasets.IterableDataset` (a plain dict then holds the
    splits); validation and test are `datasets.Dataset`s. Labels are not checked here (see `unlabelled_splits`)."""
    import datasets

    raw = _load_raw(data_args)
    named_splits(raw, data_args.dataset_name)  # raises without a training split
    features = raw["train"].features
    if features is None:  # a stream whose format carries no schema: read it off the first rows
        raw["train"] = raw["train"]._resolve_features()
        features = raw["train"].features
    columns = list(features)
    image_column = pick_column(columns, data_args.image_column, ("image", "img", "pixel_values"), "image")
    label_column = pick_column(columns, data_args.label_column, ("label", "labels", "fine_label"), "label")
    if not isinstance(features[label_column], datasets.ClassLabel):
        if data_args.streaming:
            raise ValueError(
                f"--streaming needs a ClassLabel label column (the label names), and {label_column!r} is "
                f"{features[label_column]}: collecting the names would read the whole stream. Drop --streaming."
            )
        raw = raw.class_encode_column(label_column)

    splits: dict[str, Any] = named_splits(raw, data_args.dataset_name)
    if data_args.streaming:
        missing = [
            name
            for name, share in (("validation", data_args.validation_split), ("test", data_args.test_split))
            if name not in splits and share > 0
        ]
        if missing:
            raise ValueError(
                f"The streamed dataset has no {' or '.join(missing)} split and a stream cannot hold one out: set "
                f"{' and '.join(f'--{name}_split 0' for name in missing)}, or drop --streaming."
            )
        seed = data_args.split_seed
        splits["train"] = splits["train"].shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
        if data_args.max_train_samples is not None:
            splits["train"] = splits["train"].take(data_args.max_train_samples)
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = materialise(splits[name], data_args.max_eval_samples)
        return splits, image_column, label_column

    total = len(splits["train"])
    for name, share in (("test", data_args.test_split), ("validation", data_args.validation_split)):
        if name not in splits and share > 0:
            held_out = max(1, round(share * total))
            parts = splits["train"].train_test_split(
                test_size=held_out, seed=data_args.split_seed, stratify_by_column=label_column
            )
            splits["train"], splits[name] = parts["train"], parts["test"]
    truncate(splits, data_args.max_train_samples, data_args.max_eval_samples)
    return datasets.DatasetDict(splits), image_column, label_column


def unlabelled_splits(splits, label_column: str, labels: list[str]) -> list[str]:
    """The evaluation splits without labels (no label column, or all -1: GLUE / ImageNet-1K test splits), to be
    predicted rather than scored. Raises before training when a split mixes in labels outside the training set, names
    its classes differently, or when the training split itself is unlabelled."""
    import datasets

    unlabelled = []
    for name, split in splits.items():
        if name == "train" and isinstance(split, datasets.IterableDataset):
            continue  # a stream is not read ahead of training; its ClassLabel feature names the classes
        feature = split.features.get(label_column)
        if isinstance(feature, datasets.ClassLabel) and list(feature.names) != labels:
            raise ValueError(
                f"The {name} split's classes {list(feature.names)[:10]} differ from the training split's "
                f"{labels[:10]}; give splits of one dataset, or align them with `align_labels_with_mapping`."
            )
        labelled = check_label_ids(name, split[label_column] if feature is not None else None, labels)
        if not labelled:
            if name == "train":
                raise ValueError(
                    "The training split has no labels (all -1 or no label column); train on a labelled one."
                )
            unlabelled.append(name)
    return unlabelled


def image_files(split, image_column: str) -> list[str]:
    """The file name stored with each image (Hub parquet and imagefolder keep one), '' where there is none."""
    import datasets
    import pyarrow.compute as pc

    if not isinstance(split.features.get(image_column), datasets.Image):
        return [""] * len(split)
    raw = split.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    names: list[str] = []
    for table in raw.with_format("arrow").iter(batch_size=1000):
        paths = pc.struct_field(table.column(image_column), "path").to_pylist()
        names.extend(os.path.basename(path) if path else "" for path in paths)
    return names


def write_image_predictions(output_dir: str, split_name: str, files: list[str], predicted, labels: list[str]) -> str:
    """`predictions_<split>.csv`: index, file, label id, label name (one row per image, in split order)."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f"predictions_{split_name}.csv")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "file", "label_id", "label"])
        for index, (file, label_id) in enumerate(zip(files, predicted)):
            writer.writerow([index, file, int(label_id), labels[int(label_id)]])
    return path


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
        # The PIL backend where torchvision is missing (it has no wheel for every torch build), so the user sees no
        # "falling back" warning; the torchvision one where it is installed, as transformers defaults to.
        processor_class = (
            transformers.ViTImageProcessor
            if transformers.utils.is_torchvision_available()
            else transformers.ViTImageProcessorPil
        )
        processor = processor_class(
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


def pixel_pipeline(data_args: DataArguments, processor) -> FastPixels | None:
    """The fast pixel path (`FastPixels`, built once for the run's transforms) for `--image_pipeline fast`, None for
    the processor; raises if the processor is not one `FastPixels` reproduces."""
    if data_args.image_pipeline != "fast":
        return None
    fast = FastPixels.from_processor(processor)
    if fast is None:
        raise ValueError(
            f"--image_pipeline fast reproduces fixed-size processors (resize to height x width, rescale, normalise); "
            f"{type(processor).__name__} with size={getattr(processor, 'size', None)} is not one. Use "
            "--image_pipeline processor."
        )
    return fast


# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: AtomTrainingArguments,
    print_metrics: bool = True,
):
    """Trains, scores the labelled validation / test splits and predicts the unlabelled ones
    (`predictions_<split>.csv`), saves the model with its processor; returns (trainer, results)."""
    import datasets

    check_arguments(data_args, training_args)
    set_seed(training_args.seed)
    splits, image_column, label_column = load_splits(data_args)
    labels = list(splits["train"].features[label_column].names)
    unlabelled = unlabelled_splits(splits, label_column, labels)
    model, processor = build_model_and_processor(model_args, labels)
    augment = data_args.augment
    if augment == "auto":
        augment = "crop" if data_args.dataset_name == "digits" else "crop_flip"
    fast = pixel_pipeline(data_args, processor)
    common = {"processor": processor, "image_column": image_column, "label_column": label_column, "fast": fast}
    rank = training_args.process_index
    train_transform = ImageTransform(augment=augment, seed=training_args.seed, rank=rank, **common)
    eval_transform = ImageTransform(augment=None, **common)
    streamed = isinstance(splits["train"], datasets.IterableDataset)
    if streamed:  # transformed lazily, in the DataLoader workers, like set_transform
        columns = list(splits["train"].features)
        splits["train"] = splits["train"].map(train_transform, batched=True, batch_size=64, remove_columns=columns)
    else:
        splits["train"].set_transform(train_transform)
    files = {name: image_files(splits[name], image_column) for name in unlabelled}
    for name in ("validation", "test"):
        if name in splits:
            if name in unlabelled and label_column in splits[name].column_names:
                splits[name] = splits[name].remove_columns(label_column)
            splits[name].set_transform(eval_transform)

    # Heads on every run, the lambda = 0 baseline too (its untrained heads' statistics are logged beside the
    # atom run's), seeded alike so that runs differing only in lambda start from the same heads.
    model = with_atom(model, training_args.atom_config, seed=training_args.seed)
    trainer = AtomTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation") if "validation" not in unlabelled else None,
        data_collator=collate,
        compute_metrics=classification_metrics,
        processing_class=processor,
    )

    def write_predictions(name: str, predicted: np.ndarray) -> str:
        return write_image_predictions(training_args.output_dir, name, files[name], predicted, labels)

    results = train_and_evaluate(
        trainer,
        splits,
        {
            "model": model_args.model_name_or_path or f"scratch-{model_args.scratch_architecture}",
            "dataset": data_args.train_dir or data_args.dataset_name,
            "split_seed": data_args.split_seed,
            "streaming": data_args.streaming,
            "image_pipeline": "fast" if fast is not None else "processor",
        },
        unlabelled=unlabelled,
        write_predictions=write_predictions,
        num_train=data_args.max_train_samples if streamed else None,
        print_metrics=print_metrics,
    )
    return trainer, results
