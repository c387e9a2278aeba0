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


class _SphereNormalize(torch.autograd.Function):
    """`torch.nn.functional.normalize(x, dim=-1, eps=eps)` with a fused backward (fewer ops per step than autograd's
    chain of norm, clamp and division; same values and gradients). vmap-able like `_EuclideanNorm`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        length = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / length.clamp_min(eps), length

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        unit, length = output
        ctx.mark_non_differentiable(length)
        ctx.eps = inputs[1]
        ctx.save_for_backward(unit, length)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_length: torch.Tensor) -> tuple[torch.Tensor, None]:
        unit, length = ctx.saved_tensors
        # below eps the divisor is the constant eps: only the radial projection is dropped where it is not
        radial = (grad * unit).sum(-1, keepdim=True).masked_fill_(length <= ctx.eps, 0.0)
        return (grad - unit * radial) / length.clamp_min(ctx.eps), None


def sphere_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / max(||x||_2, eps) over the last dim, as `torch.nn.functional.normalize`."""
    return _SphereNormalize.apply(x, eps)[0]


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


# --------------------------------------------------------------------------------------------------------
# The whole objective in one autograd node (issue 19): weight * (L_A + charge_weight * charge term) for the 2-norm,
# with a hand-written backward, so a training step dispatches a few dozen ops instead of the ~240 of the op-by-op
# graph. Same formula as hf_atom.loss and hf_atom.charge (tested against both and against the naive double sum).
#
# With a = S+ + S- and b = S+ - S- (= sum |q|) per sample, the D2 factorisation becomes
#   like = S+_A S+_B + S-_A S-_B = (a_A a_B + b_A b_B) / 2,   unlike = (a_A a_B - b_A b_B) / 2,
#   E_AB = like / near + unlike / far = (a_A a_B (1/near + 1/far) + b_A b_B (1/near - 1/far)) / 2   (opposite),
# and the literal step swaps near and far (the sign of the b term). Every (B, B) factor is symmetric in (A, B).
# --------------------------------------------------------------------------------------------------------


def _safe_inverse(x: torch.Tensor) -> torch.Tensor:
    """1 / x for a norm x >= 0, and 0 where x == 0 (the subgradient of a norm at 0); a NaN stays NaN. Two ops."""
    return x.reciprocal().nan_to_num_(nan=float("nan"), posinf=0.0)


