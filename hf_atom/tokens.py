# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Which rows of a model's hidden states are the atom's tokens, per model family (docs/DESIGN.md, D5).

| family | input | hidden state used | tokens | excluded |
| --- | --- | --- | --- | --- |
| text encoders (BERT, MiniLM, ...) | `input_ids` / `inputs_embeds` | `hidden_states[hidden_layer]` (B, N, h) | every position | padding (`attention_mask == 0`); special tokens if `exclude_special_tokens` (needs `special_tokens_mask`) |
| decoder LMs (GPT-2, Llama, SmolLM2, ...) | same | same | every position; packed rows (`position_ids` resets, padding-free packing) split into their samples | same (left or right padding) |
| ViT, DINOv2, DeiT | `pixel_values` | `hidden_states[hidden_layer]` (B, prefix + P, h), before the final LayerNorm | the P patch tokens | class / distillation / register tokens unless `include_cls_token` |
| CNNs (ResNet, ConvNeXt, ...) | `pixel_values` | `hidden_states[hidden_layer]` (B, C, H, W) | the H*W feature-map cells, C channels each | nothing |
| anything else | any | what a user-supplied `token_selector(model, outputs, inputs)` returns | its rows | its mask |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .configuration import AtomConfig

__all__ = [
    "AtomTokens",
    "TokenSelector",
    "feature_map_tokens",
    "feature_widths",
    "mlp_tokens",
    "select_tokens",
    "unpack_sequences",
]

# selector(model, outputs, inputs) -> (tokens (B, N, h), mask (B, N) or None)
TokenSelector = Callable[[Any, Mapping[str, Any], Mapping[str, Any]], tuple[torch.Tensor, torch.Tensor | None]]

_WIDTH_NAMES = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim")
_DEPTH_NAMES = ("num_hidden_layers", "n_layer", "num_layers")


@dataclass
class AtomTokens:
    """The atom's tokens for one batch.

    Args:
        hidden (`torch.Tensor` of shape `(batch, tokens, width)`): the token features the heads read.
        mask (`torch.Tensor` of shape `(batch, tokens)`, bool): valid tokens.
        grid_shape (`tuple[int, int]`, *optional*): for images, the (rows, cols) grid the last rows*cols tokens form.
        cell_size (`tuple[float, float]`, *optional*): pixels per grid cell (height, width) in `pixel_values`.
        num_prefix_tokens (`int`): tokens before the grid (class/register tokens kept with `include_cls_token`).
    """

    hidden: torch.Tensor
    mask: torch.Tensor
    grid_shape: tuple[int, int] | None = None
    cell_size: tuple[float, float] | None = None
    num_prefix_tokens: int = 0


def _sub_configs(config) -> list:
    configs = [config]
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        text_config = get_text_config()
        if text_config is not config:
            configs.append(text_config)
    for name in ("text_config", "vision_config"):
        sub = getattr(config, name, None)
        if sub is not None and sub not in configs:
            configs.append(sub)
    return configs


def feature_widths(config) -> list[int] | None:
    """Width of each entry of `hidden_states`, read from a transformers config (None if it cannot be read).

    Transformers: `num_hidden_layers + 1` entries of `hidden_size` (like trl's value head: `hidden_size`, then
    `text_config.hidden_size`, ...). CNNs with stages (`hidden_sizes`): the stem, then one entry per stage.
    """
    hidden_sizes = getattr(config, "hidden_sizes", None)
    if hidden_sizes:
        stem = getattr(config, "embedding_size", None) or hidden_sizes[0]
        return [int(stem), *map(int, hidden_sizes)]
    for sub in _sub_configs(config):
        width = next((getattr(sub, n) for n in _WIDTH_NAMES if isinstance(getattr(sub, n, None), int)), None)
        depth = next((getattr(sub, n) for n in _DEPTH_NAMES if isinstance(getattr(sub, n, None), int)), None)
        if width is not None and depth is not None:
            return [int(width)] * (int(depth) + 1)
    return None


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value), int(value))


