# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Per-step atom statistics, buffered on the device and averaged when a trainer logs (trl's `_metrics` pattern)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .regularizer import ATOM_STATISTICS, AtomRegularizerOutput

__all__ = ["METRIC_NAMES", "AtomMetricsBuffer"]

METRIC_NAMES = ("task_loss",) + ATOM_STATISTICS
_PAIRS = METRIC_NAMES.index("atom_pairs")


class AtomMetricsBuffer:
    """Rows of `task_loss` + `ATOM_STATISTICS` per micro-batch, kept as tensors (no host synchronisation per step)."""

    def __init__(self):
        self._rows: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}

    @torch.no_grad()
    def add(self, mode: str, task_loss: torch.Tensor, atom: AtomRegularizerOutput) -> None:
        stats = atom.statistics()
        device = atom.q.device
        values = [task_loss.detach().float().to(device), *(stats[name].to(device) for name in ATOM_STATISTICS)]
        values.append(torch.tensor(float(atom.q.shape[0]), device=device))  # batch size: weights eval means
        self._rows[mode].append(torch.stack(values))

    def clear(self, mode: str) -> None:
        self._rows[mode].clear()

    def summary(
        self, mode: str, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> dict[str, float] | None:
        """Averages and clears one mode's rows; None when there are none.

        Losses and token statistics: the mean over steps in training (like Trainer's loss), over samples in evaluation
        (like eval_loss). `atom_pairs`: the plain mean per micro-batch; `atom_pairs_min`: the fewest in one.
        `reduce` averages the summary over processes.
        """
        rows = self._rows[mode]
        if not rows:
            return None
        stacked = torch.stack(rows)
        weights = stacked[:, -1] if mode == "eval" else torch.ones_like(stacked[:, -1])
        means = (stacked[:, :-1] * weights[:, None]).sum(dim=0) / weights.sum()
        pairs = stacked[:, _PAIRS]
        means[_PAIRS] = pairs.mean()
        summary = torch.cat([means, pairs.min()[None]])
        if reduce is not None:
            summary = reduce(summary)
        values = summary.tolist()
        rows.clear()
        result = {name: round(value, 6) for name, value in zip(METRIC_NAMES, values)}
        result["atom_pairs_min"] = int(round(values[-1]))
        return result
