# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Per-step atom statistics, buffered on the device and averaged when a trainer logs (trl's `_metrics` pattern).

In training, a step only keeps detached references to the tensors the statistics are made of (views: no kernel, no
copy beyond what the step already holds); the statistics themselves are computed when the trainer logs, so the logged
statistics add no per-step work. Evaluation computes them at once (an evaluation is not a training step, and an
evaluation set can be long).
"""

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
        self._pending: list[tuple[torch.Tensor, AtomRegularizerOutput]] = []  # training steps not yet summarised

    @torch.no_grad()
    def add(self, mode: str, task_loss: torch.Tensor, atom: AtomRegularizerOutput) -> None:
        if mode == "train":
            self._pending.append((task_loss.detach(), atom.for_statistics()))
            return
        self._add_statistics(mode, task_loss, atom)

    def _add_statistics(self, mode: str, task_loss: torch.Tensor, atom: AtomRegularizerOutput) -> None:
        metrics, device = self._metrics[mode], atom.q.device
        metrics["task_loss"].append(task_loss.detach().float().to(device))
        for name, value in atom.statistics().items():
            metrics[name].append(value.to(device))
        metrics["batch_size"].append(torch.tensor(float(atom.q.shape[0]), device=device))  # weights eval means

    @torch.no_grad()
    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for task_loss, atom in pending:
            self._add_statistics("train", task_loss, atom)

    def clear(self, mode: str) -> None:
        if mode == "train":
            self._pending = []
        self._metrics[mode].clear()

    def summary(
        self, mode: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, float] | None:
        """Averages and clears one mode's values; None when there are none.

        Losses and token statistics: the mean over steps in training (like Trainer's loss), over samples in evaluation
        (like eval_loss). `atom_pairs`: the plain mean per micro-batch; `atom_pairs_min`: the fewest in one.
        `reduce` averages the summary (a tensor in `METRIC_NAMES` order) over processes.
        """
        if mode == "train":
            self._flush()
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
