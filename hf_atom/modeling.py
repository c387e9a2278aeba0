# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Atom heads on any transformers model.

`with_atom(model)` turns a built or loaded model into an instance of `Atom<ModelClass>`, a real
`PreTrainedModel` subclass made by `atom_class_for` (registered in this module, so it pickles). Its forward
runs the original forward unchanged, then computes the atom heads on the chosen hidden state and adds
`atom_q` (B, N), `atom_p` (B, N, D) and `atom_mask` (B, N) to the output. The task path (logits, loss) is
never touched. The heads and the atom settings (`config.atom_config`) are saved with the checkpoint, which
still loads with the plain `AutoModelFor*` class (the head weights are then reported as unexpected keys); the
`AutoAtomModel*` loaders are in `hf_atom.auto`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import AtomConfig
from .heads import BaseAtomHead, build_atom_head
from .importance import TokenImportance
from .tokens import AtomTokens, TokenSelector, feature_widths, select_tokens

__all__ = ["ATOM_OUTPUT_KEYS", "AtomMixin", "atom_class_for", "with_atom"]

ATOM_OUTPUT_KEYS = ("atom_q", "atom_p", "atom_mask")
_ATOM_PREFIX = "Atom"
_EXTRA_FORWARD_INPUTS = ("special_tokens_mask",)  # tokenizer outputs the heads may use, never passed on
_MAIN_INPUTS = ("input_ids", "inputs_embeds", "pixel_values", "input_values", "input_features")

_this_module = sys.modules[__name__]
_atom_classes: dict[type, type] = {}
_output_classes: dict[type, type] = {}


def _register(cls: type) -> type:
    """Publishes a generated class under this module, so pickle and `torch.save` can find it by name."""
    cls.__module__ = __name__
    cls.__qualname__ = cls.__name__
    setattr(_this_module, cls.__name__, cls)
    return cls


def _atom_output_class(output_cls: type) -> type:
    """`Atom<Output>`: the model's own output dataclass plus `atom_q`, `atom_p` and `atom_mask`."""
    if output_cls not in _output_classes:
        fields = [(key, torch.Tensor | None, dataclasses.field(default=None)) for key in ATOM_OUTPUT_KEYS]
        cls = dataclasses.make_dataclass(_ATOM_PREFIX + output_cls.__name__, fields, bases=(output_cls,))
        _output_classes[output_cls] = _register(cls)
    return _output_classes[output_cls]


def _forward_signature(base_forward) -> inspect.Signature:
    """The base forward's signature plus the extra inputs the heads read, so that Trainer keeps those columns."""
    signature = inspect.signature(base_forward)
    params = list(signature.parameters.values())
    names = {p.name for p in params}
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=torch.Tensor | None)
        for name in _EXTRA_FORWARD_INPUTS
        if name not in names
    ]
    var_keyword = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    head = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=head + extra + var_keyword)


def _make_forward(base_forward):
    positional_names = [
        p.name
        for p in inspect.signature(base_forward).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ][1:]  # drop self

    @functools.wraps(base_forward)
    def forward(self, *args, **kwargs):
        if len(args) > len(positional_names):
            raise TypeError(
                f"{type(self).__name__}.forward got {len(args)} positional arguments, expected at most {len(positional_names)}."
            )
        kwargs.update(zip(positional_names, args))
        outputs, _ = self._atom_forward(base_forward, kwargs)
        return outputs

    forward.__signature__ = _forward_signature(base_forward)
    return forward


def atom_class_for(base_class: type) -> type:
    """Returns `Atom<base_class>`, the atom version of a transformers model class (made once, then cached).

    Example:

    ```python
    >>> from transformers import BertForSequenceClassification
    >>> AtomBert = atom_class_for(BertForSequenceClassification)
    >>> model = AtomBert.from_pretrained("bert-base-uncased", num_labels=2)  # heads freshly initialised
    ```
    """
    if not isinstance(base_class, type) or not issubclass(base_class, PreTrainedModel):
        raise ValueError(
            f"Atom heads attach to transformers `PreTrainedModel` classes, got {base_class!r}. For a plain torch "
            "module, use `hf_atom.AtomRegularizer`."
        )
    if issubclass(base_class, AtomMixin):
        return base_class
    if base_class not in _atom_classes:
        name = _ATOM_PREFIX + base_class.__name__
        namespace = {"forward": _make_forward(base_class.forward), "_atom_base_class": base_class}
        _atom_classes[base_class] = _register(type(name, (AtomMixin, base_class), namespace))
    return _atom_classes[base_class]


