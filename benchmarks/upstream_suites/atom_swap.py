"""The classes swapped in for the upstream ones: hf_atom's, with atom_weight defaulting to HF_ATOM_SWAP's value.

Module-level classes (not closures) so that Trainer can pickle them into training_args.bin.
"""

import dataclasses
import os

MODE = os.environ.get("HF_ATOM_SWAP", "none")
WEIGHTS = {"zero": 0.0, "tenth": 0.1}
if MODE not in ("none", *WEIGHTS):
    raise ValueError(f"HF_ATOM_SWAP must be none, zero or tenth, got {MODE!r}")
WEIGHT = WEIGHTS.get(MODE, 0.1)

import hf_atom  # noqa: E402
import hf_atom.trl  # noqa: E402


@dataclasses.dataclass
class AtomTrainingArguments(hf_atom.AtomTrainingArguments):
    atom_weight: float = WEIGHT


@dataclasses.dataclass
class AtomSFTConfig(hf_atom.trl.AtomSFTConfig):
    atom_weight: float = WEIGHT


class AtomTrainer(hf_atom.AtomTrainer):
    atom_arguments_class = AtomTrainingArguments


class AtomSFTTrainer(hf_atom.trl.AtomSFTTrainer):
    atom_arguments_class = AtomSFTConfig
