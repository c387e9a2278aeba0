# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`AtomTrainingArguments`: `TrainingArguments` plus the atom settings, parsed by `HfArgumentParser`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from transformers import TrainingArguments

from .configuration import CHARGE_CONSTRAINTS, POSITION_NORMS, AtomConfig
from .loss import STEP_MODES, TOKEN_REDUCTIONS

__all__ = ["AtomTrainingArguments"]

# AtomTrainingArguments field -> AtomConfig field
LOSS_FIELDS = {
    "atom_weight": "weight",
    "atom_softening": "softening",
    "atom_step": "step",
    "atom_token_reduction": "token_reduction",
    "atom_norm_ord": "norm_ord",
    "atom_charge_constraint": "charge_constraint",
    "atom_charge_target": "charge_target",
    "atom_charge_weight": "charge_weight",
}
HEAD_FIELDS = {
    "atom_position_dim": "position_dim",
    "atom_position_norm": "position_norm",
    "atom_hidden_layer": "hidden_layer",
    "atom_exclude_special_tokens": "exclude_special_tokens",
    "atom_include_cls_token": "include_cls_token",
}


@dataclass
class AtomTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the atom-modeling settings (`--atom_*` on the command line, or JSON / YAML keys).

    The loss settings always apply. The head settings (`atom_position_dim`, `atom_position_norm`,
    `atom_hidden_layer`, `atom_exclude_special_tokens`, `atom_include_cls_token`) shape the heads that
    `AtomTrainer` attaches to a plain model; left unset (None), an atom model keeps its own.
    """

    atom_weight: float = field(
        default=0.1,
        metadata={"help": "lambda in loss = task_loss + lambda * L_A. 0 trains the plain model (baseline)."},
    )
    atom_weight_warmup_steps: int = field(
        default=0, metadata={"help": "Linearly raise lambda from 0 to atom_weight over this many optimizer steps."}
    )
    atom_softening: float = field(
        default=0.1, metadata={"help": "Plummer softening eps > 0 in s(d) = sqrt(d^2 + eps^2) (ours, D3a)."}
    )
    atom_step: str = field(
        default="opposite",
        metadata={
            "help": "Eq. 8 step: 'opposite' = step(-q_i q_j) (ours, D1, default) or 'literal' (ablation).",
            "choices": list(STEP_MODES),
        },
    )
    atom_token_reduction: str = field(
        default="mean",
        metadata={
            "help": "'mean' divides each pair's double sum by N_A*N_B (ours, D3c); 'sum' is the paper's sum.",
            "choices": list(TOKEN_REDUCTIONS),
        },
    )
    atom_norm_ord: float = field(default=2.0, metadata={"help": "Order of the norm in Eq. 7 and 10 (>= 1, or inf)."})
    atom_charge_constraint: str = field(
        default="target_abs",
        metadata={
            "help": "Anti-collapse term on the charges (ours, D3d): 'target_abs' or 'none'.",
            "choices": list(CHARGE_CONSTRAINTS),
        },
    )
    atom_charge_target: float = field(default=0.5, metadata={"help": "Target mean |q| per sample for 'target_abs'."})
    atom_charge_weight: float = field(default=1.0, metadata={"help": "Weight of the charge term, inside lambda."})
    atom_position_dim: Optional[int] = field(
        default=None, metadata={"help": "Width D of the positions p. Default: the model's hidden size."}
    )
    atom_position_norm: Optional[str] = field(
        default=None,
        metadata={"help": "Position normalisation (ours, D3b). Default: 'sphere'.", "choices": list(POSITION_NORMS)},
    )
    atom_hidden_layer: Optional[int] = field(
        default=None, metadata={"help": "Index into hidden_states that feeds the heads. Default: -1 (last)."}
    )
    atom_exclude_special_tokens: Optional[bool] = field(
        default=None, metadata={"help": "Text: leave special tokens out (needs special_tokens_mask). Default: False."}
    )
    atom_include_cls_token: Optional[bool] = field(
        default=None, metadata={"help": "ViT-like: count class/register tokens as atom tokens. Default: False."}
    )
    atom_gather_across_processes: bool = field(
        default=False,
        metadata={
            "help": "Form pairs across all data-parallel processes (autograd-aware gather of per-sample "
            "summaries) instead of within each process's micro-batch."
        },
    )
    atom_stats_threshold: float = field(
        default=0.5, metadata={"help": "Logging: |q| above this counts a token as positive/negative, else neutral."}
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.atom_norm_ord, str):
            self.atom_norm_ord = float(self.atom_norm_ord)
        if self.atom_weight_warmup_steps < 0:
            raise ValueError(f"--atom_weight_warmup_steps must be >= 0, got {self.atom_weight_warmup_steps}.")
        if not 0.0 <= self.atom_stats_threshold < 1.0:
            raise ValueError(f"--atom_stats_threshold must be in [0, 1), got {self.atom_stats_threshold}.")
        try:
            self.atom_config  # noqa: B018 - validates every atom setting now, at argument parsing
        except ValueError as error:
            message = str(error)
            for arg, name in {**LOSS_FIELDS, **HEAD_FIELDS}.items():
                message = message.replace(f"`{name}`", f"`--{arg}`")
            raise ValueError(message) from None

    @property
    def atom_head_overrides(self) -> dict:
        """The head settings given explicitly (AtomConfig field names)."""
        return {name: getattr(self, arg) for arg, name in HEAD_FIELDS.items() if getattr(self, arg) is not None}

    @property
    def atom_config(self) -> AtomConfig:
        """The `AtomConfig` these arguments describe (unset head settings take AtomConfig's defaults)."""
        values = {name: getattr(self, arg) for arg, name in LOSS_FIELDS.items()}
        return AtomConfig(**values, **self.atom_head_overrides)

    def atom_weight_at(self, step: int) -> float:
        """lambda at an optimizer step, after the optional linear warm-up."""
        if self.atom_weight_warmup_steps <= 0:
            return self.atom_weight
        return self.atom_weight * min(1.0, step / self.atom_weight_warmup_steps)