class AtomMixin:
    """Adds atom heads to a `PreTrainedModel` subclass. Use through `atom_class_for` / `with_atom`.

    Attributes:
        atom_head (`BaseAtomHead`): the Q and P maps, of the registered type `atom_config.head_type`.
        atom_token_selector (`callable`, *optional*): overrides the built-in token selection (not saved).
    """

    _atom_base_class: type
    atom_head: BaseAtomHead
    atom_token_selector: TokenSelector | None = None

    # -- construction ------------------------------------------------------------------------------------

    def post_init(self):
        # The heads must exist before the base post_init runs the weight initialisation.
        if "atom_head" not in self._modules:
            self._attach_atom_head(AtomConfig.from_dict(getattr(self.config, "atom_config", None) or {}))
        super().post_init()

    def _attach_atom_head(self, atom_config: AtomConfig) -> None:
        widths = feature_widths(self.config)
        if widths is not None and not -len(widths) <= atom_config.hidden_layer < len(widths):
            raise ValueError(
                f"`hidden_layer={atom_config.hidden_layer}` is out of range: {type(self).__name__} has "
                f"{len(widths)} hidden states (valid indices {-len(widths)}..{len(widths) - 1})."
            )
        input_dim = atom_config.input_dim
        if input_dim is None:
            if widths is None:
                raise ValueError(
                    f"Cannot read the hidden-state width of {type(self).__name__} from its config; set "
                    "`AtomConfig(input_dim=...)` to the width of the tokens the heads read."
                )
            input_dim = widths[atom_config.hidden_layer]
        atom_config = atom_config.replace(input_dim=input_dim)
        self.config.atom_config = atom_config.to_dict()
        # Keep the atom outputs out of Trainer's eval predictions, so compute_metrics sees only the logits.
        ignored = list(getattr(self.config, "keys_to_ignore_at_inference", None) or [])
        self.config.keys_to_ignore_at_inference = ignored + [k for k in ATOM_OUTPUT_KEYS if k not in ignored]
        self.atom_head = build_atom_head(atom_config, input_dim)

    @classmethod
    def is_custom_code(cls) -> bool:
        # Generated classes live outside `transformers.`, which would make transformers treat them as remote code:
        # skip checkpoint key conversions (e.g. ViT's renamed attention keys) and skip initialising the heads.
        return cls._atom_base_class.is_custom_code()

    def _init_weights(self, module):
        if isinstance(module, BaseAtomHead):
            module.reset_parameters()  # never the base model's zero-bias/0.02 default for Q (docs/DESIGN.md, D3e)
            return
        super()._init_weights(module)

    @property
    def atom_config(self) -> AtomConfig:
        """The atom settings of this model (stored on `config.atom_config`)."""
        return AtomConfig.from_dict(self.config.atom_config)

    # -- forward -------------------------------------------------------------------------------------------

    def _atom_forward(self, base_forward, kwargs: dict[str, Any]) -> tuple[ModelOutput, AtomTokens]:
        if not any(kwargs.get(name) is not None for name in _MAIN_INPUTS):
            expected = [n for n in _MAIN_INPUTS if n in inspect.signature(base_forward).parameters]
            raise ValueError(
                f"{type(self).__name__}.forward needs one of {expected or list(_MAIN_INPUTS)}; none was given."
            )
        extra = {name: kwargs.pop(name, None) for name in _EXTRA_FORWARD_INPUTS}
        return_dict = kwargs.pop("return_dict", None)
        want_hidden = kwargs.pop("output_hidden_states", None)
        if want_hidden is None:
            want_hidden = bool(getattr(self.config, "output_hidden_states", False))

        outputs = base_forward(self, **kwargs, output_hidden_states=True, return_dict=True)

        q, p, tokens = self.atom_charges(outputs, {**kwargs, **extra})

        fields = {key: value for key, value in outputs.items() if key != "hidden_states" or want_hidden}
        result = _atom_output_class(type(outputs))(**fields, atom_q=q, atom_p=p, atom_mask=tokens.mask)
        if return_dict is False:
            return result.to_tuple(), tokens
        return result, tokens

    def atom_charges(
        self, outputs: ModelOutput, inputs: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, AtomTokens]:
        """Charges q, positions p and the tokens they belong to, from the outputs of one forward pass.

        Args:
            outputs (`ModelOutput`): outputs with `hidden_states`, of this model or of its backbone (`base_model`,
                e.g. when a trainer runs the backbone itself, like trl's fused LM head).
            inputs (`dict`): the inputs of that forward pass (masks, `special_tokens_mask`, `pixel_values`).
        """
        if self.atom_token_selector is not None:
            hidden, mask = self.atom_token_selector(self, outputs, inputs)
            if mask is None:
                mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
            tokens = AtomTokens(hidden, mask.bool())
        else:
            tokens = select_tokens(self.config, self.atom_config, outputs, inputs, type(self).__name__)
        q, p = self.atom_head(tokens.hidden)
        return q, p, tokens

    @torch.no_grad()
    def token_importance(self, **inputs) -> TokenImportance:
        """Per-token charges q for a batch, aligned with the input tokens or patches, ready for plotting.

        Accepts the model's usual inputs plus, for text, `offset_mapping` (from `tokenizer(...,
        return_offsets_mapping=True)`), which is kept for alignment and not passed to the model.

        Example:

        ```python
        >>> enc = tokenizer(["a fine poem"], return_tensors="pt", return_offsets_mapping=True)
        >>> importance = model.token_importance(**enc)
        >>> importance.tokens(0, tokenizer, text="a fine poem")  # [{'token': 'a', 'q': 0.31, 'span': (0, 1), ...}]
        >>> model.token_importance(pixel_values=pixels).grid()  # (batch, rows, cols) for images
        ```
        """
        offsets = inputs.pop("offset_mapping", None)
        inputs.pop("labels", None)
        outputs, tokens = self._atom_forward(self._atom_base_class.forward, dict(inputs))
        q = outputs["atom_q"]
        input_ids = inputs.get("input_ids") if tokens.grid_shape is None else None
        return TokenImportance(
            q=q.float().cpu(),
            mask=tokens.mask.cpu(),
            grid_shape=tokens.grid_shape,
            cell_size=tokens.cell_size,
            num_prefix_tokens=tokens.num_prefix_tokens,
            input_ids=None if input_ids is None else input_ids.cpu(),
            offsets=None if offsets is None else torch.as_tensor(offsets).cpu(),
            logits=outputs["logits"].float().cpu() if "logits" in outputs else None,
        )


