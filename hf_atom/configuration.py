# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`AtomConfig`: every atom-modeling setting in one validated dataclass (no transformers import)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

from .loss import AtomLoss, validate_loss_settings

POSITION_NORMS = ("sphere", "layernorm", "none")
CHARGE_CONSTRAINTS = ("target_abs", "none")

__all__ = ["AtomConfig", "POSITION_NORMS", "CHARGE_CONSTRAINTS"]


@dataclass
class AtomConfig:
    """Configuration of the atom heads and the atomic loss.

    Defaults marked "ours" are this project's decisions (ATOM_SPEC D1-D6), not the paper's.

    Args:
        weight (`float`, defaults to 0.1):
            lambda in `loss = task_loss + lambda * L_A` (D6). 0 trains the plain model (the baseline).
        input_dim (`int`, *optional*):
            h, the width of the token features the heads read. Resolved from the model's config when the heads
            are attached (and then stored); set it for models whose width cannot be read from the config.
        position_dim (`int`, *optional*):
            D, the width of the positions p (Eq. 12). Defaults to h, as in the paper (P: R^h -> R^h).
        softening (`float`, defaults to 0.1):
            Plummer length eps of s(d) = sqrt(d^2 + eps^2) (D3a, ours). Must be > 0.
        step (`str`, defaults to `"opposite"`):
            `"opposite"`: step(-q_i q_j) (D1, ours, gives the paper's Figure 2); `"literal"`: step(q_i q_j) (ablation).
        token_reduction (`str`, defaults to `"mean"`):
            `"mean"` divides each pair's double sum by N_A * N_B (D3c, ours); `"sum"` is the paper's plain sum.
        norm_ord (`float`, defaults to 2.0):
            order of the norm in Eq. 7 and 10 (>= 1, or `float("inf")`).
        position_norm (`str`, defaults to `"sphere"`):
            normalisation of p (D3b, ours) so that P cannot lower the energy by shrinking space: `"sphere"`
            (unit L2 norm per token), `"layernorm"` (parameter-free LayerNorm), or `"none"`.
        charge_constraint (`str`, defaults to `"target_abs"`):
            anti-collapse term on the charges (D3d, ours): `"target_abs"` adds
            `charge_weight * (mean |q| - charge_target)^2`; `"none"` leaves the charges free (they collapse to 0).
        charge_target (`float`, defaults to 0.5): kappa, the target mean |q| over a sample's valid tokens.
        charge_weight (`float`, defaults to 1.0): weight of the charge term, relative to L_A (inside lambda).
        hidden_layer (`int`, defaults to -1):
            which entry of the model's `hidden_states` feeds the heads (-1: the last one; see the token table).
        exclude_special_tokens (`bool`, defaults to `False`):
            text models: leave [CLS]/[SEP]/BOS/EOS-like tokens out of the atoms (needs `special_tokens_mask`).
        include_cls_token (`bool`, defaults to `False`):
            ViT-like models: count the class (and register) tokens as atom tokens, not only the patches.
    """

    weight: float = 0.1
    input_dim: Optional[int] = None
    position_dim: Optional[int] = None
    softening: float = 0.1
    step: str = "opposite"
    token_reduction: str = "mean"
    norm_ord: float = 2.0
    position_norm: str = "sphere"
    charge_constraint: str = "target_abs"
    charge_target: float = 0.5
    charge_weight: float = 1.0
    hidden_layer: int = -1
    exclude_special_tokens: bool = False
    include_cls_token: bool = False

    def __post_init__(self):
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight >= 0:
            raise ValueError(
                f"`weight` (lambda) must be a number >= 0, got {self.weight!r}. Use 0 for the baseline, e.g. 0.1 for atom modeling."
            )
        for name in ("input_dim", "position_dim"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(
                    f"`{name}` must be a positive integer or None (the model's hidden size), got {value!r}."
                )
        validate_loss_settings(self.softening, self.step, self.token_reduction, self.norm_ord)
        self.softening = float(self.softening)
        self.norm_ord = float(self.norm_ord)
        self.weight = float(self.weight)
        if self.position_norm not in POSITION_NORMS:
            raise ValueError(f"`position_norm` must be one of {POSITION_NORMS}, got {self.position_norm!r}.")
        if self.charge_constraint not in CHARGE_CONSTRAINTS:
            raise ValueError(
                f"`charge_constraint` must be one of {CHARGE_CONSTRAINTS}, got {self.charge_constraint!r}."
            )
        if not isinstance(self.charge_target, (int, float)) or not 0.0 <= self.charge_target <= 1.0:
            raise ValueError(f"`charge_target` must be in [0, 1] (a mean |q|), got {self.charge_target!r}.")
        if not isinstance(self.charge_weight, (int, float)) or not self.charge_weight >= 0:
            raise ValueError(f"`charge_weight` must be a number >= 0, got {self.charge_weight!r}.")
        if isinstance(self.hidden_layer, bool) or not isinstance(self.hidden_layer, int):
            raise ValueError(
                f"`hidden_layer` must be an integer index into hidden_states (e.g. -1), got {self.hidden_layer!r}."
            )

    # Serialisation: the settings travel on the model's config as a plain dict (`config.atom_config`).
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AtomConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"Unknown AtomConfig field(s) {unknown}; known fields are {sorted(known)}.")
        return cls(**values)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **changes: Any) -> "AtomConfig":
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def uses_charge_constraint(self) -> bool:
        return self.charge_constraint != "none" and self.charge_weight > 0

    def loss_module(self, with_charge_penalty: bool = True) -> AtomLoss:
        """An `AtomLoss` with these loss settings (and the charge target, if the constraint is on)."""
        charge_target = self.charge_target if with_charge_penalty and self.uses_charge_constraint else None
        return AtomLoss(self.softening, self.step, self.token_reduction, self.norm_ord, charge_target)
