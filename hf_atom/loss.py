# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The atomic loss L_A of atom modeling (Tuan, Chiu & Wang, arXiv 2210.03728, Eq. 4-12).

Pure tensor math: this module imports only torch, so the loss runs on any tensors. The input contract lives in
`hf_atom.loss_contract`, the charge term (D3d) in `hf_atom.charge`.

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._kernels import compute_dtype, norm, soften, spread

# charge_target_penalty and check_atom_inputs stay importable from here, their home before they got modules.
from .charge import charge_target_penalty  # noqa: F401
from .loss_contract import check_atom_inputs, check_inputs, check_position_range, validate_loss_settings  # noqa: F401

if TYPE_CHECKING:
    from .configuration import AtomConfig

__all__ = [
    "AtomLoss",
    "AtomLossOutput",
    "AtomSummaries",
    "atom_loss",
    "atom_summaries",
    "pair_energy_matrix",
]


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
    return _pair_energies(rows, cols, softening, step, token_reduction, norm_ord)


def _gram_distances(rows_mu: torch.Tensor, cols_mu: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (R, C) from |a|^2 + |b|^2 - 2 a.b: one matmul, no (R, C, D) difference tensor.

    Rounding is about float eps times |mu|^2 (the centres of unit positions have |mu| <= 1). The clamp keeps a
    zero distance's gradient 0 (as `vector_norm`'s) instead of sqrt's infinite slope."""
    squared = rows_mu.square().sum(-1)[:, None] + cols_mu.square().sum(-1)[None, :] - 2 * rows_mu @ cols_mu.T
    return squared.clamp(min=torch.finfo(squared.dtype).tiny).sqrt()


def _pair_energies(
    rows: AtomSummaries,
    cols: AtomSummaries,
    softening: float,
    step: str,
    token_reduction: str,
    norm_ord: float,
    gram: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pair_energy_matrix` for settings already validated (by `AtomLoss` when it was built); `gram` takes L2
    distances from one matmul (`_gram_distances`), for the many pairs of a cross-batch memory."""
    with torch.autocast(device_type=rows.mu.device.type, enabled=False):
        if gram and norm_ord == 2.0:
            dbar = _gram_distances(rows.mu, cols.mu)  # Eq. 7, (R, C)
        else:
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
    """

    loss: torch.Tensor
    pair_energies: torch.Tensor
    pair_distances: torch.Tensor
    summaries: AtomSummaries
    pair_mask: torch.Tensor
    num_pairs: torch.Tensor

    def __getattr__(self, name: str):  # output.mu, output.r, ...: the summaries' fields
        if name in _SUMMARY_FIELDS:
            return getattr(self.summaries, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_SUMMARY_FIELDS = ("mu", "r", "s_plus", "s_minus", "n_tokens", "valid")


def _masked_pair_energies(
    rows: AtomSummaries, cols: AtomSummaries, same_sample: torch.Tensor, *settings, gram: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair energies with the excluded pairs (a sample with itself, or with an invalid sample) set to 0."""
    energies, dbar = _pair_energies(rows, cols, *settings, gram=gram)
    pair_mask = ~same_sample & rows.valid[:, None] & cols.valid[None, :]
    # where (not multiply) so an inf/NaN in an excluded pair can never leak into the sum or its gradient.
    energies = torch.where(pair_mask, energies, torch.zeros_like(energies))
    return energies, dbar, pair_mask


def _loss_from_summaries(summaries: AtomSummaries, *settings) -> AtomLossOutput:
    """L_A over the unordered pairs of distinct valid samples of one batch (D4), for validated `settings`
    (softening, step, token_reduction, norm_ord)."""
    batch = summaries.mu.shape[0]
    same_sample = torch.eye(batch, dtype=torch.bool, device=summaries.mu.device)
    energies, dbar, pair_mask = _masked_pair_energies(summaries, summaries, same_sample, *settings)
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
    check_inputs(q, p, mask, check_values)
    check_position_range(p, mask, check_values)
    summaries = atom_summaries(q, p, mask, norm_ord=norm_ord)
    return _loss_from_summaries(summaries, softening, step, token_reduction, norm_ord).loss


class AtomLoss(nn.Module):
    """Module form of `atom_loss` that also returns the parts for logging. Its settings are validated once, here.

    Args:
        softening, step, token_reduction, norm_ord: as in `atom_loss`.
        check_values (`bool`, defaults to `False`): check input values on every device, as in `atom_loss`.

    The charge term (D3d) is not part of L_A: `AtomObjective` adds it (`hf_atom.charge.charge_target_penalty`).

    Example:

    ```python
    >>> loss_fn = AtomLoss(softening=0.1)  # or AtomLoss.from_config(hf_atom.AtomConfig(...))
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
        check_values: bool = False,
    ):
        super().__init__()
        validate_loss_settings(softening, step, token_reduction, norm_ord)
        self.softening = float(softening)
        self.step = step
        self.token_reduction = token_reduction
        self.norm_ord = float(norm_ord)
        self.check_values = check_values

    @classmethod
    def from_config(cls, config: AtomConfig, check_values: bool = False) -> AtomLoss:
        """The loss with the "loss" settings of an `AtomConfig` (softening, step, token reduction, norm)."""
        return cls(config.softening, config.step, config.token_reduction, config.norm_ord, check_values)

    @property
    def settings(self) -> tuple[float, str, str, float]:
        return (self.softening, self.step, self.token_reduction, self.norm_ord)

    def extra_repr(self) -> str:
        return (
            f"softening={self.softening}, step={self.step!r}, token_reduction={self.token_reduction!r}, "
            f"norm_ord={self.norm_ord}"
        )

    def summaries(self, q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor | None = None) -> AtomSummaries:
        """Per-sample summaries (validated inputs); what a distributed run gathers across processes."""
        check_inputs(q, p, mask, self.check_values)
        return atom_summaries(q, p, mask, norm_ord=self.norm_ord)

    def pair_energies(
        self, rows: AtomSummaries, cols: AtomSummaries, same_sample: torch.Tensor, gram: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pair energies between row and column samples with this loss's settings, 0 for excluded pairs (a sample
        with itself: `same_sample`, or with an invalid sample). Returns energies, distances dbar and the pair mask
        `(R, C)`. `gram=True` forms L2 distances with one matmul instead of an (R, C, D) difference (for many
        columns, e.g. a cross-batch memory); other norms ignore it."""
        return _masked_pair_energies(rows, cols, same_sample, *self.settings, gram=gram)

    def loss_from_summaries(self, summaries: AtomSummaries) -> AtomLossOutput:
        return _loss_from_summaries(summaries, *self.settings)

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_parts: bool = False,
    ) -> torch.Tensor | AtomLossOutput:
        check_position_range(p, mask, self.check_values)
        output = self.loss_from_summaries(self.summaries(q, p, mask))
        return output if return_parts else output.loss
