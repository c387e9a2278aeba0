# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`AtomConfig`: the one definition of every atom-modeling setting (no transformers import).

Each field carries its type (choices as `Literal`), default and help. Everything else reads this dataclass: the
`--atom_*` flags of `AtomTrainingArguments` are generated from it (`hf_atom.training_args`), the heads, the loss,
the regularizer and the trainer take an `AtomConfig`, and checkpoints store it as `config.atom_config`. Validation
happens once, here. Defaults marked "ours" are this project's decisions, not the paper's (docs/DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepMode = Literal["opposite", "literal"]
TokenReduction = Literal["mean", "sum"]
PositionNorm = Literal["sphere", "layernorm", "none"]
ChargeConstraint = Literal["target_abs", "none"]

STEP_MODES: tuple[str, ...] = typing.get_args(StepMode)
TOKEN_REDUCTIONS: tuple[str, ...] = typing.get_args(TokenReduction)
POSITION_NORMS: tuple[str, ...] = typing.get_args(PositionNorm)
CHARGE_CONSTRAINTS: tuple[str, ...] = typing.get_args(ChargeConstraint)

# Field groups (metadata "group"): "loss" settings always apply; "head" settings shape the heads when they are
# built (an existing atom model keeps its own); "training" settings are read by the trainer only.
LOSS, HEAD, TRAINING = "loss", "head", "training"

# Largest cross-batch memory without `allow_large_memory`: 65536 samples of D = 4096 floats are 1 GiB (ours).
MAX_MEMORY_SIZE = 65536

__all__ = [
    "CHARGE_CONSTRAINTS",
    "MAX_MEMORY_SIZE",
    "POSITION_NORMS",
    "STEP_MODES",
    "TOKEN_REDUCTIONS",
    "AtomConfig",
    "AtomConfigError",
]


class AtomConfigError(ValueError):
    """An invalid atom setting. `field` names the `AtomConfig` field; the message names it as the caller spells it
    (e.g. `--atom_weight` on the command line)."""

    def __init__(self, field_name: str, problem: str, spelling: str = "`{}`"):
        self.field = field_name
        self.problem = problem
        super().__init__(spelling.format(field_name) + " " + problem)

    def respelled(self, spelling: str) -> AtomConfigError:
        return AtomConfigError(self.field, self.problem, spelling)


def _setting(default: Any, group: str, help: str, **checks: Any) -> Any:
    return field(default=default, metadata={"group": group, "help": help, **checks})


@dataclass
class AtomConfig:
    """Configuration of atom modeling: the heads, the atomic loss, the charge constraint and the trainer's use of
    them. Every `--atom_<field>` flag of `AtomTrainingArguments` is generated from a field here.

    Args:
        weight (`float`, defaults to 0.1): lambda in `loss = task_loss + lambda * (L_A + charge term)` (D6).
        input_dim (`int`, *optional*): h, the width of the token features (resolved from the model when attached).
        position_dim (`int`, *optional*): D, the width of the positions p (Eq. 12); defaults to h.
        softening (`float`, defaults to 0.1): Plummer length eps of s(d) = sqrt(d^2 + eps^2) (D3a, ours).
        step (`str`, defaults to `"opposite"`): step(-q_i q_j) (D1, ours) or `"literal"` step(q_i q_j) (ablation).
        token_reduction (`str`, defaults to `"mean"`): divide a pair's double sum by N_A N_B (D3c, ours) or `"sum"`.
        norm_ord (`float`, defaults to 2.0): order of the norm in Eq. 7 and 10 (>= 1, or inf).
        position_norm (`str`, defaults to `"sphere"`): normalisation of p (D3b, ours).
        head_type (`str`, defaults to `"linear"`): the registered head class (`hf_atom.ATOM_HEAD_TYPES`); "linear"
            is the paper's linear Q and P.
        charge_constraint (`str`, defaults to `"target_abs"`): anti-collapse term on the charges (D3d, ours).
        charge_target (`float`, defaults to 0.5): kappa, the target mean |q| per sample.
        charge_weight (`float`, defaults to 1.0): weight of the charge term, inside lambda.
        hidden_layer (`int`, defaults to -1): which entry of `hidden_states` feeds the heads.
        exclude_special_tokens (`bool`, defaults to `False`): text: leave special tokens out of the atoms.
        include_cls_token (`bool`, defaults to `False`): ViT-like: count class/register tokens as atom tokens.
        weight_warmup_steps (`int`, defaults to 0): trainer: raise lambda linearly from 0 over this many steps.
        gather_across_processes (`bool`, defaults to `False`): trainer: form pairs across data-parallel processes.
        memory_size (`int`, defaults to 0): M, the cross-batch memory of sample summaries (D9); 0 = off.
        memory_warmup_steps (`int`, defaults to 0): memory pairs start at this optimizer step.
        allow_large_memory (`bool`, defaults to `False`): allow `memory_size` above `MAX_MEMORY_SIZE`.
        stats_threshold (`float`, defaults to 0.5): logging: |q| above this counts a token as positive/negative.
    """

    weight: float = _setting(
        0.1, LOSS, "lambda in loss = task_loss + lambda * (L_A + charge term) (D6). 0 trains the plain model.", min=0.0
    )
    input_dim: int | None = _setting(
        None, HEAD, "Width h of the token features the heads read. Default: read from the model's config.", min=1
    )
    position_dim: int | None = _setting(
        None, HEAD, "Width D of the positions p (Eq. 12). Default: h, as in the paper.", min=1
    )
    softening: float = _setting(
        0.1, LOSS, "Plummer softening eps > 0 in s(d) = sqrt(d^2 + eps^2) (ours, D3a).", min=0.0, open_min=True
    )
    step: StepMode = _setting(
        "opposite", LOSS, "Eq. 8 step: 'opposite' = step(-q_i q_j) (ours, D1) or 'literal' = step(q_i q_j) (ablation)."
    )
    token_reduction: TokenReduction = _setting(
        "mean", LOSS, "'mean' divides each pair's double sum by N_A*N_B (ours, D3c); 'sum' is the paper's sum."
    )
    norm_ord: float = _setting(2.0, LOSS, "Order of the norm in Eq. 7 and 10: >= 1, or inf.", min=1.0, allow_inf=True)
    position_norm: PositionNorm = _setting(
        "sphere", HEAD, "Normalisation of the positions so P cannot shrink space (ours, D3b)."
    )
    head_type: str = _setting(
        "linear",
        HEAD,
        "Which registered atom head reads the tokens (hf_atom.ATOM_HEAD_TYPES); 'linear' is the paper's Q and P.",
        registry=True,
    )
    charge_constraint: ChargeConstraint = _setting(
        "target_abs", LOSS, "Anti-collapse term on the charges (ours, D3d): 'target_abs' or 'none'."
    )
    charge_target: float = _setting(
        0.5, LOSS, "Target mean |q| per sample for 'target_abs' (kappa, in [0, 1]).", min=0.0, max=1.0
    )
    charge_weight: float = _setting(1.0, LOSS, "Weight of the charge term, inside lambda.", min=0.0)
    hidden_layer: int = _setting(-1, HEAD, "Index into the model's hidden_states that feeds the heads (-1: last).")
    exclude_special_tokens: bool = _setting(
        False, HEAD, "Text: leave special tokens out of the atoms (needs special_tokens_mask)."
    )
    include_cls_token: bool = _setting(False, HEAD, "ViT-like: count class/register tokens as atom tokens.")
    weight_warmup_steps: int = _setting(
        0, TRAINING, "Linearly raise lambda from 0 to weight over this many optimizer steps.", min=0
    )
    gather_across_processes: bool = _setting(
        False,
        TRAINING,
        "Form pairs across all data-parallel processes (autograd-aware gather of per-sample summaries) instead of "
        "within each process's micro-batch.",
    )
    memory_size: int = _setting(
        0,
        LOSS,
        "Cross-batch memory (D9, ours): pair each batch also with the summaries of the last M samples of earlier "
        f"micro-batches (detached). 0 = off. Above {MAX_MEMORY_SIZE} needs allow_large_memory.",
        min=0,
    )
    memory_warmup_steps: int = _setting(
        0, LOSS, "Memory pairs start at this optimizer step (the queue fills before); XBM's warm-up.", min=0
    )
    allow_large_memory: bool = _setting(
        False, LOSS, f"Allow memory_size above {MAX_MEMORY_SIZE} (O(M*D) memory, O(B*M*D) time per step)."
    )
    stats_threshold: float = _setting(
        0.5,
        TRAINING,
        "Logging: |q| above this counts a token as positive/negative, else neutral.",
        min=0.0,
        max=1.0,
        open_max=True,
    )

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, _checked(spec, getattr(self, spec.name)))
        if self.memory_size > MAX_MEMORY_SIZE and not self.allow_large_memory:
            raise AtomConfigError(
                "memory_size",
                f"is {self.memory_size}, above the limit of {MAX_MEMORY_SIZE} samples (the queue costs O(M*D) memory "
                "and O(B*M*D) time per step). Lower it, or set allow_large_memory to true to use it anyway.",
            )

    # -- serialisation: the settings travel on the model's config as a plain dict (`config.atom_config`) ----------

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> AtomConfig:
        """Builds a validated config from a dict (e.g. `config.atom_config` of a checkpoint)."""
        if not isinstance(values, Mapping):
            raise AtomConfigError(
                "atom_config",
                f"must be a JSON object (dict) of AtomConfig fields, got {type(values).__name__} {values!r}. Fix or "
                "remove `atom_config` in the checkpoint's config.json.",
            )
        known = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(str(name) for name in set(values) - known)
        if unknown:
            raise ValueError(f"Unknown AtomConfig field(s) {unknown}; known fields are {sorted(known)}.")
        return cls(**values)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> AtomConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def field_names(cls, group: str) -> tuple[str, ...]:
        """The names of the fields of one group: `"loss"`, `"head"` or `"training"`."""
        return tuple(spec.name for spec in dataclasses.fields(cls) if spec.metadata["group"] == group)

    @property
    def uses_charge_constraint(self) -> bool:
        return self.charge_constraint != "none" and self.charge_weight > 0

    def weight_at(self, step: int) -> float:
        """lambda at an optimizer step, after the optional linear warm-up."""
        if self.weight_warmup_steps <= 0:
            return self.weight
        return self.weight * min(1.0, step / self.weight_warmup_steps)


