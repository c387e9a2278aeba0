# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`AutoAtomModel` and its task variants: load a saved atom model, or any checkpoint with fresh atom heads.

The layout of peft's `auto.py`: the loaders pick the model class from the config, like transformers' `AutoModelFor*`,
and make it an atom class with `hf_atom.modeling.atom_class_for`. A local folder is checked before transformers
loads it, so a cut-short weight file or heads that disagree with the saved settings fail with a message.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import transformers
from transformers import AutoConfig, PreTrainedModel

from .checkpoints import check_saved_model
from .configuration import AtomConfig
from .heads import build_atom_head
from .modeling import _ATOM_PREFIX, atom_class_for
from .tokens import TokenSelector

__all__ = [
    "AutoAtomModel",
    "AutoAtomModelForCausalLM",
    "AutoAtomModelForImageClassification",
    "AutoAtomModelForMaskedLM",
    "AutoAtomModelForSequenceClassification",
    "AutoAtomModelForTokenClassification",
]


class AutoAtomModel:
    """Loads a saved atom model (heads and settings included), or any checkpoint with fresh atom heads.

    The model class is read from `config.architectures` (an `Atom<Class>` name, or a plain one); the task-specific
    variants (`AutoAtomModelForSequenceClassification`, ...) pick the class from the model type, like the matching
    `AutoModelFor*`.

    Example:

    ```python
    >>> model.save_pretrained("out")  # an atom model
    >>> model = AutoAtomModel.from_pretrained("out")  # same class, heads and atom settings
    >>> model = AutoAtomModelForSequenceClassification.from_pretrained("bert-base-uncased", atom_config=AtomConfig())
    ```
    """

    _auto_class: type | None = None
    _config_kwargs = ("cache_dir", "revision", "token", "local_files_only", "trust_remote_code", "subfolder")

    def __init__(self, *args, **kwargs):
        raise OSError(f"Use `{type(self).__name__}.from_pretrained(...)` or `.from_config(...)`.")

    @classmethod
    def _base_class(cls, config) -> type:
        if cls._auto_class is not None:
            try:
                return cls._auto_class._model_mapping[type(config)]
            except KeyError:
                raise ValueError(
                    f"{cls._auto_class.__name__} has no model for config type {type(config).__name__}."
                ) from None
        for name in getattr(config, "architectures", None) or []:
            plain = name[len(_ATOM_PREFIX) :] if name.startswith(_ATOM_PREFIX) else name
            found = getattr(transformers, plain, None)
            if isinstance(found, type) and issubclass(found, PreTrainedModel):
                return found
        return transformers.AutoModel._model_mapping[type(config)]

    @classmethod
    def _prepare_config(cls, config, atom_config: AtomConfig | None):
        if atom_config is not None:
            if not isinstance(atom_config, AtomConfig):
                raise ValueError(f"`atom_config` must be an hf_atom.AtomConfig, got {type(atom_config).__name__}.")
            config.atom_config = atom_config.to_dict()
        return config

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,  # noqa: F821
        *model_args,
        atom_config: AtomConfig | None = None,
        token_selector: TokenSelector | None = None,
        **kwargs,
    ) -> PreTrainedModel:
        """Like `AutoModel.from_pretrained`; `atom_config` overrides the saved atom settings (new heads must then
        have the saved shapes), `token_selector` is set on the model."""
        config = kwargs.pop("config", None)
        if config is None:
            config_kwargs = {k: kwargs[k] for k in cls._config_kwargs if k in kwargs}
            config, kwargs = AutoConfig.from_pretrained(
                pretrained_model_name_or_path, return_unused_kwargs=True, **config_kwargs, **kwargs
            )
            kwargs.update(config_kwargs)
        config = cls._prepare_config(config, atom_config)
        _check_local_model(pretrained_model_name_or_path, config, kwargs, atom_config is not None)
        model = atom_class_for(cls._base_class(config)).from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config, **kwargs
        )
        if token_selector is not None:
            model.atom_token_selector = token_selector
        return model

    @classmethod
    def from_config(cls, config, atom_config: AtomConfig | None = None, **kwargs) -> PreTrainedModel:
        """A randomly initialised atom model for `config` (like `AutoModel.from_config`)."""
        config = cls._prepare_config(config, atom_config)
        return atom_class_for(cls._base_class(config))(config, **kwargs)


def _check_local_model(path, config, kwargs: dict[str, Any], atom_config_given: bool) -> None:
    """Fails early, with a message naming the problem, on a local folder whose weights are cut short or whose atom
    heads do not have the shapes its atom settings describe (transformers would raise deep in loading)."""
    folder = os.path.join(os.fspath(path), kwargs["subfolder"]) if kwargs.get("subfolder") else os.fspath(path)
    if not os.path.isdir(folder) or kwargs.get("variant") or kwargs.get("gguf_file"):
        return  # Hub ids and other file layouts: transformers' own checks apply
    expected, head_class = {}, None
    saved = getattr(config, "atom_config", None)
    if not kwargs.get("ignore_mismatched_sizes") and isinstance(saved, dict) and saved.get("input_dim"):
        settings = AtomConfig.from_dict(saved)
        with torch.device("meta"):  # shapes only, no memory
            head = build_atom_head(settings, settings.input_dim)
        expected = {f"atom_head.{name}": tuple(t.shape) for name, t in head.state_dict().items()}
        head_class = type(head)
    source = "The `atom_config` passed to from_pretrained" if atom_config_given else "config.json's `atom_config`"
    check_saved_model(folder, expected, settings=source, head_class=head_class, heads_required=not atom_config_given)


class AutoAtomModelForSequenceClassification(AutoAtomModel):
    __doc__ = AutoAtomModel.__doc__
    _auto_class = transformers.AutoModelForSequenceClassification


class AutoAtomModelForImageClassification(AutoAtomModel):
    __doc__ = AutoAtomModel.__doc__
    _auto_class = transformers.AutoModelForImageClassification


class AutoAtomModelForCausalLM(AutoAtomModel):
    __doc__ = AutoAtomModel.__doc__
    _auto_class = transformers.AutoModelForCausalLM


class AutoAtomModelForTokenClassification(AutoAtomModel):
    __doc__ = AutoAtomModel.__doc__
    _auto_class = transformers.AutoModelForTokenClassification


class AutoAtomModelForMaskedLM(AutoAtomModel):
    __doc__ = AutoAtomModel.__doc__
    _auto_class = transformers.AutoModelForMaskedLM
