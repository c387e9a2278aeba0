"""Shared pieces of the Trainer recipes: version checks, argument parsing, metrics, training and evaluation, and the
results file (their data: `_data.py`).

The recipes import the `hf_atom` package as installed (`pip install -e .` from the repository root, or `make setup`;
`_requirements.py` says so at start-up when it is missing).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import _requirements  # noqa: F401 - first: fails at start-up, naming the fix, without hf_atom
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction, HfArgumentParser
from transformers.utils import check_min_version
from transformers.utils.versions import require_version

logger = logging.getLogger(__name__)

# Like the official examples: fail at start-up, naming the fix, rather than deep inside a run.
check_min_version("5.0.0")
require_version("datasets>=3.0", "To fix: pip install -e '.[recipes]'")


def parse_arguments(
    dataclasses: Sequence[type], argv: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None
) -> tuple:
    """Flags, or a single JSON / YAML file with the same keys (the transformers example convention).

    `defaults` replaces some fields' defaults for this recipe (the image recipe's `remove_unused_columns=False`):
    shown by `--help`, and a flag or key that the user gives still wins.
    """
    parser = HfArgumentParser(tuple(dataclasses))
    defaults = dict(defaults or {})
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        with open(os.path.abspath(argv[0]), encoding="utf-8") as handle:
            if argv[0].endswith(".json"):
                values = json.load(handle)
            else:
                import yaml

                values = yaml.safe_load(handle) or {}
        return parser.parse_dict({**defaults, **values})
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)


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

MetricsHook = Callable[[str, dict[str, float]], None]
"""`(prefix, metrics) -> None`: adds derived metrics (`<prefix>_<name>`) to one evaluated split's metrics in place."""


def train_and_evaluate(
    trainer,
    splits,
    results: dict[str, Any],
    *,
    unlabelled: Sequence[str] = (),
    write_predictions: PredictionWriter | None = None,
    num_train: int | None = None,
    print_metrics: bool = True,
    add_metrics: MetricsHook | None = None,
) -> dict[str, Any]:
    """Trains (resuming if asked), saves the model with its processor and the trainer state, scores the labelled
    validation / test splits, predicts the unlabelled ones (`unlabelled`, written by `write_predictions`) and writes
    `results.json`; returns `results` completed with the metrics (keys without their prefix).

    `num_train` replaces `len(splits["train"])` (a streamed training split has no length: None unless given).
    `print_metrics=False` skips `trainer.log_metrics` (it prints; a caller with its own printed report may not want it).
    `add_metrics` completes each evaluated split's metrics before they are logged and saved, so that
    `<prefix>_results.json`, `all_results.json` and `results.json` agree (run_clm's perplexity, for instance).
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
        if add_metrics is not None:
            add_metrics(prefix, metrics)
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
