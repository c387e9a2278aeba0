# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Atom heads A (Eq. 4, 6, 12): token importances q and positions p from hidden states, and their registry.

Every consumer (the model mixin, `with_atom`, the checkpoint check, `AtomRegularizer`) builds a head through
`build_atom_head(config, hidden_size)`, which looks up `config.head_type` in one registry. A new head type is one
`BaseAtomHead` subclass and one `register_atom_head(name)` (peft's `register_peft_method` pattern):

```python
>>> @hf_atom.register_atom_head("mlp")
... class MlpAtomHead(hf_atom.BaseAtomHead):
...     @classmethod
...     def from_config(cls, config, hidden_size): ...
...     def reset_parameters(self): ...
...     def forward(self, hidden_states): ...  # -> (q, p)
>>> hf_atom.AtomConfig(head_type="mlp")
```
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._kernels import sphere_normalize
from .configuration import POSITION_NORMS

if TYPE_CHECKING:
    from .configuration import AtomConfig

__all__ = ["ATOM_HEAD_TYPES", "AtomHead", "BaseAtomHead", "build_atom_head", "register_atom_head"]

# head_type -> class. Read by `AtomConfig` to validate `head_type` and by `build_atom_head` to build it.
ATOM_HEAD_TYPES: dict[str, type[BaseAtomHead]] = {}


def register_atom_head(name: str):
    """Class decorator: makes a `BaseAtomHead` subclass selectable as `AtomConfig(head_type=name)`."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"A head type name must be an identifier such as 'linear', got {name!r}.")

    def register(head_class: type[BaseAtomHead]) -> type[BaseAtomHead]:
        if not (isinstance(head_class, type) and issubclass(head_class, BaseAtomHead)):
            raise TypeError(f"register_atom_head({name!r}) takes a BaseAtomHead subclass, got {head_class!r}.")
        if ATOM_HEAD_TYPES.get(name, head_class) is not head_class:
            raise ValueError(f"Head type {name!r} is already registered to {ATOM_HEAD_TYPES[name].__qualname__}.")
        ATOM_HEAD_TYPES[name] = head_class
        head_class.head_type = name
        return head_class

    return register


def build_atom_head(config: AtomConfig, hidden_size: int) -> BaseAtomHead:
    """The head `config.head_type` for tokens of width `hidden_size`, freshly initialised."""
    return ATOM_HEAD_TYPES[config.head_type].from_config(config, hidden_size)


class BaseAtomHead(nn.Module):
    """What every atom head provides. Subclasses implement the four methods below and are registered with
    `register_atom_head`; `head_type` is set by the registration."""

    head_type: str

    @classmethod
    def from_config(cls, config: AtomConfig, hidden_size: int) -> BaseAtomHead:
        """Builds the head from the "head" settings of an `AtomConfig` (`AtomConfig.field_names("head")`)."""
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """h, the width of the token features the head reads."""
        raise NotImplementedError

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Fresh random weights; a model's `_init_weights` calls it instead of the base model's initialisation."""
        raise NotImplementedError

    @classmethod
    def settings_from_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
        """The settings that saved weights of these shapes (keys as in `state_dict()`) were built with, for error
        messages; empty where the shapes do not say."""
        return {}

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(q, p)` of shapes `(..., N)` with q in [-1, 1], and `(..., N, D)`, for hidden states `(..., N, h)`."""
        raise NotImplementedError


@register_atom_head("linear")
class AtomHead(BaseAtomHead):
    """The paper's head: charges q = 2 sigma(Q(e)) - 1 in [-1, 1] (Eq. 6) and positions p = P(e) (Eq. 12) from token
    embeddings e (..., h), Q and P linear, p optionally normalised (D3b, ours).

    Args:
        hidden_size (`int`): h, the width of the hidden states.
        position_dim (`int`): D, the width of the positions.
        position_norm (`str`, defaults to `"sphere"`): `"sphere"`, `"layernorm"` (parameter-free) or `"none"`.
    """

    def __init__(self, hidden_size: int, position_dim: int, position_norm: str = "sphere"):
        super().__init__()
        if hidden_size < 1 or position_dim < 1:
            raise ValueError(f"`hidden_size` and `position_dim` must be >= 1, got {hidden_size} and {position_dim}.")
        if position_norm not in POSITION_NORMS:
            raise ValueError(f"`position_norm` must be one of {POSITION_NORMS}, got {position_norm!r}.")
        self.importance = nn.Linear(hidden_size, 1)  # Q
        self.position = nn.Linear(hidden_size, position_dim)  # P
        self.position_norm = position_norm
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: AtomConfig, hidden_size: int) -> AtomHead:
        return cls(hidden_size, config.position_dim or hidden_size, config.position_norm)

    @property
    def input_dim(self) -> int:
        return self.importance.in_features

    @classmethod
    def settings_from_shapes(cls, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
        position = shapes.get("position.weight")
        return (
            {} if position is None or len(position) != 2 else {"input_dim": position[1], "position_dim": position[0]}
        )

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random init with torch.nn.init (works on the meta device path of transformers 5).

        Q must never start at zero: q == 0 is a stationary point of L_A (docs/DESIGN.md, D3e). std = 1/sqrt(h) gives
        Q(e) a spread of about 1 on unit-scale hidden states, so q starts spread over (-1, 1) around 0.
        """
        hidden_size = self.importance.in_features
        nn.init.normal_(self.importance.weight, mean=0.0, std=1.0 / math.sqrt(hidden_size))
        nn.init.zeros_(self.importance.bias)
        nn.init.normal_(self.position.weight, mean=0.0, std=1.0 / math.sqrt(hidden_size))
        nn.init.zeros_(self.position.bias)

    def extra_repr(self) -> str:
        return f"position_norm={self.position_norm!r}"

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden_states = hidden_states.to(self.importance.weight.dtype)
        q = 2.0 * torch.sigmoid(self.importance(hidden_states).squeeze(-1)) - 1.0  # Eq. 6
        p = self.position(hidden_states)  # Eq. 12
        if self.position_norm == "sphere":
            p = sphere_normalize(p, eps=1e-6)  # = nn.functional.normalize, with a fused backward (issue 19)
        elif self.position_norm == "layernorm":
            p = nn.functional.layer_norm(p, p.shape[-1:], eps=1e-5)
        return q, p
