# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""One path from token features to the atom objective, for any torch module (docs/DESIGN.md, D6 and D7).

- `AtomObjective` turns charges q, positions p and a token mask into the objective to add to a task loss,
  `weight * (L_A + charge_weight * charge_penalty)`, with the loss parts and the logged statistics. It has no
  parameters. `AtomTrainer` uses it on the `atom_q` / `atom_p` / `atom_mask` outputs of an atom model.
- `AtomRegularizer` is an atom head (`config.head_type`: Q and P) followed by an `AtomObjective`: the entry point for models that are
  not transformers models, e.g. a GAN generator in a hand-written training loop.

Example:

```python
>>> reg = hf_atom.AtomRegularizer(hidden_size=100, config=hf_atom.AtomConfig(weight=0.1))
>>> optimizer = torch.optim.Adam([*generator.parameters(), *reg.parameters()])
>>> features = generator.hidden(z)                             # (B, 400)
>>> out = reg(hf_atom.mlp_tokens(features, num_tokens=4))      # 4 tokens of 100 features per sample
>>> (generator_loss + out.objective).backward()
>>> out.metrics()                                              # {'atom_loss': ..., 'atom_pairs': ..., ...}
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._kernels import FusedAtomObjective, compute_dtype
from .charge import charge_target_penalty
from .configuration import AtomConfig
from .distributed import cross_process_atom_loss, is_distributed
from .heads import BaseAtomHead, build_atom_head
from .loss import AtomLoss, AtomLossOutput, AtomSummaries, atom_summaries
from .loss_contract import _under_vmap, check_inputs
from .memory import AtomMemory, held_memory_atom_loss, memory_atom_loss

__all__ = ["ATOM_STATISTICS", "AtomObjective", "AtomRegularizer", "AtomRegularizerOutput"]

# The one list of logged atom statistics, name -> meaning, in logging order. Every consumer (the trainers' logs, the
# GAN loops, the docs' tables) reads it; `AtomRegularizerOutput.statistics` computes each one by name.
ATOM_STATISTICS: dict[str, str] = {
    "atom_loss": "L_A, the atomic loss of Eq. 5 (mean pair energy)",
    "atom_charge_penalty": "the anti-collapse charge term (D3d); 0 when it is off",
    "atom_pairs": "unordered pairs of valid samples in the batch",
    "atom_memory_pairs": "pairs of a batch sample with a cross-batch memory sample (D9); 0 without memory",
    "atom_mean_abs_q": "mean |q| over valid tokens",
    "atom_q_positive": "share of valid tokens with q above `stats_threshold`",
    "atom_q_negative": "share of valid tokens with q below minus `stats_threshold`",
    "atom_q_neutral": "share of valid tokens with |q| at most `stats_threshold`",
    "atom_mean_distance": "mean distance dbar over the pairs (Eq. 3)",
    "atom_mean_radius": "mean radius r over the valid samples (Eq. 4)",
}


@dataclass
class AtomRegularizerOutput:
    """What `AtomObjective` / `AtomRegularizer` return.

    Args:
        objective (`torch.Tensor`, scalar): `weight * (loss + charge_weight * charge_penalty)`, to add to the task
            loss (float32, or float64 for float64 inputs).
        loss (`torch.Tensor`, scalar): L_A, the atomic loss of Eq. 5 (the mean pair energy).
        charge_penalty (`torch.Tensor`, scalar): the anti-collapse term (D3d); 0 when the constraint is off.
        weight (`float`): lambda as applied.
        parts (`AtomLossOutput`): pair energies, distances, per-sample summaries and the number of pairs.
        q (`torch.Tensor` of shape `(batch, tokens)`), p (`(batch, tokens, dim)`), mask (`(batch, tokens)`, bool).
        stats_threshold (`float`): |q| above it counts a token as positive / negative in the statistics.
        memory_pairs (`torch.Tensor`, *optional*): pairs with the cross-batch memory (D9); None without memory.
    """

    objective: torch.Tensor
    loss: torch.Tensor
    charge_penalty: torch.Tensor
    weight: float
    parts: AtomLossOutput
    q: torch.Tensor
    p: torch.Tensor
    mask: torch.Tensor
    stats_threshold: float = 0.5
    memory_pairs: torch.Tensor | None = None

    @torch.no_grad()
    def statistics(self) -> dict[str, torch.Tensor]:
        """The logged statistics as detached scalar tensors (no host synchronisation), keyed as `ATOM_STATISTICS`.

        `atom_pairs` is the number of unordered pairs of this batch; shares are over valid tokens; the mean distance
        is over the pairs, the mean radius over the valid samples.
        """
        q, mask, parts = self.q.detach().float(), self.mask, self.parts
        valid_tokens = mask.sum().clamp(min=1)
        positive = ((q > self.stats_threshold) & mask).sum() / valid_tokens
        negative = ((q < -self.stats_threshold) & mask).sum() / valid_tokens
        pair_mask, valid = parts.pair_mask, parts.summaries.valid
        stats = {
            "atom_loss": self.loss.detach().float(),
            "atom_charge_penalty": self.charge_penalty.detach().float(),
            "atom_pairs": parts.num_pairs.float(),
            "atom_memory_pairs": (
                torch.zeros_like(parts.num_pairs) if self.memory_pairs is None else self.memory_pairs
            ).float(),
            "atom_mean_abs_q": (q.abs() * mask).sum() / valid_tokens,
            "atom_q_positive": positive,
            "atom_q_negative": negative,
            "atom_q_neutral": 1.0 - positive - negative,
            "atom_mean_distance": (parts.pair_distances.detach().float() * pair_mask).sum()
            / pair_mask.sum().clamp(min=1),
            "atom_mean_radius": (parts.summaries.r.detach().float() * valid).sum() / valid.sum().clamp(min=1),
        }
        return {name: stats[name] for name in ATOM_STATISTICS}  # logging order; a missing name fails here

    def for_statistics(self) -> AtomRegularizerOutput:
        """A copy holding only what `statistics()` reads, detached where it has a graph (for statistics computed later,
        at a logging step): views, no kernel launch, no copy of data, no graph kept alive."""
        parts, summaries = self.parts, self.parts.summaries

        def kept(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.detach() if tensor.requires_grad else tensor

        r, q, loss = kept(summaries.r), kept(self.q), kept(self.loss)
        return AtomRegularizerOutput(
            objective=loss,  # not read by statistics(); kept small
            loss=loss,
            charge_penalty=kept(self.charge_penalty),
            weight=self.weight,
            parts=AtomLossOutput(
                loss=loss,
                pair_energies=kept(parts.pair_distances),  # not read by statistics()
                pair_distances=kept(parts.pair_distances),
                summaries=AtomSummaries(
                    mu=r, r=r, s_plus=r, s_minus=r, n_tokens=summaries.n_tokens, valid=summaries.valid
                ),  # only r and valid are read
                pair_mask=parts.pair_mask,
                num_pairs=parts.num_pairs,
            ),
            q=q,
            p=q,  # not read by statistics()
            mask=self.mask,
            stats_threshold=self.stats_threshold,
            memory_pairs=self.memory_pairs,
        )

    def check_finite(self, task_loss: torch.Tensor | None = None, step: int | None = None) -> None:
        """Raises a `FloatingPointError` naming the part (task loss, L_A, charge term) that is NaN or infinite.

        Call it before `backward()` so a non-finite objective never reaches the weights. One host synchronisation.
        """
        parts = [self.loss, self.charge_penalty] if task_loss is None else [task_loss, self.loss, self.charge_penalty]
        values = torch.stack([part.detach().float().to(self.loss.device) for part in parts])
        finite = torch.isfinite(values)
        if bool(finite.all()):
            return
        names = (
            ("atomic loss L_A", "charge term")
            if task_loss is None
            else ("task loss", "atomic loss L_A", "charge term")
        )
        bad = ", ".join(
            f"{name} = {value}" for name, value, ok in zip(names, values.tolist(), finite.tolist()) if not ok
        )
        where = "" if step is None else f" at step {step}"
        raise FloatingPointError(
            f"Non-finite loss{where}: {bad}. It was stopped before reaching the weights. Check the inputs for NaN/inf, "
            "lower the learning rate, or use bf16 instead of fp16; a checkpoint saved earlier can be resumed."
        )

    def metrics(self) -> dict[str, float]:
        """`statistics()` as Python floats, ready for a logger (one host synchronisation)."""
        stats = self.statistics()
        return dict(zip(stats, torch.stack(list(stats.values())).tolist()))


class AtomObjective(nn.Module):
    """The atom objective from charges and positions: `weight * (L_A + charge_weight * charge_penalty)` (D6).

    No parameters. The loss settings (softening, step, token reduction, norm) and the charge constraint come from
    one `AtomConfig`.

    Args:
        config (`AtomConfig`, *optional*): the settings; defaults to `AtomConfig()`.
    """

    def __init__(self, config: AtomConfig | None = None):
        super().__init__()
        self.config = _checked_config(config)
        self.loss_fn = AtomLoss.from_config(self.config)
        # The cross-batch memory (D9): training state, so a submodule (its queue is in state_dict); None when off.
        self.memory: AtomMemory | None = AtomMemory.from_config(self.config)

    def extra_repr(self) -> str:
        config = self.config
        return f"weight={config.weight}, charge_constraint={config.charge_constraint!r}"

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        weight: float | None = None,
        gather_across_processes: bool = False,
        validate: bool = True,
        memory_step: int | None = None,
        use_memory: bool | None = None,
        memory_summaries: AtomSummaries | None = None,
    ) -> AtomRegularizerOutput:
        """Computes the objective for one batch.

        Args:
            q (`torch.Tensor` of shape `(batch, tokens)`): charges in [-1, 1].
            p (`torch.Tensor` of shape `(batch, tokens, dim)`): positions.
            mask (`torch.Tensor` of shape `(batch, tokens)`, *optional*): valid tokens (bool); all valid if None.
            weight (`float`, *optional*): lambda for this call (e.g. after a warm-up); defaults to `config.weight`.
            gather_across_processes (`bool`, defaults to `False`): pair this process's samples with the samples of
                every data-parallel process (autograd-aware all-gather of the per-sample summaries, D4). Ignored
                when torch.distributed is not initialised with more than one process.
            validate (`bool`, defaults to `True`): check the inputs against the loss's contract (`atom_loss`).
                `False` for values that are only logged (e.g. lambda = 0), where a NaN must not stop training.
            memory_step (`int`, *optional*): the optimizer step, for `memory_warmup_steps`; by default the number of
                earlier calls that used the memory.
            use_memory (`bool`, *optional*): pair with the cross-batch memory and push this batch to it (when
                `memory_size` > 0); defaults to `self.training`, so evaluation neither reads nor changes the queue.
            memory_summaries (`AtomSummaries`, *optional*): a memory kept by the caller, held fixed: pair with these
                (detached) summaries too, and push nothing (`hf_atom.memory.held_memory_atom_loss`). It runs under
                `torch.func.vmap`, e.g. one queue per ensemble member; the caller pushes `output.parts.summaries`.
                Only for an objective without its own memory (`memory_size=0`), in one process.
        """
        config = self.config
        if mask is None:
            mask = torch.ones(q.shape, dtype=torch.bool, device=q.device)
        elif mask.is_floating_point() or mask.is_complex():
            raise ValueError(
                f"`mask` must be boolean (or integer 0/1 like an attention_mask), got dtype {mask.dtype}: a fractional "
                "mask has no meaning here. Pass `mask.bool()` or `mask > 0.5`."
            )
        mask = mask.bool()
        gather = gather_across_processes and is_distributed()
        if validate:
            check_inputs(q, p, mask, self.loss_fn.check_values)
        weight = config.weight if weight is None else _checked_weight(weight)
        use_memory = self.memory is not None and (self.training if use_memory is None else use_memory)
        if memory_summaries is not None and (self.memory is not None or gather):
            raise ValueError(
                "`memory_summaries` (a memory kept by the caller) needs an objective without its own memory "
                "(memory_size=0) and without gather_across_processes: build it with config.replace(memory_size=0)."
            )
        if (
            self.loss_fn.norm_ord == 2.0
            and not gather
            and not use_memory
            and memory_summaries is None
            and not _under_vmap(q, p)
        ):
            objective, charge, parts = self._fused(q, p, mask, weight)
            memory_pairs = None
        else:
            objective, charge, parts, memory_pairs = self._op_by_op(
                q, p, mask, weight, gather, use_memory, memory_step, memory_summaries
            )
        return AtomRegularizerOutput(
            objective=objective,
            loss=parts.loss,
            charge_penalty=charge,
            weight=weight,
            parts=parts,
            q=q,
            p=p,
            mask=mask,
            stats_threshold=config.stats_threshold,
            memory_pairs=memory_pairs,
        )

    def _op_by_op(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        mask: torch.Tensor,
        weight: float,
        gather: bool,
        use_memory: bool,
        memory_step: int | None,
        memory_summaries: AtomSummaries | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, AtomLossOutput, torch.Tensor | None]:
        """(objective, charge term, loss parts, memory pairs) from the loss's own functions: any norm, across
        processes, under vmap, with the cross-batch memory (the module's queue, or one held by the caller)."""
        config = self.config
        summaries = atom_summaries(q, p, mask, norm_ord=self.loss_fn.norm_ord)
        memory_pairs = None
        if memory_summaries is not None:
            energy, parts, memory_pairs = held_memory_atom_loss(self.loss_fn, summaries, memory_summaries)
        elif use_memory:
            energy, parts, memory_pairs = memory_atom_loss(
                self.loss_fn, summaries, self.memory, gather_across_processes=gather, step=memory_step
            )
        elif gather:
            energy, parts = cross_process_atom_loss(self.loss_fn, summaries)
        else:
            parts = self.loss_fn.loss_from_summaries(summaries)
            energy = parts.loss
        if config.uses_charge_constraint:
            charge = charge_target_penalty(q, mask, target=config.charge_target)
            energy = energy + config.charge_weight * charge
        else:
            charge = torch.zeros((), dtype=parts.loss.dtype, device=q.device)
        return weight * energy, charge, parts, memory_pairs

    def _fused(
        self, q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, weight: float
    ) -> tuple[torch.Tensor, torch.Tensor, AtomLossOutput]:
        """The same (objective, charge term, loss parts) as `_op_by_op`, from one autograd node
        (`FusedAtomObjective`): a few dozen dispatched ops per forward and backward instead of ~240 (issue 19)."""
        config, loss_fn = self.config, self.loss_fn
        dtype = compute_dtype(q.dtype if q.dtype == torch.float64 else p.dtype)
        charge_weight = config.charge_weight if config.uses_charge_constraint else 0.0
        with torch.autocast(device_type=q.device.type, enabled=False):
            objective, loss, charge, energies, dbar, mu, r, s_plus, s_minus, n_tokens, valid, pair_mask, num_pairs = (
                FusedAtomObjective.apply(
                    q.to(dtype),
                    p.to(dtype),
                    mask,
                    loss_fn.softening,
                    loss_fn.step == "opposite",
                    loss_fn.token_reduction == "mean",
                    weight,
                    float(charge_weight),
                    float(config.charge_target),
                )
            )
        summaries = AtomSummaries(mu=mu, r=r, s_plus=s_plus, s_minus=s_minus, n_tokens=n_tokens, valid=valid)
        parts = AtomLossOutput(
            loss=loss,
            pair_energies=energies,
            pair_distances=dbar,
            summaries=summaries,
            pair_mask=pair_mask,
            num_pairs=num_pairs,
        )
        return objective, charge, parts


def _checked_config(config: AtomConfig | None) -> AtomConfig:
    if config is None:
        return AtomConfig()
    if not isinstance(config, AtomConfig):
        raise ValueError(
            f"`config` must be an hf_atom.AtomConfig, got {type(config).__name__} {config!r}. Build one: "
            "`AtomConfig(weight=0.1)`, or `AtomConfig.from_dict(values)` for a dict."
        )
    return config


def _checked_weight(weight: Any) -> float:
    """lambda for one call: a finite number >= 0, as `AtomConfig.weight` (an error, never a NaN objective)."""
    if isinstance(weight, torch.Tensor) and weight.numel() == 1 and not weight.requires_grad:
        weight = weight.item()
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"`weight` (lambda) must be a finite number >= 0, got {type(weight).__name__} {weight!r}.")
    return float(weight)


class AtomRegularizer(nn.Module):
    """Atom modeling for any torch module: an atom head over token features, then the atom objective (D7).

    Args:
        hidden_size (`int`): h, the width of each token's features.
        config (`AtomConfig`, *optional*): the settings (lambda, loss, charge constraint, position width and
            normalisation); defaults to `AtomConfig()`. `config.input_dim`, if set, must equal `hidden_size`.

    Train its parameters (the heads Q and P) with the module whose features it reads. Call it as
    `reg(tokens, mask=None)` with `tokens` of shape `(batch, tokens, hidden_size)`; see `mlp_tokens` and
    `feature_map_tokens` for turning (B, H) activations or (B, C, H, W) feature maps into tokens.
    """

    def __init__(self, hidden_size: int, config: AtomConfig | None = None):
        super().__init__()
        config = _checked_config(config)
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"`hidden_size` must be a positive integer (the width of a token), got {hidden_size!r}.")
        if config.input_dim is not None and config.input_dim != hidden_size:
            raise ValueError(
                f"`config.input_dim={config.input_dim}` disagrees with `hidden_size={hidden_size}`; leave input_dim "
                "unset or make them equal."
            )
        self.config = config.replace(input_dim=hidden_size)
        self.head: BaseAtomHead = build_atom_head(self.config, hidden_size)
        self.atom_objective = AtomObjective(self.config)

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        weight: float | None = None,
        gather_across_processes: bool = False,
        memory_summaries: AtomSummaries | None = None,
    ) -> AtomRegularizerOutput:
        """Runs the head on `tokens` (batch, tokens, hidden_size) and returns the objective and its parts
        (`memory_summaries`: a memory kept by the caller, see `AtomObjective.forward`)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(
                f"`tokens` must be a (batch, tokens, hidden_size) tensor, got {shape}. Use `hf_atom.mlp_tokens` for "
                "(batch, width) activations or `hf_atom.feature_map_tokens` for (batch, C, H, W) feature maps."
            )
        if tokens.shape[-1] != self.head.input_dim:
            raise ValueError(
                f"`tokens` have {tokens.shape[-1]} features each but this regularizer was built for "
                f"hidden_size={self.head.input_dim}."
            )
        if isinstance(mask, torch.Tensor) and mask.shape == tokens.shape[:2] and not mask.is_floating_point():
            # selected away before the head, so a masked token's NaN reaches neither the objective nor a gradient
            keep = (mask != 0)[..., None]
            tokens = torch.where(keep, tokens, torch.zeros((), dtype=tokens.dtype, device=tokens.device))
        q, p = self.head(tokens)
        return self.atom_objective(
            q,
            p,
            mask,
            weight=weight,
            gather_across_processes=gather_across_processes,
            memory_summaries=memory_summaries,
        )
