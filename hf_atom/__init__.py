# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""hf_atom: atom modeling (Tuan, Chiu & Wang, arXiv 2210.03728) for Hugging Face Transformers."""

__version__ = "0.1.0"

from .configuration import CHARGE_CONSTRAINTS, POSITION_NORMS, AtomConfig, AtomConfigError
from .heads import AtomHead
from .importance import TokenImportance
from .loss import (
    STEP_MODES,
    TOKEN_REDUCTIONS,
    AtomLoss,
    AtomLossOutput,
    AtomSummaries,
    atom_loss,
    atom_summaries,
    charge_target_penalty,
    check_atom_inputs,
    pair_energy_matrix,
)
from .modeling import (
    ATOM_OUTPUT_KEYS,
    AtomMixin,
    AutoAtomModel,
    AutoAtomModelForCausalLM,
    AutoAtomModelForImageClassification,
    AutoAtomModelForMaskedLM,
    AutoAtomModelForSequenceClassification,
    AutoAtomModelForTokenClassification,
    atom_class_for,
    with_atom,
)
from .peft_utils import get_peft_model
from .regularizer import AtomObjective, AtomRegularizer, AtomRegularizerOutput
from .tokens import AtomTokens, feature_map_tokens, feature_widths, mlp_tokens, select_tokens
from .trainer import AtomTrainer, AtomTrainerMixin
from .training_args import AtomTrainingArguments, atom_arguments_class

__all__ = [
    "__version__",
    "AtomConfig",
    "AtomConfigError",
    "AtomHead",
    "AtomObjective",
    "AtomRegularizer",
    "AtomRegularizerOutput",
    "AtomTrainerMixin",
    "atom_arguments_class",
    "check_atom_inputs",
    "feature_map_tokens",
    "mlp_tokens",
    "AtomLoss",
    "AtomLossOutput",
    "AtomSummaries",
    "atom_loss",
    "atom_summaries",
    "charge_target_penalty",
    "pair_energy_matrix",
    "STEP_MODES",
    "TOKEN_REDUCTIONS",
    "POSITION_NORMS",
    "CHARGE_CONSTRAINTS",
    "ATOM_OUTPUT_KEYS",
    "AtomMixin",
    "AtomTokens",
    "AtomTrainer",
    "AtomTrainingArguments",
    "AutoAtomModel",
    "AutoAtomModelForCausalLM",
    "AutoAtomModelForImageClassification",
    "AutoAtomModelForMaskedLM",
    "AutoAtomModelForSequenceClassification",
    "AutoAtomModelForTokenClassification",
    "TokenImportance",
    "atom_class_for",
    "feature_widths",
    "get_peft_model",
    "select_tokens",
    "with_atom",
]
