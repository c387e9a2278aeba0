# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Token attribution methods on one footing: atom q, attention, attention rollout, Captum's gradient and occlusion
methods, and a random baseline, each giving one score per text token or image patch.

```python
>>> from hf_atom.attribution import get_attribution_method
>>> attribution = get_attribution_method("ig", n_steps=50)(model, tokenizer(texts, return_tensors="pt", padding=True,
...     return_special_tokens_mask=True), baseline_token_id=tokenizer.mask_token_id)
>>> attribution.scores  # (batch, tokens), NaN at padding and special tokens; attribution.mask marks the scored ones
```

The registry follows peft's pattern: `ATTRIBUTION_METHODS` maps a name to a class, `register_attribution_method`
adds one, `get_attribution_method(name, **settings)` builds it. Every method answers the same question: how much does
this token / patch carry the model's probability for the target class (the predicted class unless given)?

Units (ours): text methods score input positions; padding and special tokens are never scored (their score is NaN
and `mask` is False). Image methods score the patch grid (rows x cols, `config.patch_size` pixels per cell); pixel
attributions are pooled per patch (summed over channels and the patch's pixels; occlusion slides one patch-sized
window per patch). Gradient methods differentiate the softmax probability of the target class (ours: the quantity
the deletion and insertion curves measure), with respect to the word embeddings (text: the same as Captum's
`LayerIntegratedGradients` on the embedding layer) or the normalised pixels (images).

Captum (`pip install -e ".[interpret]"`) is needed for `ig`, `saliency`, `input_x_gradient` and `occlusion` only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

__all__ = [
    "ATTRIBUTION_METHODS",
    "Attribution",
    "BaseAttribution",
    "PassCounter",
    "get_attribution_method",
    "register_attribution_method",
    "require_captum",
]

ATTRIBUTION_METHODS: dict[str, type[BaseAttribution]] = {}

CAPTUM_HINT = 'pip install -e ".[interpret]"'  # or `pip install captum`


def register_attribution_method(name: str) -> Callable[[type[BaseAttribution]], type[BaseAttribution]]:
    """Class decorator: makes an attribution method available under `name` (`get_attribution_method`, `--method`)."""

    def register(cls: type[BaseAttribution]) -> type[BaseAttribution]:
        if name in ATTRIBUTION_METHODS:
            raise ValueError(f"An attribution method named {name!r} is already registered.")
        cls.name = name
        ATTRIBUTION_METHODS[name] = cls
        return cls

    return register


def get_attribution_method(name: str, **settings: Any) -> BaseAttribution:
    """The registered method `name`, built with `settings` (e.g. `n_steps` for `ig`)."""
    if name not in ATTRIBUTION_METHODS:
        raise ValueError(f"Unknown attribution method {name!r}; choose one of {', '.join(ATTRIBUTION_METHODS)}.")
    return ATTRIBUTION_METHODS[name](**settings)


def require_captum():
    """`captum.attr`, or an `ImportError` naming the install command."""
    try:
        import captum.attr
    except ImportError:
        raise ImportError(
            f"This attribution method needs Captum, which is not installed: `{CAPTUM_HINT}` (or `pip install captum`)."
        ) from None
    return captum.attr


@dataclass
class Attribution:
    """Scores of one method for a batch.

    Args:
        method (`str`): the registered name.
        scores (`torch.Tensor` of shape `(batch, units)`): one score per text token or image patch (grid order,
            row by row); NaN where `mask` is False. Higher = more important for the target class (for signed methods
            a negative score argues against it).
        mask (`torch.Tensor` of shape `(batch, units)`, bool): the scored units (text: not padding, not special).
        signed (`bool`): whether scores carry a sign (q, ig, input_x_gradient, occlusion) or are magnitudes.
        target (`torch.Tensor` of shape `(batch,)`): the class whose probability was explained.
        probabilities (`torch.Tensor` of shape `(batch, classes)`): the model's probabilities on the input.
        grid_shape (`tuple[int, int]`, *optional*): images: (rows, cols) of the patch grid.
        cell_size (`tuple[int, int]`, *optional*): images: pixels (height, width) per patch.
        delta (`torch.Tensor`, *optional*): `ig`: Captum's convergence delta per sample (sum of attributions minus
            f(input) - f(baseline)).
    """

    method: str
    scores: torch.Tensor
    mask: torch.Tensor
    signed: bool
    target: torch.Tensor
    probabilities: torch.Tensor
    grid_shape: tuple[int, int] | None = None
    cell_size: tuple[int, int] | None = None
    delta: torch.Tensor | None = None

    def normalized(self) -> torch.Tensor:
        """Scores divided by each sample's largest |score|: in [-1, 1] (signed) or [0, 1], for pictures."""
        scale = self.scores.abs().nan_to_num(0.0).amax(-1, keepdim=True).clamp_min(1e-12)
        return self.scores / scale