def select_tokens(
    model_config, atom_config: AtomConfig, outputs: Mapping[str, Any], inputs: Mapping[str, Any], model_name: str
) -> AtomTokens:
    """Picks the atom's tokens and their validity mask from a forward's hidden states (see the table above)."""
    hidden_states = outputs.get("hidden_states")
    if not hidden_states:
        raise ValueError(
            f"{model_name} returned no `hidden_states`, so atom heads cannot read its tokens. Pass "
            "`token_selector=fn` to `with_atom`, where fn(model, outputs, inputs) returns (tokens (B, N, h), mask)."
        )
    layer = atom_config.hidden_layer
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise ValueError(
            f"`hidden_layer={layer}` is out of range: {model_name} returns {len(hidden_states)} hidden states "
            f"(valid indices {-len(hidden_states)}..{len(hidden_states) - 1})."
        )
    hidden = hidden_states[layer]
    pixel_values = inputs.get("pixel_values")

    if hidden.dim() == 4:  # CNN feature map (B, C, H, W): H*W cells of C channels
        batch, _, rows, cols = hidden.shape
        tokens = feature_map_tokens(hidden)
        mask = torch.ones(batch, rows * cols, dtype=torch.bool, device=hidden.device)
        cell = None
        if pixel_values is not None:
            cell = (pixel_values.shape[-2] / rows, pixel_values.shape[-1] / cols)
        return AtomTokens(tokens, mask, (rows, cols), cell, 0)
    if hidden.dim() != 3:
        raise ValueError(
            f"{model_name}'s hidden state {layer} has shape {tuple(hidden.shape)}; atom heads need (B, N, h) or "
            "(B, C, H, W). Pass a `token_selector`."
        )

    batch, length, _ = hidden.shape
    if pixel_values is not None:  # ViT-like: [prefix tokens] + patch grid
        patch_size = getattr(model_config, "patch_size", None)
        if patch_size is None:
            mask = torch.ones(batch, length, dtype=torch.bool, device=hidden.device)
            return AtomTokens(hidden, mask)
        patch_h, patch_w = _pair(patch_size)
        rows, cols = pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w
        prefix = length - rows * cols
        if prefix < 0:
            raise ValueError(
                f"{model_name} returned {length} tokens for a {rows}x{cols} patch grid; pass a `token_selector`."
            )
        if not atom_config.include_cls_token:
            hidden, prefix = hidden[:, prefix:], 0
        mask = torch.ones(batch, hidden.shape[1], dtype=torch.bool, device=hidden.device)
        return AtomTokens(hidden, mask, (rows, cols), (float(patch_h), float(patch_w)), prefix)

    # text: every position; padding and (optionally) special tokens excluded
    attention_mask = inputs.get("attention_mask")
    if attention_mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool, device=hidden.device)
    else:
        if attention_mask.dim() == 2 and attention_mask.shape[0] == batch and attention_mask.shape[1] > length:
            # Prefix tuning (PEFT) prepends its virtual tokens to the attention mask only: they are keys and values,
            # not positions of the hidden states, so the mask's last `length` columns are the tokens'.
            attention_mask = attention_mask[:, -length:]
        if attention_mask.shape != (batch, length):
            raise ValueError(
                f"`attention_mask` must have shape (batch, tokens) = {(batch, length)} to mark padding for the atom "
                f"heads, got {tuple(attention_mask.shape)}."
            )
        mask = attention_mask != 0
    if atom_config.exclude_special_tokens:
        special = inputs.get("special_tokens_mask")
        if special is None:
            raise ValueError(
                "`exclude_special_tokens=True` needs `special_tokens_mask` in the inputs: tokenize with "
                "`tokenizer(..., return_special_tokens_mask=True)` (the data collator keeps it)."
            )
        mask = mask & (special.to(mask.device) == 0)
    position_ids = inputs.get("position_ids")
    if isinstance(position_ids, torch.Tensor) and position_ids.shape == (batch, length) and length > 1:
        hidden, mask = unpack_sequences(hidden, mask, position_ids)
    return AtomTokens(hidden, mask)


def unpack_sequences(
    hidden: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits packed rows (padding-free packing, e.g. trl's `packing=True`) into their samples.

    A sample starts wherever `position_ids` does not increase (the resets flash-attention's varlen kernels use too),
    and at the start of every row. Rows without a reset are returned as they are (no copy, no host synchronisation
    beyond the check). Packed rows become one sample each, left-aligned and padded: (samples, longest, h) and the
    matching mask, so that L_A pairs the true samples.
    """
    position_ids = position_ids.to(hidden.device)
    resets = position_ids[:, 1:] <= position_ids[:, :-1]
    if not bool(resets.any()):  # one host synchronisation, only when the batch carries position_ids
        return hidden, mask
    batch, length, width = hidden.shape
    starts = torch.cat([torch.ones_like(resets[:, :1]), resets], dim=1).flatten()
    flat = torch.arange(batch * length, device=hidden.device)
    sample = starts.cumsum(0) - 1  # sample index of every token
    offset = flat - torch.cummax(torch.where(starts, flat, torch.zeros_like(flat)), dim=0).values
    num_samples, longest = int(sample[-1]) + 1, int(offset.max()) + 1
    tokens = hidden.new_zeros(num_samples, longest, width).index_put((sample, offset), hidden.reshape(-1, width))
    valid = torch.zeros(num_samples, longest, dtype=torch.bool, device=mask.device)
    valid = valid.index_put((sample, offset), mask.reshape(-1))
    return tokens, valid


def mlp_tokens(activations: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """An MLP layer's activations (B, H) as `num_tokens` tokens of H / num_tokens features each: (B, N, H / N).

    Consecutive units form one token (docs/DESIGN.md, D7: our choice for generators and other plain modules).
    """
    if not isinstance(activations, torch.Tensor) or activations.dim() != 2:
        shape = tuple(activations.shape) if isinstance(activations, torch.Tensor) else type(activations).__name__
        raise ValueError(f"`activations` must have shape (batch, width), got {shape}.")
    width = activations.shape[1]
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1 or width % num_tokens:
        raise ValueError(
            f"`num_tokens` must be a positive integer that divides the layer width {width}, got {num_tokens!r} "
            f"(e.g. one of {[n for n in range(1, min(width, 64) + 1) if width % n == 0]})."
        )
    return activations.reshape(activations.shape[0], num_tokens, width // num_tokens)


def feature_map_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """A conv feature map (B, C, H, W) as its H * W cells, C features each: (B, H * W, C), row-major like the CNN
    rule of the token table."""
    if not isinstance(feature_map, torch.Tensor) or feature_map.dim() != 4:
        shape = tuple(feature_map.shape) if isinstance(feature_map, torch.Tensor) else type(feature_map).__name__
        raise ValueError(f"`feature_map` must have shape (batch, channels, height, width), got {shape}.")
    return feature_map.flatten(2).transpose(1, 2)