class FusedAtomObjective(torch.autograd.Function):
    """`weight * (L_A + charge_weight * penalty)` and its parts from q (B, N), p (B, N, D), a boolean mask (B, N).

    Forward arguments: q, p, keep, softening, opposite (bool), mean (bool), weight, charge_weight (0: no charge term),
    target. Outputs: the objective (differentiable), then L_A, the charge penalty, pair energies (B, B), dbar (B, B),
    mu (B, D), r (B,), S+ (B,), S- (B,), n_tokens (B,), valid (B,), pair_mask (B, B) and the number of unordered
    pairs, none of them differentiable. First derivatives only; a masked token's values never matter (selected away).
    """

    @staticmethod
    def forward(ctx, q, p, keep, softening, opposite, mean, weight, charge_weight, target):
        ctx.set_materialize_grads(False)
        drop = ~keep
        qm = q.masked_fill(drop, 0.0)
        pm = p.masked_fill(drop[:, :, None], 0.0)
        n = keep.sum(1, dtype=q.dtype)
        valid = n > 0
        inv_n = n.clamp(min=1.0).reciprocal()
        qp = qm.clamp(min=0.0)
        m = 1.0 - qp  # Eq. 11 (masked tokens: pm = 0, so m never matters there)
        m_scaled = m * inv_n[:, None]
        mu = (m_scaled[:, :, None] * pm).sum(1)  # Eq. 9
        diff = pm - mu[:, None, :]
        sp = torch.linalg.vector_norm(diff, dim=-1)
        r = (qp * sp).sum(1) * inv_n  # Eq. 10
        s_plus = qp.sum(1)
        a = qm.sum(1)  # S+ + S-
        b = 2.0 * s_plus - a  # S+ - S- = sum |q|
        c = inv_n * 0.5**0.5 if mean else torch.full_like(a, 0.5**0.5)
        ah, bh = a * c, b * c
        dbar = torch.linalg.vector_norm(mu[:, None, :] - mu[None, :, :], dim=-1)  # Eq. 7
        rh = 0.5 * r
        far_arg = dbar + (rh[:, None] + rh[None, :])
        eps = dbar.new_tensor(softening)
        inv_near = torch.hypot(dbar, eps).reciprocal()
        inv_far = torch.hypot(far_arg, eps).reciprocal()
        u, v = inv_near + inv_far, inv_near - inv_far
        if not opposite:
            v = -v
        outer_a, outer_b = ah[:, None] * ah[None, :], bh[:, None] * bh[None, :]
        pair_mask = valid[:, None] & valid[None, :]
        pair_mask.fill_diagonal_(False)
        # A sample without valid tokens has a = b = 0, so its energies are exactly 0 (u, v are finite: near, far >=
        # softening > 0); only the self pairs are left to exclude. Selected, not multiplied: nothing NaN can leak.
        energy = outer_a * u + outer_b * v
        energy.fill_diagonal_(0.0)
        num = pair_mask.sum()
        inv_num = num.clamp(min=1).to(q.dtype).reciprocal()
        loss = energy.sum() * inv_num  # D4: the mean over ordered pairs equals the mean over unordered ones
        scale = inv_num * (2.0 * weight)  # twice d objective / d E_AB: the symmetric pairs' factor 2, applied once
        if charge_weight:
            vf = valid.to(q.dtype)
            deviation = b * inv_n - target
            per_sample = deviation * vf
            inv_valid = vf.sum().clamp(min=1.0).reciprocal()
            penalty = (per_sample * deviation).sum() * inv_valid
            objective = weight * (loss + charge_weight * penalty)
            charge_scale = per_sample * (inv_valid * inv_n * (2.0 * weight * charge_weight))  # d objective / d b
        else:
            penalty = loss.new_zeros(())
            objective = weight * loss
            charge_scale = None
        ctx.opposite = opposite
        ctx.save_for_backward(
            drop, qm, pm, m_scaled, inv_n, 0.5 * inv_n, mu, diff, sp, qp, c, ah, bh, dbar, far_arg, inv_near, inv_far, u, v,
            outer_a, outer_b, pair_mask, scale, charge_scale,
        )  # fmt: skip
        num_pairs = num // 2
        outputs = (loss, penalty, energy, dbar, mu, r, s_plus, a - s_plus, n, valid, pair_mask, num_pairs)
        ctx.mark_non_differentiable(*outputs)
        return (objective, *outputs)

    @staticmethod
    def backward(ctx, g_objective, *_):
        if g_objective is None:
            return (None,) * 9
        (drop, qm, pm, m_scaled, inv_n, half_inv_n, mu, diff, sp, qp, c, ah, bh, dbar, far_arg, inv_near, inv_far, u, v,
         outer_a, outer_b, pair_mask, scale, charge_scale) = ctx.saved_tensors  # fmt: skip
        g = pair_mask * (g_objective * scale)  # 2 d objective / d E_AB (every use below takes the factor 2 once)
        ga, gb = g * outer_a, g * outer_b
        g_near, g_far = ga + gb, ga - gb  # d / d (1/near), d / d (1/far); v's sign is in gb's use below
        if not ctx.opposite:
            g_near, g_far = g_far, g_near
        # 1/hypot(x, eps): d/dx = -x / hypot^3
        g_far_arg = -(g_far * far_arg * inv_far**3)
        g_dbar = g_far_arg - g_near * dbar * inv_near**3
        g_r = g_far_arg.sum(1)  # far_arg_AB = dbar + (r_A + r_B) / 2: d r_A = sum_B d far_arg_AB (times 2: half below)
        g_ah = (g * u) @ ah
        g_bh = (g * v) @ bh
        g_a, g_b = g_ah * c, g_bh * c
        if charge_scale is not None:
            g_b = g_b + g_objective * charge_scale
        # dbar_AB = ||mu_A - mu_B||: d mu_A = 2 sum_B W_AB (mu_A - mu_B), W = g_dbar / dbar (symmetric)
        w = g_dbar * _safe_inverse(dbar)
        g_mu = w.sum(1)[:, None] * mu - w @ mu
        g_r_scaled = (g_r * half_inv_n)[:, None]
        g_diff = diff * (g_r_scaled * qp * _safe_inverse(sp))[:, :, None]  # sp = ||pm - mu||, r = mean(qp sp)
        g_mu = g_mu - g_diff.sum(1)
        g_pm = g_diff + m_scaled[:, :, None] * g_mu[:, None, :]  # mu = sum m pm / N
        g_qp = (2.0 * g_b)[:, None] + g_r_scaled * sp - (pm * g_mu[:, None, :]).sum(-1) * inv_n[:, None]
        g_qm = g_qp.masked_fill(qm < 0, 0.0) + (g_a - g_b)[:, None]  # a = sum qm, b = 2 sum qp - sum qm
        g_q = g_qm.masked_fill(drop, 0.0)
        g_p = g_pm.masked_fill(drop[:, :, None], 0.0)
        return g_q, g_p, None, None, None, None, None, None, None