class PassCounter:
    """Counts samples through the model's backbone: forward passes, and backward passes that reach its output.

    A hook on `model.base_model` (the backbone every forward, `token_importance` included, goes through) adds the
    batch size of each call; a gradient hook on its first output adds the batch size of each backward through it.

    ```python
    >>> with PassCounter(model) as passes:
    ...     method(model, inputs)
    >>> passes.forwards, passes.backwards  # samples x passes, e.g. 51 and 50 for ig with n_steps=50 on one input
    ```
    """

    def __init__(self, model: torch.nn.Module):
        self.module = getattr(model, "base_model", model)
        self.forwards = 0
        self.backwards = 0
        self._handle = None

    def _hook(self, module, args, kwargs, output) -> None:
        first = output[0] if isinstance(output, (tuple, list)) else next(iter(output.values()))
        self.forwards += first.shape[0]
        if first.requires_grad:
            first.register_hook(self._count_backward)

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backwards += grad.shape[0]

    def __enter__(self) -> PassCounter:
        self._handle = self.module.register_forward_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


class BaseAttribution:
    """One attribution method. Subclasses implement `_text` and `_image` (or raise for what they do not support).

    Calling the method: `method(model, inputs, target=None, baseline_token_id=None)`, where `inputs` is the
    tokenizer's or image processor's output for a batch (a text batch may hold `special_tokens_mask`, which marks the
    tokens left unscored; it is passed to the model only where its atom config asks for it).
    """

    name: ClassVar[str] = ""
    signed: ClassVar[bool] = False
    needs_captum: ClassVar[bool] = False

    def __call__(
        self,
        model: torch.nn.Module,
        inputs: Mapping[str, torch.Tensor],
        *,
        target: torch.Tensor | None = None,
        baseline_token_id: int | None = None,
    ) -> Attribution:
        if self.needs_captum:
            require_captum()
        inputs = dict(inputs)
        inputs.pop("labels", None)
        inputs.pop("offset_mapping", None)
        special = inputs.pop("special_tokens_mask", None)
        model_inputs = dict(inputs)
        atom_config = getattr(model.config, "atom_config", None)
        exclude = atom_config.get("exclude_special_tokens") if isinstance(atom_config, dict) else None
        if special is not None and (exclude or getattr(atom_config, "exclude_special_tokens", False)):
            model_inputs["special_tokens_mask"] = special
        probabilities = self._predict(model, model_inputs).float().softmax(-1)
        if target is None:
            target = probabilities.argmax(-1)
        target = torch.as_tensor(target, device=probabilities.device).long().reshape(-1)
        if "pixel_values" in inputs:
            scores, extra = self._image(model, model_inputs, target)
            rows, cols, cell = _image_grid(model, inputs["pixel_values"])
            mask = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
            grid_shape, cell_size = (rows, cols), cell
        elif "input_ids" in inputs:
            ids = inputs["input_ids"]
            mask = inputs.get("attention_mask", torch.ones_like(ids)).bool()
            if special is not None:
                mask = mask & ~special.to(mask.device).bool()
            scores, extra = self._text(model, model_inputs, target, mask, baseline_token_id)
            mask = mask & ~scores.isnan().to(mask.device)  # a method may leave more out (q: the atom's own mask)
            grid_shape = cell_size = None
        else:
            raise ValueError("Attribution needs `input_ids` (text) or `pixel_values` (images) in the inputs.")
        scores = scores.detach().float().cpu()
        mask = mask.cpu()
        return Attribution(
            method=self.name,
            scores=scores.masked_fill(~mask, float("nan")),
            mask=mask,
            signed=self.signed,
            target=target.cpu(),
            probabilities=probabilities.cpu(),
            grid_shape=grid_shape,
            cell_size=cell_size,
            delta=extra,
        )

    def _predict(self, model, inputs) -> torch.Tensor:
        """The logits on the input. Methods whose own forward gives them (q, attention) override this and keep what
        else that forward gives, so that they cost one forward in all."""
        with torch.no_grad():
            return model(**inputs).logits

    def _text(self, model, inputs, target, mask, baseline_token_id) -> tuple[torch.Tensor, Any]:
        raise ValueError(f"The {self.name!r} attribution is not available for text models.")

    def _image(self, model, inputs, target) -> tuple[torch.Tensor, Any]:
        raise ValueError(f"The {self.name!r} attribution is not available for image models.")