@functools.cache
def _type_hints() -> dict[str, Any]:
    return typing.get_type_hints(AtomConfig)  # evaluated once: the annotations are strings (PEP 563)


def _resolved_type(spec: dataclasses.Field) -> Any:
    kind = _type_hints()[spec.name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
        kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
    return kind


def _registered_head_type(name: str, value: Any) -> str:
    from .heads import ATOM_HEAD_TYPES  # imported here: the heads import this module; the registry fills on import

    if not isinstance(value, str) or value not in ATOM_HEAD_TYPES:
        raise AtomConfigError(
            name,
            f"must be a registered head type, one of {tuple(ATOM_HEAD_TYPES)}, got {value!r}. Register a new one with "
            "`hf_atom.register_atom_head`.",
        )
    return value


def _checked(spec: dataclasses.Field, value: Any) -> Any:
    """Validates one field's value against its type and range; returns it normalised (ints to float, ...)."""
    kind = _resolved_type(spec)
    meta = spec.metadata
    if value is None:
        if spec.default is None:
            return None
        raise AtomConfigError(spec.name, f"must be set, got None (default: {spec.default!r}).")
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise AtomConfigError(spec.name, f"must be one of {choices}, got {value!r}.")
        return value
    if meta.get("registry"):
        return _registered_head_type(spec.name, value)
    if kind is bool:
        if not isinstance(value, bool):
            raise AtomConfigError(spec.name, f"must be true or false, got {type(value).__name__} {value!r}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise AtomConfigError(spec.name, f"must be an integer, got {type(value).__name__} {value!r}.")
    elif kind is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise AtomConfigError(spec.name, f"must be a number, got the string {value!r}.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AtomConfigError(spec.name, f"must be a number, got {type(value).__name__} {value!r}.")
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not (meta.get("allow_inf") and value > 0)):
            allowed = " (or inf)" if meta.get("allow_inf") else ""
            raise AtomConfigError(spec.name, f"must be a finite number{allowed}, got {value!r}.")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and (value < low or (meta.get("open_min") and value == low)):
        bound = ">" if meta.get("open_min") else ">="
        raise AtomConfigError(spec.name, f"must be {bound} {low}, got {value!r}.")
    if high is not None and (value > high or (meta.get("open_max") and value == high)):
        bound = "<" if meta.get("open_max") else "<="
        raise AtomConfigError(spec.name, f"must be {bound} {high}, got {value!r}.")
    return value
