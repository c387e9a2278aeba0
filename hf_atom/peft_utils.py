# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""PEFT on atom models: the atom heads stay trainable and are saved with the adapter."""

from __future__ import annotations

import copy
from typing import Any

from .modeling import AtomMixin

__all__ = ["ATOM_HEAD_MODULE", "add_atom_head_to_peft_config", "get_peft_model"]

ATOM_HEAD_MODULE = "atom_head"


def add_atom_head_to_peft_config(peft_config: Any) -> Any:
    """A copy of `peft_config` whose `modules_to_save` includes the atom heads (PEFT freezes them otherwise)."""
    peft_config = copy.deepcopy(peft_config)
    modules = list(getattr(peft_config, "modules_to_save", None) or [])
    if ATOM_HEAD_MODULE not in modules:
        modules.append(ATOM_HEAD_MODULE)
    peft_config.modules_to_save = modules
    return peft_config


def get_peft_model(model: Any, peft_config: Any, *args, **kwargs):
    """`peft.get_peft_model` for atom models: adds `atom_head` to `modules_to_save` so the heads train and are
    saved with the adapter (`PeftModel.from_pretrained` restores them).

    Example:

    ```python
    >>> from peft import LoraConfig
    >>> model = hf_atom.get_peft_model(atom_model, LoraConfig(target_modules=["query", "value"], task_type="SEQ_CLS"))
    ```
    """
    import peft  # optional dependency: `pip install hf_atom[peft]`

    if isinstance(model, AtomMixin):
        peft_config = add_atom_head_to_peft_config(peft_config)
    return peft.get_peft_model(model, peft_config, *args, **kwargs)