# -- helpers --------------------------------------------------------------------------------------------------------


def _image_grid(model, pixel_values: torch.Tensor) -> tuple[int, int, tuple[int, int]]:
    """(rows, cols, (cell height, cell width)) of a ViT-style patch grid over `pixel_values`."""
    patch = getattr(model.config, "patch_size", None)
    if patch is None:
        raise ValueError(
            f"{type(model).__name__} has no `config.patch_size`: image attributions here are per ViT patch (ViT, "
            "DeiT, DINOv2, ...)."
        )
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else tuple(patch)
    height, width = pixel_values.shape[-2:]
    return height // patch_h, width // patch_w, (patch_h, patch_w)


def _pool_patches(pixel_scores: torch.Tensor, rows: int, cols: int, cell: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) pixel attributions -> (B, rows*cols): summed over channels and each patch's pixels."""
    patch_h, patch_w = cell
    summed = pixel_scores.sum(1)[:, : rows * patch_h, : cols * patch_w]
    return summed.reshape(-1, rows, patch_h, cols, patch_w).sum((2, 4)).reshape(-1, rows * cols)


def _word_embeddings(model) -> torch.nn.Module:
    """The embedding layer whose output the model accepts as `inputs_embeds`, or a clear error."""
    try:
        layer = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        layer = None
    accepts = "inputs_embeds" in inspect.signature(model.forward).parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(model.forward).parameters.values()
    )
    if layer is None or not accepts:
        raise ValueError(
            f"Gradient attributions of a text model differentiate its input embeddings, but {type(model).__name__} "
            "has no `get_input_embeddings()` whose output its forward takes as `inputs_embeds`. Use "
            "`--method occlusion`, `attention`, `rollout` or `q` for this model."
        )
    return layer


class _Probability(torch.nn.Module):
    """f(x) = softmax(model(**{name: x, **rest})) for Captum, which batches x and the extra arguments itself."""

    def __init__(self, model, name: str, keys: list[str]):
        super().__init__()
        self.model, self.name, self.keys = model, name, keys

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return self.model(**{self.name: x, **dict(zip(self.keys, rest))}).logits.float().softmax(-1)


def _text_setup(model, inputs, mask, baseline_token_id):
    """Embeddings of the input, of the baseline (scored tokens replaced by `baseline_token_id`, special tokens and
    padding kept) and the forward function over embeddings."""
    layer = _word_embeddings(model)
    ids = inputs["input_ids"]
    if baseline_token_id is None:
        baseline_token_id = getattr(model.config, "pad_token_id", None)
    if baseline_token_id is None:
        raise ValueError(
            "Text attributions need a baseline token: pass `baseline_token_id` (the tokenizer's mask or pad token id)."
        )
    baseline_ids = ids.masked_fill(mask.to(ids.device), int(baseline_token_id))
    with torch.no_grad():
        embeds, baseline = layer(ids), layer(baseline_ids)
    keys = [k for k in inputs if k != "input_ids"]
    embeds = embeds.detach().requires_grad_()  # what Captum would set, without its warning
    return embeds, baseline, _Probability(model, "inputs_embeds", keys), tuple(inputs[k] for k in keys)


