# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Per-step atom statistics, buffered on the device and averaged when a trainer logs (trl's `_metrics` pattern)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch

from .regularizer import ATOM_STATISTICS, AtomRegularizerOutput

__all__ = ["METRIC_NAMES", "AtomMetricsBuffer"]

# What a trainer logs beside its own loss: the task loss, every atom statistic, and the fewest pairs in one micro-batch.
METRIC_NAMES = ("task_loss", *ATOM_STATISTICS, "atom_pairs_min")


class AtomMetricsBuffer:
    """Per-micro-batch values of `task_loss` and each of `ATOM_STATISTICS`, kept by mode and name as device tensors
    (`self._metrics[mode][name]`, trl's pattern), so a training step makes no host synchronisation."""

    def __init__(self):
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    @torch.no_grad()
    def add(self, mode: str, task_loss: torch.Tensor, atom: AtomRegularizerOutput) -> None:
        metrics, device = self._metrics[mode], atom.q.device
        metrics["task_loss"].append(task_loss.detach().float().to(device))
        for name, value in atom.statistics().items():
            metrics[name].append(value.to(device))
        metrics["batch_size"].append(torch.tensor(float(atom.q.shape[0]), device=device))  # weights eval means

    def clear(self, mode: str) -> None:
        self._metrics[mode].clear()

    def summary(
        self, mode: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, float] | None:
        """Averages and clears one mode's values; None when there are none.

        Losses and token statistics: the mean over steps in training (like Trainer's loss), over samples in evaluation
        (like eval_loss). `atom_pairs`: the plain mean per micro-batch; `atom_pairs_min`: the fewest in one.
        `reduce` averages the summary (a tensor in `METRIC_NAMES` order) over processes.
        """
        metrics = self._metrics[mode]
        if not metrics:
            return None
        values = {name: torch.stack(metrics.pop(name)) for name in list(metrics)}
        batch_sizes = values.pop("batch_size")
        weights = batch_sizes if mode == "eval" else torch.ones_like(batch_sizes)
        means = {name: (value * weights).sum() / weights.sum() for name, value in values.items()}
        means["atom_pairs"] = values["atom_pairs"].mean()
        means["atom_pairs_min"] = values["atom_pairs"].min()
        summary = torch.stack([means[name] for name in METRIC_NAMES])
        if reduce is not None:
            summary = reduce(summary)
        result = {name: round(value, 6) for name, value in zip(METRIC_NAMES, summary.tolist())}
        result["atom_pairs_min"] = int(round(result["atom_pairs_min"]))
        return result
