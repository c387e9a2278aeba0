# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The contract of the atomic loss's inputs and settings, checked with errors that name the problem and the fix.

`hf_atom.loss` holds the formula; this module holds what it accepts. Settings are checked once, where a loss is
built (`AtomLoss`) or called by function (`atom_loss`); shapes, dtypes and devices on every call (free); values only
where that is free of a host synchronisation (CPU) or asked for (`check_values=True`).
"""

from __future__ import annotations

import math

import torch

from .configuration import STEP_MODES, TOKEN_REDUCTIONS

__all__ = [
    "NonFiniteInputError",
    "check_atom_inputs",
    "check_inputs",
    "check_position_range",
    "validate_loss_settings",
]


class NonFiniteInputError(ValueError):
    """`q` or `p` holds NaN or inf on a valid token: upstream, something diverged (a `ValueError`, so that callers
    catching bad input still catch it; its own type lets a training loop tell divergence from a wrong call)."""


def validate_loss_settings(softening: float, step: str, token_reduction: str, norm_ord: float) -> None:
    """Raises a `ValueError` naming the argument and the allowed values for any invalid loss setting."""
    if isinstance(softening, bool) or not isinstance(softening, (int, float)) or not math.isfinite(softening):
        raise ValueError(f"`softening` must be a finite number > 0 (the Plummer length), got {softening!r}.")
    if softening <= 0:
        raise ValueError(
            f"`softening` must be > 0, got {softening}: without softening the energy is infinite for two samples "
            "at the same place. Use e.g. softening=0.1."
        )
    if step not in STEP_MODES:
        raise ValueError(
            f"`step` must be one of {STEP_MODES}, got {step!r} ('opposite' is the default, 'literal' the ablation)."
        )
    if token_reduction not in TOKEN_REDUCTIONS:
        raise ValueError(f"`token_reduction` must be one of {TOKEN_REDUCTIONS}, got {token_reduction!r}.")
    if isinstance(norm_ord, bool) or not isinstance(norm_ord, (int, float)) or math.isnan(norm_ord) or norm_ord < 1:
        raise ValueError(
            f"`norm_ord` must be a number >= 1 or float('inf') (a true norm), got {norm_ord!r}. Use 2.0 for the "
            "Euclidean distance."
        )


def _validate_tensors(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None) -> None:
    for name, tensor in (("q", q), ("p", p)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"`{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
        if not tensor.is_floating_point():
            raise ValueError(
                f"`{name}` must have a floating dtype (float16/bfloat16/float32/float64), got {tensor.dtype}."
            )
    if q.dim() != 2:
        raise ValueError(f"`q` must have shape (batch, tokens), got shape {tuple(q.shape)}.")
    if p.dim() != 3 or p.shape[:2] != q.shape:
        raise ValueError(
            f"`p` must have shape (batch, tokens, dim) matching `q` {tuple(q.shape)}, got shape {tuple(p.shape)}."
        )
    if p.shape[-1] < 1:
        raise ValueError("`p` must have at least one position dimension.")
    if p.device != q.device:
        raise ValueError(f"`q` and `p` must be on the same device, got {q.device} and {p.device}.")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ValueError(f"`mask` must be a torch.Tensor or None, got {type(mask).__name__}.")
        if mask.shape != q.shape:
            raise ValueError(f"`mask` must have shape (batch, tokens) = {tuple(q.shape)}, got {tuple(mask.shape)}.")
        if mask.is_floating_point() or mask.is_complex():
            raise ValueError(
                f"`mask` must be boolean (or integer 0/1 like an attention_mask), got dtype {mask.dtype}: a fractional "
                "mask has no meaning here. Pass `mask.bool()` or `mask > 0.5`."
            )
        if mask.device != q.device:
            raise ValueError(f"`mask` must be on the same device as `q` ({q.device}), got {mask.device}.")


def check_atom_inputs(
    q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None = None, *, check_positions: bool = True
) -> None:
    """Checks the values of the loss's inputs against its contract, raising a `ValueError` that names the problem.

    The contract of `atom_loss` / `AtomLoss`: `q` in [-1, 1] (Eq. 6) and finite on valid tokens, `p` finite on valid
    tokens, `mask` boolean or integer 0/1. Shapes and dtypes are always checked (free); values need a look at the
    data, which on an accelerator is a host synchronisation: `atom_loss` checks q and the mask itself for CPU tensors
    (O(B*N)), and everything, on any device, when called with `check_values=True`.
    """
    _validate_tensors(q, p, mask)
    _check_values(q, p, mask, check_positions)


def _check_values(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None, check_positions: bool) -> None:
    keep = torch.ones_like(q, dtype=torch.bool) if mask is None else mask != 0
    if mask is not None and mask.dtype != torch.bool:
        wrong = (mask != 0) & (mask != 1)
        if bool(wrong.any()):
            raise ValueError(
                f"`mask` must hold only 0 and 1, got {mask[wrong].unique()[:5].tolist()}. Pass `mask.bool()` if "
                "non-zero should mean valid."
            )
    q = q.detach()
    invalid = ~(q.abs() <= 1) & keep  # one pass: NaN fails every comparison, inf and |q| > 1 fail this one
    if bool(invalid.any()):
        if not bool(torch.isfinite(q[invalid]).all()):
            raise NonFiniteInputError("`q` has NaN or infinite values on valid tokens.")
        raise ValueError(
            f"`q` must be in [-1, 1] (Eq. 6: q = 2 sigmoid(Q(e)) - 1), got values up to {q[invalid].abs().max():.4g}."
        )
    if check_positions and bool((~torch.isfinite(p.detach()).all(dim=-1) & keep).any()):
        raise NonFiniteInputError("`p` has NaN or infinite values on valid tokens.")


def check_inputs(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None, check_values: bool) -> None:
    """The checks every loss call makes: shapes, dtypes and devices always; values on CPU or when asked."""
    _validate_tensors(q, p, mask)
    if _under_vmap(q, p):  # a value check is data-dependent control flow: check the stacked inputs before vmap
        return
    if check_values or q.device.type == "cpu":  # value checks synchronise an accelerator: opt-in there
        _check_values(q, p, mask, check_positions=check_values)  # p is B*N*D: its check is opt-in everywhere


def _under_vmap(*tensors: torch.Tensor) -> bool:
    """True for tensors batched by `torch.func.vmap` (e.g. one atom loss per ensemble member)."""
    is_batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    return is_batched is not None and any(is_batched(tensor) for tensor in tensors)


def check_position_range(p: torch.Tensor, mask: torch.Tensor | None, check_values: bool) -> None:
    """Refuses positions so large that the distances overflow float32, where value checks run (CPU, or asked).

    Finite positions of magnitude about 1e19 / sqrt(D) or more square past float32's largest value (3.4e38) inside
    the norms, and the loss or its gradients come out NaN. Scaling every norm would cost the training step several
    ops per norm (issue 19's op budget), so such positions are refused instead (positions from the heads are unit
    vectors or layer-normalised by default). Masked tokens never matter.
    """
    if _under_vmap(p) or not (check_values or p.device.type == "cpu"):
        return
    largest_square = torch.finfo(torch.float64 if p.dtype == torch.float64 else torch.float32).max  # compute dtype
    limit = math.sqrt(largest_square / 4 / p.shape[-1])  # ||p_i - p_j||^2 <= D (2 max|p|)^2 stays below it
    magnitude = p.detach().abs().amax(dim=-1)
    if mask is not None:
        magnitude = magnitude.masked_fill(mask == 0, 0.0)
    largest = magnitude.amax()
    if bool(largest > limit):
        raise ValueError(
            f"`p` has values up to {largest.item():.3g} on valid tokens: distances between positions that large "
            f"(above {limit:.2g} for dim {p.shape[-1]}) overflow float32 and the loss would be NaN. Scale `p` down, "
            "e.g. normalise it (AtomConfig(position_norm='sphere'))."
        )