def _image_setup(model, inputs):
    pixels = inputs["pixel_values"].detach().clone().requires_grad_()
    keys = [k for k in inputs if k != "pixel_values"]
    return pixels, _Probability(model, "pixel_values", keys), tuple(inputs[k] for k in keys)


# -- methods --------------------------------------------------------------------------------------------------------


@register_attribution_method("q")
class SignedQAttribution(BaseAttribution):
    """Atom modeling's charge q in [-1, 1] (Eq. 6), from the same forward pass as the prediction (cost: 1 forward)."""

    signed = True
    transform = staticmethod(lambda q: q)

    def _predict(self, model, inputs):
        if not hasattr(model, "token_importance"):
            raise ValueError(
                f"{type(model).__name__} has no atom heads: q exists only for atom models (`with_atom`, AutoAtomModel "
                "on a folder trained with atom modeling). Use another --method for a plain model."
            )
        with torch.no_grad():
            importance = model.token_importance(**inputs)
        self._q = self.transform(importance.q).masked_fill(~importance.mask, float("nan"))
        return importance.logits

    def _text(self, model, inputs, target, mask, baseline_token_id):
        return self._q, None

    def _image(self, model, inputs, target):
        rows, cols, _ = _image_grid(model, inputs["pixel_values"])
        return self._q[:, -rows * cols :], None


@register_attribution_method("abs_q")
class AbsQAttribution(SignedQAttribution):
    """|q|: how much a token makes its sample distinguishable, whatever the sign."""

    signed = False
    transform = staticmethod(torch.abs)


class _AttentionMethod(BaseAttribution):
    """Reads the attention weights of the prediction's own forward pass (1 forward in all)."""

    def _predict(self, model, inputs):
        # SDPA and flash attention return no weights: switch to eager attention for this pass only (same outputs)
        previous = getattr(model.config, "_attn_implementation", None)
        switch = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
        if switch:
            model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                outputs = model(**inputs, output_attentions=True)
        finally:
            if switch:
                model.set_attn_implementation(previous)
        attentions = getattr(outputs, "attentions", None)
        if not attentions or attentions[0] is None:
            raise ValueError(
                f'{type(model).__name__} returned no attention weights: load it with `attn_implementation="eager"` '
                "(SDPA and flash attention do not return them)."
            )
        self._attentions = tuple(a.float() for a in attentions)
        return outputs.logits

    def _text(self, model, inputs, target, mask, baseline_token_id):
        return self._image(model, inputs, target)


def _query_position(model, inputs) -> torch.Tensor:
    """The position the classifier reads: 0 (the class token) for encoders and ViTs, the last non-padding token for
    decoders (transformers' sequence-classification pooling)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    ids = inputs.get("input_ids", inputs.get("pixel_values"))
    batch = ids.shape[0]
    model_type = model.config.model_type  # BERT also has a causal-LM head class: decoders are causal-only types
    decoder = model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    if decoder and "attention_mask" in inputs:
        mask = inputs["attention_mask"]
        positions = torch.arange(mask.shape[1], device=mask.device)
        return (positions * mask.bool()).amax(-1)
    return torch.zeros(batch, dtype=torch.long, device=ids.device)


def _read_row(matrix: torch.Tensor, query: torch.Tensor, model, inputs) -> torch.Tensor:
    """Row `query` of (B, N, N) per sample; images: the patch columns only."""
    row = matrix[torch.arange(matrix.shape[0]), query.to(matrix.device)]
    if "pixel_values" in inputs:
        rows, cols, _ = _image_grid(model, inputs["pixel_values"])
        row = row[:, -rows * cols :]
    return row


@register_attribution_method("attention")
class AttentionAttribution(_AttentionMethod):
    """The last layer's attention from the class token (or a decoder's last token), averaged over heads (1 forward)."""

    def _image(self, model, inputs, target):
        last = self._attentions[-1].mean(1)
        return _read_row(last, _query_position(model, inputs), model, inputs), None


@register_attribution_method("rollout")
class RolloutAttribution(_AttentionMethod):
    """Attention rollout (Abnar & Zuidema, ACL 2020): per layer the head-averaged attention plus the identity (the
    residual stream), rows renormalised, multiplied from the first layer to the last; the class token's row."""

    def _image(self, model, inputs, target):
        rollout = None
        for attention in self._attentions:
            mixed = 0.5 * attention.mean(1) + 0.5 * torch.eye(attention.shape[-1], device=attention.device)
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed if rollout is None else mixed @ rollout
        return _read_row(rollout, _query_position(model, inputs), model, inputs), None


