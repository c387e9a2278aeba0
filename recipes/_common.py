"""Shared pieces of the recipes: argument parsing, metrics, and the results file."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from transformers import EvalPrediction, HfArgumentParser

# Runs as scripts (`python recipes/x.py`, `accelerate launch recipes/x.py`): make hf_atom importable from a checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_arguments(dataclasses: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """Flags, or a single JSON / YAML file with the same keys (the transformers example convention)."""
    parser = HfArgumentParser(tuple(dataclasses))
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(os.path.abspath(argv[0]))
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


def train_and_evaluate(trainer, splits, results: dict[str, Any]) -> dict[str, Any]:
    """Trains (resuming if asked), saves the model with its processor, evaluates on the validation and test splits
    and writes `results.json`; returns `results` completed with the metrics (keys without their prefix)."""
    args = trainer.args
    train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()
    trainer.save_metrics("train", train_result.metrics)
    results.update(
        atom_weight=args.atom_weight,
        seed=args.seed,
        num_train=len(splits["train"]),
        train_runtime_s=train_result.metrics.get("train_runtime"),
    )
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name in splits:
            metrics = trainer.evaluate(splits[name], metric_key_prefix=prefix)
            trainer.save_metrics(prefix, metrics)
            results[name] = {
                key[len(prefix) + 1 :]: value for key, value in metrics.items() if key.startswith(prefix + "_")
            }
            results[f"num_{name}"] = len(splits[name])
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
