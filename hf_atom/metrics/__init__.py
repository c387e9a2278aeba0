# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The project's evaluation metrics, in one place.

- `hf_atom.metrics.modes`: mode collapse of generative models (the VEEGAN / PacGAN protocol): modes captured,
  high-quality share and reverse KL on the 2D mixtures, modes and KL on stacked MNIST. Pure torch.
- `hf_atom.metrics.text`: diversity of generated text: pooled distinct-n and self-BLEU (nltk).

Each metric is also a local `evaluate` module (`evaluate.load(hf_atom.metrics.evaluate_module("self_bleu"))`, which
works offline: the module is a file of this package, not a Hub id). `hf_atom.mode_metrics` and `hf_atom.text_metrics`
remain as aliases of the two modules.
"""

from __future__ import annotations

import os

from .modes import (
    MIXTURES,
    MixtureSpec,
    kl_to_uniform,
    mixture_mode_metrics,
    mixture_spec,
    sample_mixture,
    stacked_mnist_mode_metrics,
)
from .text import distinct_n, ngrams, self_bleu, word_tokenize

__all__ = [
    "EVALUATE_MODULES",
    "MIXTURES",
    "MixtureSpec",
    "distinct_n",
    "evaluate_module",
    "kl_to_uniform",
    "mixture_mode_metrics",
    "mixture_spec",
    "ngrams",
    "sample_mixture",
    "self_bleu",
    "stacked_mnist_mode_metrics",
    "word_tokenize",
]

_EVALUATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluate_modules")

# evaluate module name -> the function it wraps (the module returns the same numbers: tested).
EVALUATE_MODULES: dict[str, str] = {
    "mixture_modes": "hf_atom.metrics.modes.mixture_mode_metrics",
    "stacked_mnist_modes": "hf_atom.metrics.modes.stacked_mnist_mode_metrics",
    "distinct_n": "hf_atom.metrics.text.distinct_n",
    "self_bleu": "hf_atom.metrics.text.self_bleu",
}


def evaluate_module(name: str) -> str:
    """The local path of one metric's `evaluate` module, for `evaluate.load(path)`.

    Args:
        name (`str`): one of `EVALUATE_MODULES`: `"mixture_modes"`, `"stacked_mnist_modes"`, `"distinct_n"` or
            `"self_bleu"`.

    Returns:
        `str`: the folder that holds `<name>.py`.

    Example:

    ```python
    >>> import evaluate
    >>> from hf_atom.metrics import evaluate_module
    >>> distinct = evaluate.load(evaluate_module("distinct_n"))
    >>> distinct.compute(predictions=["a b a", "b c"], n=1)
    {'distinct_1': 0.6}
    ```
    """
    if name not in EVALUATE_MODULES:
        raise ValueError(f"Unknown metric {name!r}; the evaluate modules are {sorted(EVALUATE_MODULES)}.")
    return os.path.join(_EVALUATE_DIR, name)
