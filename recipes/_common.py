"""Shared pieces of the recipes: version checks, argument parsing, label checks, metrics, and the results file.

The recipes import the `hf_atom` package as installed (`pip install -e .` from the repository root, or `make setup`):
nothing here edits `sys.path`, so an installed `hf_atom` is never shadowed by whatever checkout a script sits in.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction, HfArgumentParser
from transformers.utils import check_min_version
from transformers.utils.versions import require_version

logger = logging.getLogger(__name__)

# Like the official examples: fail at start-up, naming the fix, rather than deep inside a run.
check_min_version("5.0.0")
require_version("datasets>=3.0", "To fix: pip install -e '.[recipes]'")
if importlib.util.find_spec("hf_atom") is None:
    raise ImportError(
        "The recipes need the hf_atom package: run `pip install -e '.[recipes]'` (or `make setup`) in the repository "
        "root, or put the repository root on PYTHONPATH."
    )

UNLABELLED = -1  # how GLUE, ImageNet-1K and most Hub datasets mark the labels of their test splits


def parse_arguments(dataclasses: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """Flags, or a single JSON / YAML file with the same keys (the transformers example convention)."""
    parser = HfArgumentParser(tuple(dataclasses))
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def check_label_ids(split_name: str, label_ids: Sequence[Any] | None, labels: Sequence[str]) -> bool:
    """Whether a split is labelled: `False` when it has no label column (`label_ids` is None) or every label is
    -1 (an unlabelled test split, as GLUE and ImageNet-1K ship them); `True` when every label indexes `labels`.

    Raises:
        ValueError: some labels fall outside `0..len(labels) - 1` (including a mix of -1 and real labels), which
            would otherwise surface as an index error after training.
    """
    if label_ids is None:
        return False
    values = np.asarray(label_ids)
    if values.size and np.all(values == UNLABELLED):
        return False
    bad = sorted({int(v) for v in values[(values < 0) | (values >= len(labels))]})
    if bad:
        raise ValueError(
            f"The {split_name} split has label ids {bad[:10]} outside the training label set 0..{len(labels) - 1} "
            f"({list(labels)[:10]}{' ...' if len(labels) > 10 else ''}). A split is either fully labelled or fully "
            f"unlabelled (all {UNLABELLED}): fix the labels, or drop the split."
        )
    return True


def materialise(stream, limit: int | None = None):
    """A streamed split as a `datasets.Dataset` (written to the datasets cache; images stay encoded on the way)."""
    import datasets

    if limit is not None:
        stream = stream.take(limit)

    def rows(stream):
        yield from stream

    return datasets.Dataset.from_generator(rows, features=stream.features, gen_kwargs={"stream": stream.decode(False)})


def classification_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Accuracy, macro F1 and Matthews correlation with scikit-learn (exact and offline)."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted = np.asarray(logits).argmax(axis=-1)
    labels = np.asarray(prediction.label_ids)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_macro": float(f1_score(labels, predicted, average="macro")),
        "mcc": float(matthews_corrcoef(labels, predicted)),
    }


PredictionWriter = Callable[[str, np.ndarray], str]
"""`(split_name, predicted_label_ids) -> path`: writes an unlabelled split's predictions in a submission format."""


def train_and_evaluate(
    trainer,
    splits,
    results: dict[str, Any],
    *,
    unlabelled: Sequence[str] = (),
    write_predictions: PredictionWriter | None = None,
    num_train: int | None = None,
    print_metrics: bool = True,
) -> dict[str, Any]:
    """Trains (resuming if asked), saves the model with its processor and the trainer state, scores the labelled
    validation / test splits, predicts the unlabelled ones (`unlabelled`, written by `write_predictions`) and writes
    `results.json`; returns `results` completed with the metrics (keys without their prefix).

    `num_train` replaces `len(splits["train"])` (a streamed training split has no length: None unless given).
    `print_metrics=False` skips `trainer.log_metrics` (it prints; a caller with its own printed report may not want it).
    """
    args = trainer.args
    train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    metrics = dict(train_result.metrics)
    if num_train is None and hasattr(splits["train"], "__len__"):  # a stream has no length
        num_train = len(splits["train"])
    if num_train is not None:
        metrics["train_samples"] = num_train
    if print_metrics:
        trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    results.update(
        atom_weight=args.atom_weight,
        seed=args.seed,
        num_train=num_train,
        train_runtime_s=train_result.metrics.get("train_runtime"),
    )
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name not in splits:
            continue
        results[f"num_{name}"] = len(splits[name])
        if name in unlabelled:
            if write_predictions is None:
                raise ValueError(f"The {name} split is unlabelled and the recipe gave no way to write predictions.")
            logger.info(
                "The %s split is unlabelled (no label column, or every label is -1): predicting it, not scoring it. "
                "results.json reports validation metrics only for it.",
                name,
            )
            output = trainer.predict(splits[name], metric_key_prefix=prefix)
            logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            if trainer.is_world_process_zero():
                path = write_predictions(name, np.asarray(logits).argmax(axis=-1))
                results.setdefault("predictions", {})[name] = path
                logger.info("Predictions for the unlabelled %s split: %s", name, path)
            continue
        metrics = trainer.evaluate(splits[name], metric_key_prefix=prefix)
        metrics[f"{prefix}_samples"] = len(splits[name])
        if print_metrics:
            trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results[name] = {
            key[len(prefix) + 1 :]: value
            for key, value in metrics.items()
            if key.startswith(prefix + "_") and key != f"{prefix}_samples"
        }
    results["unlabelled_splits"] = [name for name in ("validation", "test") if name in splits and name in unlabelled]
    if trainer.is_world_process_zero():
        write_results(args.output_dir, results)
    return results


def write_results(output_dir: str, results: dict[str, Any]) -> str:
    """The final metrics JSON of a run (`results.json`), next to the model."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "results.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2, sort_keys=True, default=str)
    return path
