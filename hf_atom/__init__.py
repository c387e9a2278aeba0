# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""hf_atom: atom modeling (Tuan, Chiu & Wang, arXiv 2210.03728) for Hugging Face Transformers.

The top-level import is lazy (the convention of transformers' and trl's `_LazyModule`): a name's module is imported
the first time the name is read, so `hf_atom.atom_loss` or `hf_atom.AtomRegularizer` need only torch, and the
Trainer side (transformers, accelerate) loads only when `hf_atom.AtomTrainer` and its kin are used.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# submodule -> the public names it defines; one line per module, read by `__getattr__` below.
_import_structure: dict[str, list[str]] = {
    "auto": [
        "AutoAtomModel",
        "AutoAtomModelForCausalLM",
        "AutoAtomModelForImageClassification",
        "AutoAtomModelForMaskedLM",
        "AutoAtomModelForSequenceClassification",
        "AutoAtomModelForTokenClassification",
    ],
    "charge": ["charge_target_penalty"],
    "configuration": [
        "CHARGE_CONSTRAINTS",
        "POSITION_NORMS",
        "STEP_MODES",
        "TOKEN_REDUCTIONS",
        "AtomConfig",
        "AtomConfigError",
    ],
    "heads": ["ATOM_HEAD_TYPES", "AtomHead", "BaseAtomHead", "build_atom_head", "register_atom_head"],
    "importance": ["TokenImportance"],
    "loss": ["AtomLoss", "AtomLossOutput", "AtomSummaries", "atom_loss", "atom_summaries", "pair_energy_matrix"],
    "loss_contract": ["check_atom_inputs"],
    "metrics": ["distinct_n", "mixture_mode_metrics", "self_bleu", "stacked_mnist_mode_metrics"],
    "modeling": ["ATOM_OUTPUT_KEYS", "AtomMixin", "atom_class_for", "with_atom"],
    "peft_utils": ["get_peft_model"],
    "regularizer": ["AtomObjective", "AtomRegularizer", "AtomRegularizerOutput"],
    "tokens": ["AtomTokens", "feature_map_tokens", "feature_widths", "mlp_tokens", "select_tokens"],
    "trainer": ["AtomTrainer", "AtomTrainerMixin"],
    "training_args": ["AtomTrainingArguments", "atom_arguments_class"],
}

_name_to_module = {name: module for module, names in _import_structure.items() for name in names}

__all__ = ["__version__", *sorted(_name_to_module)]

if TYPE_CHECKING:  # static tools (IDEs, type checkers) see ordinary imports
    from .auto import (
        AutoAtomModel,
        AutoAtomModelForCausalLM,
        AutoAtomModelForImageClassification,
        AutoAtomModelForMaskedLM,
        AutoAtomModelForSequenceClassification,
        AutoAtomModelForTokenClassification,
    )
    from .charge import charge_target_penalty
    from .configuration import (
        CHARGE_CONSTRAINTS,
        POSITION_NORMS,
        STEP_MODES,
        TOKEN_REDUCTIONS,
        AtomConfig,
        AtomConfigError,
    )
    from .heads import ATOM_HEAD_TYPES, AtomHead, BaseAtomHead, build_atom_head, register_atom_head
    from .importance import TokenImportance
    from .loss import AtomLoss, AtomLossOutput, AtomSummaries, atom_loss, atom_summaries, pair_energy_matrix
    from .loss_contract import check_atom_inputs
    from .metrics import distinct_n, mixture_mode_metrics, self_bleu, stacked_mnist_mode_metrics
    from .modeling import ATOM_OUTPUT_KEYS, AtomMixin, atom_class_for, with_atom
    from .peft_utils import get_peft_model
    from .regularizer import AtomObjective, AtomRegularizer, AtomRegularizerOutput
    from .tokens import AtomTokens, feature_map_tokens, feature_widths, mlp_tokens, select_tokens
    from .trainer import AtomTrainer, AtomTrainerMixin
    from .training_args import AtomTrainingArguments, atom_arguments_class


def __getattr__(name: str) -> Any:
    module = _name_to_module.get(name)
    if module is None:
        # `hf_atom.modeling` and the other submodules, as with an eager package.
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module 'hf_atom' has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return list(__all__)
