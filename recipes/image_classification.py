"""Finetune any image classifier with atom modeling (or without: `--atom_weight 0`).

Models: any `AutoModelForImageClassification` (ViT, DINOv2, ConvNeXt, ResNet, ...) from a Hub id or a local folder,
or a small ViT / ResNet / ConvNeXt trained from scratch (`--scratch_architecture`, when no model is given).
Data: a Hub dataset id (e.g. `--dataset_name timm/oxford-iiit-pet`), a local `imagefolder` directory
(`--train_dir DIR`, class sub-folders), or the embedded default: scikit-learn's bundled digits (no network).

    python recipes/image_classification.py --output_dir out/digits                          # embedded default
    python recipes/image_classification.py --train_dir ../shared/data/pets3/images \\
        --model_name_or_path DINOV2_FOLDER --output_dir out/pets3 --atom_weight 0.1
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/image_classification.py \\
        --dataset_name ILSVRC/imagenet-1k --streaming true --max_steps 50000 --image_pipeline fast \\
        --dataloader_num_workers 8 --model_name_or_path google/vit-base-patch16-224 --output_dir out/in1k --bf16 true

Unlabelled evaluation splits (ImageNet-1K's test split: every label -1) are predicted, not scored:
`predictions_<split>.csv` holds index, file name, label id and label name; `results.json` has validation metrics only.

Arguments come as flags, or as one JSON / YAML file with the same keys; every `AtomTrainingArguments` field applies
(`remove_unused_columns` defaults to false here: the transforms read the raw image column). The pieces of the
recipe live in `_image.py`, shared with `main_job.py`.
"""

from __future__ import annotations

import logging
from typing import Any

from _common import parse_arguments
from _image import TRAINING_DEFAULTS, DataArguments, ModelArguments, run

from hf_atom import AtomTrainingArguments


def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataArguments, AtomTrainingArguments), argv, defaults=TRAINING_DEFAULTS
    )
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    _, results = run(model_args, data_args, training_args)
    return results


if __name__ == "__main__":
    main()
