# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The atom head A (Eq. 4, 6, 12): token importances q and positions p from hidden states."""

from __future__ import annotations

import math

import torch
from torch import nn

from .configuration import POSITION_NORMS

__all__ = ["AtomHead"]


class AtomHead(nn.Module):
    """Maps token embeddings e (..., h) to charges q = 2 sigma(Q(e)) - 1 in [-1, 1] (Eq. 6) and positions
    p = P(e) (Eq. 12), optionally normalised (D3b, ours).

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
        """Returns `(q, p)` of shapes `(..., N)` and `(..., N, D)` for hidden states `(..., N, h)`."""
        hidden_states = hidden_states.to(self.importance.weight.dtype)
        q = 2.0 * torch.sigmoid(self.importance(hidden_states).squeeze(-1)) - 1.0  # Eq. 6
        p = self.position(hidden_states)  # Eq. 12
        if self.position_norm == "sphere":
            p = nn.functional.normalize(p, dim=-1, eps=1e-6)
        elif self.position_norm == "layernorm":
            p = nn.functional.layer_norm(p, p.shape[-1:], eps=1e-5)
        return q, p