_ATTACH_CONFIG_KEYS = ("atom_config", "keys_to_ignore_at_inference")  # what `_attach_atom_head` writes on a config


def with_atom(
    model: PreTrainedModel,
    config: AtomConfig | None = None,
    *,
    token_selector: TokenSelector | None = None,
    seed: int | None = None,
) -> PreTrainedModel:
    """Gives an already built or loaded model atom heads, in place, and returns it.

    The weights stay the same tensors (no copy); the model's class becomes `Atom<ModelClass>` and fresh heads are
    initialised on the model's device and dtype. Calling it on an atom model with a new `config` replaces the heads.

    Args:
        model (`PreTrainedModel`): any transformers model whose forward returns `hidden_states`.
        config (`AtomConfig`, *optional*): atom settings; defaults to `AtomConfig()`.
        token_selector (`callable`, *optional*): `fn(model, outputs, inputs) -> (tokens (B, N, h), mask (B, N))` for
            models the built-in token table does not cover (set `config.input_dim` to h).
        seed (`int`, *optional*): initialise the heads from this seed without touching the global random state
            (what `AtomTrainer` does with `args.seed`), so runs that differ only in lambda start from the same heads.

    Example:

    ```python
    >>> model = AutoModelForSequenceClassification.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", num_labels=2)
    >>> model = hf_atom.with_atom(model, hf_atom.AtomConfig(weight=0.1))
    >>> out = model(**batch)
    >>> out.logits, out.atom_q.shape, out.atom_p.shape, out.atom_mask.shape
    ```
    """
    if config is not None and not isinstance(config, AtomConfig):
        raise ValueError(f"`config` must be an hf_atom.AtomConfig or None, got {type(config).__name__}.")
    atom_class = atom_class_for(type(model))
    if isinstance(model, AtomMixin) and config is None:
        if token_selector is not None:
            model.atom_token_selector = token_selector
        return model
    reference = next((p for p in model.parameters() if p.is_floating_point()), None)
    # Everything the attachment changes, so that a failure leaves the user's model exactly as it was.
    original_class, old_head = model.__class__, model._modules.get("atom_head")
    saved_config = {key: model.config.__dict__[key] for key in _ATTACH_CONFIG_KEYS if key in model.config.__dict__}
    model.__class__ = atom_class
    try:
        if old_head is not None:
            del model._modules["atom_head"]
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model._attach_atom_head(config or AtomConfig())
    except Exception:
        model.__class__ = original_class
        for key in _ATTACH_CONFIG_KEYS:
            model.config.__dict__.pop(key, None)
        model.config.__dict__.update(saved_config)
        if old_head is not None:
            model._modules["atom_head"] = old_head
        raise
    if reference is not None:
        model.atom_head.to(device=reference.device, dtype=reference.dtype)
    if token_selector is not None:
        model.atom_token_selector = token_selector
    return model


def __getattr__(name: str):
    # The Auto loaders live in `hf_atom.auto` (peft's layout); `hf_atom.modeling.AutoAtomModel` keeps working.
    if name.startswith("AutoAtomModel"):
        from . import auto

        return getattr(auto, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
