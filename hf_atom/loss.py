# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The atomic loss L_A of atom modeling (Tuan, Chiu & Wang, arXiv 2210.03728, Eq. 4-12).

Pure tensor math: this module imports only torch, so the loss runs on any tensors.

Paper equations implemented here, per sample (atom) ``A`` with valid tokens ``i``:

- (11) ``m_i = 1 - max(q_i, 0)``
- (9)  ``mu_A = (1 / N_A) * sum_i m_i p_i``
- (10) ``r_A = (1 / N_A) * sum_i (1 - m_i) * ||p_i - mu_A||``
- (7)  ``dbar_AB = ||mu_A - mu_B||``
- (8)  ``d_ij = dbar_AB + (r_A + r_B) / 2 * step(.)``
- (5)  ``L_A = E_{A,B} sum_{i in A, j in B} q_i q_j / d_ij``

Project decisions (ours, not the paper's; see docs/DESIGN.md, D1-D5):

- D1: ``step="opposite"`` puts opposite charges on the outer shell (``step(-q_i q_j)``), which gives the
  non-zero energy minimum of the paper's Figure 2. ``step="literal"`` is the printed ``step(q_i q_j)``,
  kept for ablations only.
- D2: because ``d_ij`` takes only two values per pair of samples, the double sum factorises exactly into
  ``(S+_A S+_B + S-_A S-_B) / s(dbar) + (S+_A S-_B + S-_A S+_B) / s(dbar + rbar)`` (opposite step), with
  ``S+ = sum max(q, 0)`` and ``S- = sum min(q, 0)``. Cost O(B*N*D + B^2*D); no (B, B, N, N) or (B, N, N)
  tensor is ever built.
- D3a: Plummer softening ``s(d) = sqrt(d^2 + softening^2)`` on both distances.
- D3c: ``token_reduction="mean"`` divides a pair's double sum by ``N_A * N_B``; ``"sum"`` is the paper's sum.
- D4: the expectation is the mean over all unordered pairs of distinct valid samples; a batch with fewer
  than two valid samples gives exactly 0.
- D5: tokens with ``mask == 0`` never enter ``S+``, ``S-``, ``mu``, ``r`` or ``N``.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ._kernels import compute_dtype, norm, soften, spread

StepMode = Literal["opposite", "literal"]
TokenReduction = Literal["mean", "sum"]
STEP_MODES: tuple[str, ...] = typing.get_args(StepMode)
TOKEN_REDUCTIONS: tuple[str, ...] = typing.get_args(TokenReduction)

__all__ = [
    "STEP_MODES",
    "TOKEN_REDUCTIONS",
    "AtomLoss",
    "AtomLossOutput",
    "AtomSummaries",
    "atom_loss",
    "atom_summaries",
    "charge_target_penalty",
    "check_atom_inputs",
    "masked_pair_energies",
    "pair_energy_matrix",
    "validate_loss_settings",
]


# --------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------


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
            raise ValueError("`q` has NaN or infinite values on valid tokens.")
        raise ValueError(
            f"`q` must be in [-1, 1] (Eq. 6: q = 2 sigmoid(Q(e)) - 1), got values up to {q[invalid].abs().max():.4g}."
        )
    if check_positions and bool((~torch.isfinite(p.detach()).all(dim=-1) & keep).any()):
        raise ValueError("`p` has NaN or infinite values on valid tokens.")


def _check_inputs(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None, check_values: bool) -> None:
    _validate_tensors(q, p, mask)
    if _under_vmap(q, p):  # a value check is data-dependent control flow: check the stacked inputs before vmap
        return
    if check_values or q.device.type == "cpu":  # value checks synchronise an accelerator: opt-in there
        _check_values(q, p, mask, check_positions=check_values)  # p is B*N*D: its check is opt-in everywhere


def _under_vmap(*tensors: torch.Tensor) -> bool:
    """True for tensors batched by `torch.func.vmap` (e.g. one atom loss per ensemble member)."""
    is_batched = getattr(torch._C._functorch, "is_batchedtensor", None)
    return is_batched is not None and any(is_batched(tensor) for tensor in tensors)


# --------------------------------------------------------------------------------------------------------
# Per-sample summaries and pair energies
# --------------------------------------------------------------------------------------------------------


@dataclass
class AtomSummaries:
    """Everything the pair energies need from one sample: O(D) numbers per sample (D2).

    Args:
        mu (`torch.Tensor` of shape `(batch, dim)`): Eq. 9, the centre of the atom.
        r (`torch.Tensor` of shape `(batch,)`): Eq. 10, the radius of the atom's positive shell.
        s_plus (`torch.Tensor` of shape `(batch,)`): sum of the positive charges over valid tokens.
        s_minus (`torch.Tensor` of shape `(batch,)`): sum of the negative charges over valid tokens (<= 0).
        n_tokens (`torch.Tensor` of shape `(batch,)`): number of valid tokens N_A.
        valid (`torch.Tensor` of shape `(batch,)`, bool): samples with at least one valid token.
    """

    mu: torch.Tensor
    r: torch.Tensor
    s_plus: torch.Tensor
    s_minus: torch.Tensor
    n_tokens: torch.Tensor
    valid: torch.Tensor

    def as_tuple(self) -> tuple:
        return (self.mu, self.r, self.s_plus, self.s_minus, self.n_tokens, self.valid)

    @classmethod
    def cat(cls, parts: list[AtomSummaries]) -> AtomSummaries:
        """Concatenates summaries of several batches (e.g. gathered from several processes)."""
        return cls(*[torch.cat(list(fields), dim=0) for fields in zip(*(part.as_tuple() for part in parts))])


def atom_summaries(
    q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None = None, *, norm_ord: float = 2.0
) -> AtomSummaries:
    """Computes the per-sample summaries of Eq. 9-11 (mu, r, S+, S-) in O(B*N*D).

    Inputs are cast to float32 (float64 stays float64) and autocast is disabled inside.
    """
    dtype = compute_dtype(q.dtype if q.dtype == torch.float64 else p.dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = q.to(dtype)
        p = p.to(dtype)
        if mask is None:
            weights = torch.ones_like(q)
        else:
            keep = mask != 0
            weights = keep.to(dtype)
            # where (not indexing) keeps shapes static, and never lets a masked token's value reach a sum or a
            # gradient, even an inf or NaN one (e.g. padded rows of a fully masked attention).
            q = torch.where(keep, q, torch.zeros_like(q))
            p = torch.where(keep[:, :, None], p, torch.zeros_like(p))
        n_tokens = weights.sum(dim=1)
        valid = n_tokens > 0
        inv_n = 1.0 / n_tokens.clamp(min=1.0)
        q_plus = q.clamp(min=0.0)
        m = (1.0 - q_plus) * weights  # Eq. 11, zero on masked tokens
        # Eq. 9 as a multiply-and-sum: a (B, 1, N) x (B, N, D) batched matmul is a slow GEMV on CPU
        mu = (m[:, :, None] * p).sum(dim=1) * inv_n[:, None]
        spread_ = spread(p, mu, norm_ord)  # ||p_i - mu_A||, (B, N)
        r = (q_plus * spread_).sum(dim=1) * inv_n  # Eq. 10 (1 - m_i = max(q_i, 0))
        s_plus = q_plus.sum(dim=1)
        s_minus = q.clamp(max=0.0).sum(dim=1)
    return AtomSummaries(mu=mu, r=r, s_plus=s_plus, s_minus=s_minus, n_tokens=n_tokens, valid=valid)


def pair_energy_matrix(
    rows: AtomSummaries,
    cols: AtomSummaries,
    *,
    softening: float,
    step: str = "opposite",
    token_reduction: str = "mean",
    norm_ord: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair energies L_AB (Eq. 5 for one pair, factorised as in D2) between every row and column sample.

    Returns:
        `tuple(torch.Tensor, torch.Tensor)`: the `(R, C)` energies and the `(R, C)` centre distances dbar.
    """
    validate_loss_settings(softening, step, token_reduction, norm_ord)
    with torch.autocast(device_type=rows.mu.device.type, enabled=False):
        dbar = norm(rows.mu[:, None, :] - cols.mu[None, :, :], norm_ord)  # Eq. 7, (R, C)
        rbar = 0.5 * (rows.r[:, None] + cols.r[None, :])
        like = rows.s_plus[:, None] * cols.s_plus[None, :] + rows.s_minus[:, None] * cols.s_minus[None, :]
        unlike = rows.s_plus[:, None] * cols.s_minus[None, :] + rows.s_minus[:, None] * cols.s_plus[None, :]
        near = soften(dbar, softening)
        far = soften(dbar + rbar, softening)
        if step == "opposite":  # D1: opposite charges on the outer shell
            energy = like / near + unlike / far
        else:  # literal Eq. 8: like charges on the outer shell
            energy = like / far + unlike / near
        if token_reduction == "mean":
            energy = energy / (rows.n_tokens.clamp(min=1.0)[:, None] * cols.n_tokens.clamp(min=1.0)[None, :])
    return energy, dbar


# --------------------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------------------


@dataclass
class AtomLossOutput:
    """The atomic loss and its parts, for logging.

    Args:
        loss (`torch.Tensor`, scalar): L_A, the mean pair energy over all unordered pairs of distinct valid samples.
        pair_energies (`torch.Tensor` of shape `(batch, batch)`): L_AB for every pair; 0 on the diagonal and for
            pairs with an invalid sample.
        pair_distances (`torch.Tensor` of shape `(batch, batch)`): dbar_AB (Eq. 7).
        summaries (`AtomSummaries`): the per-sample mu, r, S+, S-, N and validity (also readable as `output.mu`, ...).
        pair_mask (`torch.Tensor` of shape `(batch, batch)`, bool): the ordered pairs that entered the mean.
        num_pairs (`torch.Tensor`, scalar): number of unordered pairs that entered the mean.
        charge_penalty (`torch.Tensor`, scalar, *optional*): the anti-collapse term, when requested (not part of `loss`).
    """

    loss: torch.Tensor
    pair_energies: torch.Tensor
    pair_distances: torch.Tensor
    summaries: AtomSummaries
    pair_mask: torch.Tensor
    num_pairs: torch.Tensor
    charge_penalty: torch.Tensor | None = None

    def __getattr__(self, name: str):  # output.mu, output.r, ...: the summaries' fields
        if name in _SUMMARY_FIELDS:
            return getattr(self.summaries, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_SUMMARY_FIELDS = ("mu", "r", "s_plus", "s_minus", "n_tokens", "valid")


def masked_pair_energies(
    rows: AtomSummaries,
    cols: AtomSummaries,
    same_sample: torch.Tensor,
    *,
    softening: float,
    step: str,
    token_reduction: str,
    norm_ord: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair energies with the excluded pairs (a sample with itself, or with an invalid sample) set to 0.

    Args:
        same_sample (`torch.Tensor` of shape `(R, C)`, bool): true where row and column are the same sample.

    Returns:
        `tuple(torch.Tensor)`: energies `(R, C)`, distances dbar `(R, C)` and the pair mask `(R, C)`.
    """
    energies, dbar = pair_energy_matrix(
        rows, cols, softening=softening, step=step, token_reduction=token_reduction, norm_ord=norm_ord
    )
    pair_mask = ~same_sample & rows.valid[:, None] & cols.valid[None, :]
    # where (not multiply) so an inf/NaN in an excluded pair can never leak into the sum or its gradient.
    energies = torch.where(pair_mask, energies, torch.zeros_like(energies))
    return energies, dbar, pair_mask


def _loss_from_summaries(
    summaries: AtomSummaries, softening: float, step: str, token_reduction: str, norm_ord: float
) -> AtomLossOutput:
    batch = summaries.mu.shape[0]
    same_sample = torch.eye(batch, dtype=torch.bool, device=summaries.mu.device)
    energies, dbar, pair_mask = masked_pair_energies(
        summaries,
        summaries,
        same_sample,
        softening=softening,
        step=step,
        token_reduction=token_reduction,
        norm_ord=norm_ord,
    )
    num_ordered = pair_mask.sum()
    # The energy is symmetric: the mean over unordered pairs equals the mean over ordered ones.
    loss = energies.sum() / num_ordered.clamp(min=1).to(energies.dtype)
    return AtomLossOutput(
        loss=loss,
        pair_energies=energies,
        pair_distances=dbar,
        summaries=summaries,
        pair_mask=pair_mask,
        num_pairs=num_ordered // 2,
    )


def atom_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    softening: float = 0.1,
    step: str = "opposite",
    token_reduction: str = "mean",
    norm_ord: float = 2.0,
    check_values: bool = False,
) -> torch.Tensor:
    """The atomic loss L_A (Eq. 5) of a batch of atoms, by the exact factorisation D2.

    Args:
        q (`torch.Tensor` of shape `(batch, tokens)`): token importances ("charges") in [-1, 1] (Eq. 6).
        p (`torch.Tensor` of shape `(batch, tokens, dim)`): token positions (Eq. 12).
        mask (`torch.Tensor` of shape `(batch, tokens)`, *optional*): true/1 for valid tokens; padding is 0.
        softening (`float`, defaults to 0.1): Plummer length eps in s(d) = sqrt(d^2 + eps^2), > 0 (D3a).
        step (`str`, defaults to `"opposite"`): `"opposite"` (D1, default) or `"literal"` (ablation only).
        token_reduction (`str`, defaults to `"mean"`): `"mean"` divides a pair's double sum by N_A * N_B;
            `"sum"` is the paper's plain sum.
        norm_ord (`float`, defaults to 2.0): order of the norm for distances (>= 1 or inf).
        check_values (`bool`, defaults to `False`): check the input values against the contract
            (`check_atom_inputs`) on any device. CPU tensors are always checked; elsewhere the check costs a host
            synchronisation, so it is opt-in.

    Shapes, dtypes and devices are always checked. A masked token's values never matter, even inf or NaN.

    Returns:
        `torch.Tensor`: a scalar, float32 (float64 for float64 inputs), even under autocast. It is 0 (with zero
        gradients) when the batch has fewer than two samples with a valid token.

    Example:

    ```python
    >>> import torch, hf_atom
    >>> q = torch.rand(4, 7) * 2 - 1
    >>> p = torch.randn(4, 7, 16)
    >>> hf_atom.atom_loss(q, p).shape
    torch.Size([])
    ```
    """
    validate_loss_settings(softening, step, token_reduction, norm_ord)
    _check_inputs(q, p, mask, check_values)
    summaries = atom_summaries(q, p, mask, norm_ord=norm_ord)
    return _loss_from_summaries(summaries, softening, step, token_reduction, norm_ord).loss


def charge_target_penalty(q: torch.Tensor, mask: torch.Tensor | None = None, *, target: float = 0.5) -> torch.Tensor:
    """Anti-collapse constraint on the charges (D3d, ours): mean over valid samples of (mean_i |q_i| - target)^2.

    Without it the charges drift to 0, where L_A vanishes and the interpretation of q is empty (docs/DESIGN.md,
    D3d). It is a separate term, never part of `atom_loss`.
    """
    if q.dim() != 2:
        raise ValueError(f"`q` must have shape (batch, tokens), got shape {tuple(q.shape)}.")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"`target` must be in [0, 1] (a mean |q|), got {target}.")
    dtype = compute_dtype(q.dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q = q.to(dtype)
        weights = torch.ones_like(q) if mask is None else (mask != 0).to(dtype)
        n_tokens = weights.sum(dim=1)
        valid = (n_tokens > 0).to(dtype)
        mean_abs = (q.abs() * weights).sum(dim=1) / n_tokens.clamp(min=1.0)
        per_sample = (mean_abs - target) ** 2 * valid
        return per_sample.sum() / valid.sum().clamp(min=1.0)


class AtomLoss(nn.Module):
    """Module form of `atom_loss` that also returns the parts for logging and, optionally, the charge penalty.

    Args:
        softening, step, token_reduction, norm_ord: as in `atom_loss`.
        charge_target (`float`, *optional*): if set, also compute `charge_target_penalty` with this target.
        check_values (`bool`, defaults to `False`): check input values on every device, as in `atom_loss`.

    Example:

    ```python
    >>> loss_fn = AtomLoss(softening=0.1)
    >>> out = loss_fn(q, p, mask, return_parts=True)
    >>> out.loss, out.num_pairs, out.pair_energies.shape
    ```
    """

    def __init__(
        self,
        softening: float = 0.1,
        step: str = "opposite",
        token_reduction: str = "mean",
        norm_ord: float = 2.0,
        charge_target: float | None = None,
        check_values: bool = False,
    ):
        super().__init__()
        validate_loss_settings(softening, step, token_reduction, norm_ord)
        if charge_target is not None and not 0.0 <= charge_target <= 1.0:
            raise ValueError(f"`charge_target` must be in [0, 1] or None, got {charge_target}.")
        self.softening = float(softening)
        self.step = step
        self.token_reduction = token_reduction
        self.norm_ord = float(norm_ord)
        self.charge_target = charge_target
        self.check_values = check_values

    def extra_repr(self) -> str:
        return (
            f"softening={self.softening}, step={self.step!r}, token_reduction={self.token_reduction!r}, "
            f"norm_ord={self.norm_ord}, charge_target={self.charge_target}"
        )

    def summaries(self, q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None = None) -> AtomSummaries:
        """Per-sample summaries (validated inputs); what a distributed run gathers across processes."""
        _check_inputs(q, p, mask, self.check_values)
        return atom_summaries(q, p, mask, norm_ord=self.norm_ord)

    def loss_from_summaries(self, summaries: AtomSummaries) -> AtomLossOutput:
        return _loss_from_summaries(summaries, self.softening, self.step, self.token_reduction, self.norm_ord)

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_parts: bool = False,
    ) -> torch.Tensor | AtomLossOutput:
        output = self.loss_from_summaries(self.summaries(q, p, mask))
        if self.charge_target is not None:
            output.charge_penalty = charge_target_penalty(q, mask, target=self.charge_target)
        return output if return_parts else output.loss
