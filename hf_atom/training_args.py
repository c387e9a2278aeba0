# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Training arguments with the atom settings: every `--atom_<name>` flag is generated from `AtomConfig.<name>`.

`atom_arguments_class(base)` adds the flags to any `TrainingArguments` subclass (trl's `SFTConfig`, ...), so
`HfArgumentParser` shows their types, choices and help, and validation happens once, in `AtomConfig`.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from transformers import TrainingArguments

from .configuration import HEAD, AtomConfig, AtomConfigError

__all__ = ["ATOM_ARGUMENT_PREFIX", "AtomArgumentsMixin", "AtomTrainingArguments", "atom_arguments_class"]

ATOM_ARGUMENT_PREFIX = "atom_"
_NOT_FLAGS = ("input_dim",)  # read from the model when the heads are attached


def _atom_argument_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """One dataclass field `atom_<name>` per `AtomConfig` field, with its type, default and help.

    Head settings default to None: an atom model keeps the heads it has, a plain model gets `AtomConfig`'s default.
    """
    hints = typing.get_type_hints(AtomConfig)
    fields = []
    for spec in dataclasses.fields(AtomConfig):
        if spec.name in _NOT_FLAGS:
            continue
        kind, default, help_text = hints[spec.name], spec.default, spec.metadata["help"]
        if spec.metadata["group"] == HEAD:
            if spec.default is not None:
                help_text += f" Default: {spec.default!r}."
            kind, default = kind | None, None
        metadata = {"help": help_text}
        fields.append((ATOM_ARGUMENT_PREFIX + spec.name, kind, dataclasses.field(default=default, metadata=metadata)))
    return fields


class AtomArgumentsMixin:
    """The behaviour shared by every generated arguments class: validation at parsing and the `AtomConfig` view."""

    def __post_init__(self):
        super().__post_init__()
        try:
            self.atom_config  # noqa: B018 - validates every atom setting now, at argument parsing
        except AtomConfigError as error:
            raise error.respelled("`--" + ATOM_ARGUMENT_PREFIX + "{}`") from None

    @property
    def atom_head_overrides(self) -> dict[str, Any]:
        """The head settings given explicitly (AtomConfig field names)."""
        names = [name for name in AtomConfig.field_names(HEAD) if name not in _NOT_FLAGS]
        values = {name: getattr(self, ATOM_ARGUMENT_PREFIX + name) for name in names}
        return {name: value for name, value in values.items() if value is not None}

    @property
    def atom_config(self) -> AtomConfig:
        """The validated `AtomConfig` these arguments describe (unset head settings take AtomConfig's defaults)."""
        values = {
            spec.name: getattr(self, ATOM_ARGUMENT_PREFIX + spec.name)
            for spec in dataclasses.fields(AtomConfig)
            if spec.name not in _NOT_FLAGS and spec.metadata["group"] != HEAD
        }
        return AtomConfig(**values, **self.atom_head_overrides)

    def atom_weight_at(self, step: int) -> float:
        """lambda at an optimizer step, after the optional linear warm-up."""
        return self.atom_config.weight_at(step)


def atom_arguments_class(base: type, name: str | None = None) -> type:
    """Returns `base` (a `TrainingArguments` dataclass, e.g. trl's `SFTConfig`) with the `--atom_*` fields added.

    Example:

    ```python
    >>> from trl import SFTConfig
    >>> AtomSFTConfig = atom_arguments_class(SFTConfig)
    >>> args = AtomSFTConfig(output_dir="out", atom_weight=0.1, max_length=128)
    >>> args.atom_config.weight
    0.1
    ```
    """
    if not (isinstance(base, type) and issubclass(base, TrainingArguments)):
        raise ValueError(f"`base` must be a TrainingArguments subclass, got {base!r}.")
    if issubclass(base, AtomArgumentsMixin):
        return base
    name = name or "Atom" + base.__name__
    cls = dataclasses.make_dataclass(name, _atom_argument_fields(), bases=(AtomArgumentsMixin, base))
    cls.__doc__ = (
        f"`{base.__name__}` plus the atom-modeling settings (`--atom_*` flags, JSON or YAML keys), one per "
        "`hf_atom.AtomConfig` field, validated at parsing."
    )
    # Published under this module, so pickle (Trainer saves training_args.bin) finds the class by name.
    cls.__module__ = __name__
    setattr(sys.modules[__name__], name, cls)
    return cls


AtomTrainingArguments = atom_arguments_class(TrainingArguments, "AtomTrainingArguments")
