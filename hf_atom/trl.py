# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Atom modeling inside trl's trainers (`pip install hf_atom[trl]`).

`AtomSFTTrainer` is `AtomTrainerMixin` in front of trl's `SFTTrainer`, with `AtomSFTConfig` (every `SFTConfig` field
plus the `--atom_*` settings). trl computes the loss through a fused LM head that runs the model's backbone itself;
the mixin takes the atom term from that same backbone pass (see `hf_atom.trainer`), so the atom loss has gradients.
Other trl trainers compose the same way: `class AtomXTrainer(AtomTrainerMixin, XTrainer)` with
`atom_arguments_class(XConfig)`.

Example:

```python
>>> from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer
>>> args = AtomSFTConfig(output_dir="out", atom_weight=0.1, max_length=128)
>>> trainer = AtomSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
>>> trainer.train()  # logs atom_loss, atom_pairs, ... beside trl's entropy and mean_token_accuracy
```
"""

from __future__ import annotations

import sys

try:
    from trl import SFTConfig, SFTTrainer
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("hf_atom.trl needs trl: `pip install hf_atom[trl]` (or `pip install trl`).") from error

from .trainer import AtomTrainerMixin
from .training_args import atom_arguments_class

__all__ = ["AtomSFTConfig", "AtomSFTTrainer"]

AtomSFTConfig = atom_arguments_class(SFTConfig, "AtomSFTConfig")
AtomSFTConfig.__module__ = __name__  # pickles (training_args.bin) by this module's name
sys.modules[__name__].AtomSFTConfig = AtomSFTConfig


class AtomSFTTrainer(AtomTrainerMixin, SFTTrainer):
    """trl's `SFTTrainer` with atom modeling: `loss = SFT loss + lambda * (L_A + charge term)`.

    Takes everything `SFTTrainer` takes; `args` must be an `AtomSFTConfig`, and `model` a model object (plain: heads
    are attached; or an atom model). The SFT loss keeps trl's own normalisation; the atom term is a per-micro-batch
    mean, divided over gradient accumulation exactly like the SFT loss is.
    """

    atom_arguments_class = AtomSFTConfig