@register_attribution_method("random")
class RandomAttribution(BaseAttribution):
    """Uniform random scores (seeded): the floor every method must beat."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def _text(self, model, inputs, target, mask, baseline_token_id):
        return torch.rand(mask.shape, generator=self.generator), None

    def _image(self, model, inputs, target):
        rows, cols, _ = _image_grid(model, inputs["pixel_values"])
        return torch.rand((inputs["pixel_values"].shape[0], rows * cols), generator=self.generator), None


@register_attribution_method("ig")
class IntegratedGradientsAttribution(BaseAttribution):
    """Captum's `IntegratedGradients` (Sundararajan et al., ICML 2017), Gauss-Legendre, `n_steps` points.

    Baseline: text: every scored token replaced by `baseline_token_id` (the [MASK] token when the tokenizer has one,
    else pad), special tokens kept; images: all-zero normalised pixels (the dataset's mean image). Cost: `n_steps`
    forwards and backwards, plus 1 forward for the prediction and 2 for the convergence delta.
    """

    signed = True
    needs_captum = True

    def __init__(self, n_steps: int = 50, internal_batch_size: int | None = None):
        if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
            raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}.")
        self.n_steps, self.internal_batch_size = n_steps, internal_batch_size

    def _run(self, forward, x, baseline, extra, target):
        ig = require_captum().IntegratedGradients(forward)
        return ig.attribute(
            x,
            baselines=baseline,
            target=target,
            additional_forward_args=extra or None,
            n_steps=self.n_steps,
            internal_batch_size=self.internal_batch_size,
            return_convergence_delta=True,
        )

    def _text(self, model, inputs, target, mask, baseline_token_id):
        embeds, baseline, forward, extra = _text_setup(model, inputs, mask, baseline_token_id)
        attributions, delta = self._run(forward, embeds, baseline, extra, target)
        return attributions.sum(-1), delta.detach().cpu()

    def _image(self, model, inputs, target):
        pixels, forward, extra = _image_setup(model, inputs)
        attributions, delta = self._run(forward, pixels, torch.zeros_like(pixels), extra, target)
        rows, cols, cell = _image_grid(model, pixels)
        return _pool_patches(attributions, rows, cols, cell), delta.detach().cpu()


@register_attribution_method("saliency")
class SaliencyAttribution(BaseAttribution):
    """Captum's `Saliency` (Simonyan et al., 2014): |d p_target / d input|, summed over the embedding dimension
    (text) or a patch's pixels and channels (images). Cost: 1 forward and 1 backward."""

    needs_captum = True

    def _text(self, model, inputs, target, mask, baseline_token_id):
        embeds, _, forward, extra = _text_setup(model, inputs, mask, baseline_token_id)
        grads = (
            require_captum().Saliency(forward).attribute(embeds, target=target, additional_forward_args=extra or None)
        )
        return grads.sum(-1), None

    def _image(self, model, inputs, target):
        pixels, forward, extra = _image_setup(model, inputs)
        grads = (
            require_captum().Saliency(forward).attribute(pixels, target=target, additional_forward_args=extra or None)
        )
        rows, cols, cell = _image_grid(model, pixels)
        return _pool_patches(grads, rows, cols, cell), None


@register_attribution_method("input_x_gradient")
class InputXGradientAttribution(BaseAttribution):
    """Captum's `InputXGradient` (Shrikumar et al., 2016): input * gradient, summed per token / patch (signed).
    Text: (embedding - baseline embedding) * gradient, so that a token equal to the baseline scores 0. Cost: 1 forward
    and 1 backward."""

    signed = True
    needs_captum = True

    def _text(self, model, inputs, target, mask, baseline_token_id):
        embeds, baseline, forward, extra = _text_setup(model, inputs, mask, baseline_token_id)
        # InputXGradient of the shifted input x - x0 through f(x0 + .): Captum's method relative to the baseline
        shifted = _Shifted(forward, baseline)
        scores = (
            require_captum()
            .InputXGradient(shifted)
            .attribute(embeds - baseline, target=target, additional_forward_args=extra or None)
        )
        return scores.sum(-1), None

    def _image(self, model, inputs, target):
        pixels, forward, extra = _image_setup(model, inputs)
        scores = (
            require_captum()
            .InputXGradient(forward)
            .attribute(pixels, target=target, additional_forward_args=extra or None)
        )
        rows, cols, cell = _image_grid(model, pixels)
        return _pool_patches(scores, rows, cols, cell), None


class _Shifted(torch.nn.Module):
    def __init__(self, forward, offset: torch.Tensor):
        super().__init__()
        self.inner, self.offset = forward, offset

    def forward(self, x, *rest):
        return self.inner(x + self.offset, *rest)


@register_attribution_method("occlusion")
class OcclusionAttribution(BaseAttribution):
    """Occlusion (Zeiler & Fergus, 2014) with Captum: p_target(x) - p_target(x with one unit replaced).

    Text: Captum's `FeatureAblation` with one feature per scored token, replaced by the baseline token's embedding
    (special tokens and padding are one extra feature that is ablated once; its score is dropped). Images: Captum's
    `Occlusion` with a patch-sized window and stride, the patch set to 0 (the normalised mean). Cost: one forward per
    token / patch (+1), in batches of `perturbations_per_eval`.
    """

    signed = True
    needs_captum = True

    def __init__(self, perturbations_per_eval: int = 32):
        self.perturbations_per_eval = perturbations_per_eval

    def _text(self, model, inputs, target, mask, baseline_token_id):
        embeds, baseline, forward, extra = _text_setup(model, inputs, mask, baseline_token_id)
        scores = torch.zeros(mask.shape, device=embeds.device)
        ablation = require_captum().FeatureAblation(forward)
        for i in range(embeds.shape[0]):  # feature masks differ per sample
            scored = mask[i].to(embeds.device)
            feature = torch.full(scored.shape, int(scored.sum()), dtype=torch.long, device=embeds.device)
            feature[scored] = torch.arange(int(scored.sum()), device=embeds.device)
            result = ablation.attribute(
                embeds[i : i + 1],
                baselines=baseline[i : i + 1],
                target=target[i : i + 1],
                additional_forward_args=tuple(t[i : i + 1] for t in extra) or None,
                feature_mask=feature.reshape(1, -1, 1).expand_as(embeds[i : i + 1]),
                perturbations_per_eval=self.perturbations_per_eval,
            )
            scores[i] = result[0, :, 0]
        return scores, None

    def _image(self, model, inputs, target):
        pixels, forward, extra = _image_setup(model, inputs)
        rows, cols, cell = _image_grid(model, pixels)
        window = (pixels.shape[1], *cell)
        result = (
            require_captum()
            .Occlusion(forward)
            .attribute(
                pixels,
                sliding_window_shapes=window,
                strides=window,
                baselines=0.0,
                target=target,
                additional_forward_args=extra or None,
                perturbations_per_eval=self.perturbations_per_eval,
            )
        )
        # each pixel of a patch carries the patch's drop; the mean over the cell (one channel) gives it back
        patch_h, patch_w = cell
        cropped = result[:, 0, : rows * patch_h, : cols * patch_w]
        return cropped.reshape(-1, rows, patch_h, cols, patch_w).mean((2, 4)).reshape(-1, rows * cols), None
