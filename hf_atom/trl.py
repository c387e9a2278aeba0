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

import dataclasses
import sys

try:
    from trl import SFTConfig, SFTTrainer
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("hf_atom.trl needs trl: `pip install hf_atom[trl]` (or `pip install trl`).") from error

from .trainer import AtomTrainerMixin
from .training_args import AtomArgumentsMixin, atom_arguments_class

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

    def __init__(self, model=None, args=None, *trainer_args, **kwargs):
        if isinstance(args, AtomArgumentsMixin) and not isinstance(args, SFTConfig):
            # e.g. `AtomTrainingArguments`: SFTTrainer turns a plain `TrainingArguments` into an `SFTConfig`, and so
            # does this one, into an `AtomSFTConfig` that keeps the atom settings.
            # the fields themselves: to_dict() redacts every key ending in "_token" (atom_include_cls_token too)
            names = {field.name for field in dataclasses.fields(AtomSFTConfig) if field.init}
            values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init and f.name in names}
            args = AtomSFTConfig(**values)
        model_init_kwargs = getattr(args, "model_init_kwargs", None)
        try:
            super().__init__(model, args, *trainer_args, **kwargs)
        finally:  # `_load_model_by_name` consumed them; the user's config object is left as it was given
            if args is not None:
                args.model_init_kwargs = model_init_kwargs

    def _load_model_by_name(self, name: str, args, trainer_kwargs: dict):
        """`SFTTrainer(model="org/name")`: loads it as trl does (`args.model_init_kwargs`, float32 unless `dtype`
        says otherwise, the trainer's `quantization_config`, no device map under data parallelism), so that the atom
        heads are attached before trl applies `peft_config` or wraps the model."""
        from trl.trainer.utils import create_model_from_path

        init_kwargs = dict(args.model_init_kwargs or {})
        quantization_config = trainer_kwargs.pop("quantization_config", None)
        if quantization_config is not None:
            if "quantization_config" in init_kwargs:
                raise ValueError(
                    "`quantization_config` is set both as a trainer argument and in `args.model_init_kwargs`; set it "
                    "in one place."
                )
            init_kwargs["quantization_config"] = quantization_config
        if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
            init_kwargs["device_map"] = None
        init_kwargs.setdefault("trust_remote_code", args.trust_remote_code)
        model = create_model_from_path(name, **init_kwargs)
        args.model_init_kwargs = None  # used here: trl would warn that they are ignored for a loaded model
        return model
