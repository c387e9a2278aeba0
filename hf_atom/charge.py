# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The charge term (D3d, ours): an anti-collapse constraint on the charges q, added to L_A by `AtomObjective`.

Without it the charges drift to 0, where L_A vanishes and the interpretation of q is empty (docs/DESIGN.md, D3d).
It is a separate term, never part of `atom_loss`.
"""

from __future__ import annotations

import torch

from ._kernels import compute_dtype

__all__ = ["charge_target_penalty"]


def charge_target_penalty(q: torch.Tensor, mask: torch.Tensor | None = None, *, target: float = 0.5) -> torch.Tensor:
    """Mean over valid samples of (mean_i |q_i| - target)^2, the mean over each sample's valid tokens i.

    A masked token's value never matters, even inf or NaN (it is selected away, not multiplied by 0).
    """
    if q.dim() != 2:
        raise ValueError(f"`q` must have shape (batch, tokens), got shape {tuple(q.shape)}.")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"`target` must be in [0, 1] (a mean |q|), got {target}.")
    dtype = compute_dtype(q.dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = q.to(dtype)
        if mask is None:
            weights = torch.ones_like(q)
        else:
            keep = mask != 0
            weights = keep.to(dtype)
            q = torch.where(keep, q, torch.zeros_like(q))
        n_tokens = weights.sum(dim=1)
        valid = (n_tokens > 0).to(dtype)
        mean_abs = q.abs().sum(dim=1) / n_tokens.clamp(min=1.0)
        per_sample = (mean_abs - target) ** 2 * valid
        return per_sample.sum() / valid.sum().clamp(min=1.0)
