# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Ties the atom term to the forward pass that gave the task loss, whatever a trainer's `compute_loss` does.

While a parent trainer computes its loss, forward hooks record the atom outputs of every pass through the atom model,
and the hidden states of every pass through its backbone (some trainers run the backbone themselves, e.g. trl's fused
LM head, which never calls the model's own forward). In training, only a pass with gradients can train the heads:
exactly one must exist, or atom modeling would silently do nothing (or pick the wrong pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["CapturedForwards", "capture_atom_forwards", "check_compute_loss_order"]


class CapturedForwards:
    """The atom-relevant outputs of the forward passes of one `compute_loss` call."""

    def __init__(self):
        self.model: list[tuple[bool, tuple]] = []  # (grad enabled, (q, p, mask))
        self.backbone: list[tuple[bool, tuple]] = []  # (grad enabled, (outputs, inputs))

    def charges(self, atom_model, training: bool, parent: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, p and the mask of the forward pass that produced the task loss.

        Raises:
            `RuntimeError`: in training, when no pass (or more than one) had gradients; `parent` names the trainer.
        """
        for kind, records in (("model", self.model), ("backbone", self.backbone)):
            if training:
                records = [record for record in records if record[0]]
                if len(records) > 1:
                    raise RuntimeError(
                        f"{parent}.compute_loss ran {len(records)} forward passes with gradients through the model, "
                        "so the atom term cannot be tied to the one that gave the task loss. Atom modeling does not "
                        "support this trainer configuration; use one forward pass per step."
                    )
            if records:
                payload = records[-1][1]
                if kind == "model":
                    return payload
                outputs, inputs = payload
                q, p, tokens = atom_model.atom_charges(outputs, inputs)
                return q, p, tokens.mask
        raise RuntimeError(
            f"{parent}.compute_loss ran no forward pass {'with gradients ' if training else ''}through the atom model, "
            "so the atom term would have no effect. Atom modeling cannot be combined with this trainer as it is "
            "configured (e.g. it computes the loss without calling the model)."
        )


@contextmanager
def capture_atom_forwards(atom_model: nn.Module) -> Iterator[CapturedForwards]:
    """Records the forward passes through `atom_model` (an `AtomMixin` model) and its backbone while active."""
    captured = CapturedForwards()

    def on_model(module, args, kwargs, output):
        if isinstance(output, dict) and output.get("atom_q") is not None:
            captured.model.append((torch.is_grad_enabled(), (output["atom_q"], output["atom_p"], output["atom_mask"])))

    def before_backbone(module, args, kwargs):
        return args, {**kwargs, "output_hidden_states": True}  # the atom tokens are rows of hidden_states

    def on_backbone(module, args, kwargs, output):
        if isinstance(output, dict) and output.get("hidden_states") is not None:
            captured.backbone.append((torch.is_grad_enabled(), (output, kwargs)))

    handles = [atom_model.register_forward_hook(on_model, with_kwargs=True)]
    backbone = getattr(atom_model, "base_model", atom_model)
    if isinstance(backbone, nn.Module) and backbone is not atom_model:
        handles.append(backbone.register_forward_pre_hook(before_backbone, with_kwargs=True))
        handles.append(backbone.register_forward_hook(on_backbone, with_kwargs=True))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def check_compute_loss_order(trainer_class: type, mixin: type) -> None:
    """Raises a `TypeError` when a `compute_loss` comes before the mixin's in `trainer_class`'s MRO: the atom term
    would then never be added, silently."""
    mro = trainer_class.__mro__
    for cls in mro[: mro.index(mixin)]:
        if "compute_loss" in vars(cls) and not issubclass(cls, mixin):
            raise TypeError(
                f"{trainer_class.__name__}: {cls.__name__}.compute_loss comes before {mixin.__name__}'s, so the atom "
                f"term would never be added. Put the mixin first: `class {trainer_class.__name__}({mixin.__name__}, "
                f"{cls.__name__})`."
            )
