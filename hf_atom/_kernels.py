# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Private numerics of the atomic loss: norms with cheap, NaN-free backwards and the distance softening.

They exist for speed and safety only; `hf_atom.loss` reads like the equations and calls these. The fused 2-norm
backwards were a third of the loss's CPU time with `torch.linalg.vector_norm`'s generic backward
(benchmarks/loss_speed.py). First derivatives only.
"""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32, or float64 for float64 inputs: half precision loses the small differences between pair energies."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _safe_ratio(grad: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """grad / norm, and 0 where norm == 0 (the subgradient of a norm at 0)."""
    positive = norm > 0
    return torch.where(positive, grad / torch.where(positive, norm, torch.ones_like(norm)), torch.zeros_like(norm))


class _EuclideanNorm(torch.autograd.Function):
    """||x||_2 over the last dim with a one-multiply backward and gradient 0 (not NaN) at x = 0.

    `setup_context` + `generate_vmap_rule`: works under `torch.func.vmap` (ensembles, per-group losses).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, ord=2, dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0], output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, norm = ctx.saved_tensors
        return x * _safe_ratio(grad, norm)[..., None]


class _EuclideanSpread(torch.autograd.Function):
    """||p_i - mu|| for every token (2-norm), fused: the backward makes one pass over (B, N, D) and gives mu's
    gradient as minus the sum of p's, instead of a separate subtraction backward. vmap-able like `_EuclideanNorm`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(p: torch.Tensor, mu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        difference = p - mu[:, None, :]
        return torch.linalg.vector_norm(difference, ord=2, dim=-1), difference

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        norm, difference = output
        ctx.mark_non_differentiable(difference)
        ctx.save_for_backward(difference, norm)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_difference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        difference, norm = ctx.saved_tensors
        grad_p = difference * _safe_ratio(grad, norm)[..., None]
        return grad_p, -grad_p.sum(dim=1)


def norm(x: torch.Tensor, ord: float) -> torch.Tensor:
    """`ord`-norm over the last dim, with zero (not NaN) gradient where x == 0."""
    if ord == 2.0:
        return _EuclideanNorm.apply(x)
    return torch.linalg.vector_norm(x, ord=ord, dim=-1)  # its generic backward also maps 0 to 0


def spread(p: torch.Tensor, mu: torch.Tensor, ord: float) -> torch.Tensor:
    """||p_i - mu_A|| for every token, (B, N)."""
    if ord == 2.0:
        return _EuclideanSpread.apply(p, mu)[0]
    return torch.linalg.vector_norm(p - mu[:, None, :], ord=ord, dim=-1)


def soften(d: torch.Tensor, softening: float) -> torch.Tensor:
    """Plummer softening s(d) = sqrt(d^2 + eps^2), computed as a hypot to avoid overflow."""
    return torch.hypot(d, d.new_tensor(softening))
