# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`TokenImportance`: per-token charges q aligned with the input tokens or image patches, ready for plotting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["TokenImportance"]


@dataclass
class TokenImportance:
    """Token importances q (Eq. 6) of a batch, with what is needed to put them back on the input.

    Args:
        q (`torch.Tensor` of shape `(batch, tokens)`): charges in [-1, 1]; +/-1 = makes the sample distinguishable,
            0 = does not (the paper's Table 1).
        mask (`torch.Tensor` of shape `(batch, tokens)`, bool): tokens that are part of the atom.
        grid_shape (`tuple[int, int]`, *optional*): images: (rows, cols) of the patch / feature-map grid formed by
            the last rows*cols tokens.
        cell_size (`tuple[float, float]`, *optional*): images: pixels (height, width) per grid cell.
        num_prefix_tokens (`int`): images: tokens before the grid (class/register tokens).
        input_ids (`torch.Tensor`, *optional*): text: the token ids, aligned with `q`.
        offsets (`torch.Tensor` of shape `(batch, tokens, 2)`, *optional*): text: character spans from the
            tokenizer's `offset_mapping`.
        logits (`torch.Tensor`, *optional*): the model's task logits for the same forward pass.
    """

    q: torch.Tensor
    mask: torch.Tensor
    grid_shape: tuple[int, int] | None = None
    cell_size: tuple[float, float] | None = None
    num_prefix_tokens: int = 0
    input_ids: torch.Tensor | None = None
    offsets: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    @property
    def is_image(self) -> bool:
        return self.grid_shape is not None

    def grid(self) -> torch.Tensor:
        """Images: q on the (batch, rows, cols) grid; cells outside the atom are NaN."""
        if self.grid_shape is None:
            raise ValueError("`grid()` is for image models; this importance has no patch grid (text tokens).")
        rows, cols = self.grid_shape
        values = self.q.float().masked_fill(~self.mask, float("nan"))
        return values[:, self.num_prefix_tokens : self.num_prefix_tokens + rows * cols].reshape(-1, rows, cols)

    def tokens(self, index: int, tokenizer: Any = None, text: str | None = None) -> list[dict[str, Any]]:
        """Text: the valid tokens of sample `index`, in input order, as dicts with `position`, `q`, and where
        available `token_id`, `token` (with a `tokenizer`), `span` and `text` (with the original `text`)."""
        rows = []
        for position in torch.nonzero(self.mask[index]).flatten().tolist():
            row: dict[str, Any] = {"position": position, "q": float(self.q[index, position])}
            if self.input_ids is not None:
                token_id = int(self.input_ids[index, position])
                row["token_id"] = token_id
                if tokenizer is not None:
                    row["token"] = tokenizer.convert_ids_to_tokens(token_id)
            if self.offsets is not None:
                start, end = (int(v) for v in self.offsets[index, position])
                row["span"] = (start, end)
                if text is not None:
                    row["text"] = text[start:end]
            rows.append(row)
        return rows
