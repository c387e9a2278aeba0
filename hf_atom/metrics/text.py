# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Diversity metrics for generated text: pooled distinct-n (Li et al., 2016) and self-BLEU (Zhu et al., 2018).

No maintained package ships either metric (evaluate, torchmetrics and sacrebleu do not), so they are a few lines over
nltk, the library Texygen's reference code uses (each is also a local `evaluate` module: `hf_atom.metrics.evaluate_module`).
Diversity is only meaningful next to quality (docs/DESIGN.md, D8): see `benchmarks/generation_eval.py`, which reports
both over sampling temperatures.

Tokenization. Texygen tokenizes with `nltk.word_tokenize`, which first splits sentences with the pretrained English
Punkt model (the `punkt_tab` data package, a download) and then runs `NLTKWordTokenizer` (the improved Treebank
tokenizer) on each sentence. `word_tokenize` below is the same pipeline with an untrained `PunktSentenceTokenizer`
(ours): it needs no download and differs from the pretrained model only in the learned abbreviation and collocation
lists, i.e. where a period after an abbreviation ("Mr.", "e.g.") ends a sentence. For single poem verses that
changes nothing in practice; nltk's own documented example of `word_tokenize` is reproduced exactly (tested).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

__all__ = ["distinct_n", "ngrams", "self_bleu", "word_tokenize"]

Tokenizer = Callable[[str], list[str]]


def _nltk():
    try:
        from nltk.tokenize import NLTKWordTokenizer
        from nltk.tokenize.punkt import PunktSentenceTokenizer
        from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "hf_atom.metrics.text needs nltk: `pip install nltk` (or `pip install hf_atom[recipes]`)."
        ) from error
    return NLTKWordTokenizer, PunktSentenceTokenizer, SmoothingFunction, sentence_bleu


_TOKENIZERS: dict[str, object] = {}


def word_tokenize(text: str) -> list[str]:
    """`nltk.word_tokenize` without the Punkt download: untrained Punkt sentences, then NLTK's Treebank-style words.

    Example:
        >>> word_tokenize("Good muffins cost $3.88\\nin New York.  Please buy me\\ntwo of them.\\n\\nThanks.")
        ['Good', 'muffins', 'cost', '$', '3.88', 'in', 'New', 'York', '.', 'Please', 'buy', 'me', 'two', 'of', 'them', '.', 'Thanks', '.']
    """
    if not _TOKENIZERS:
        word_cls, sentence_cls, _, _ = _nltk()
        _TOKENIZERS["word"], _TOKENIZERS["sentence"] = word_cls(), sentence_cls()
    words, sentences = _TOKENIZERS["word"], _TOKENIZERS["sentence"]
    return [token for sentence in sentences.tokenize(text) for token in words.tokenize(sentence)]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The contiguous n-grams of one token sequence (none when it has fewer than n tokens)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _tokenized(texts: Iterable[str], tokenize: Tokenizer | None) -> list[list[str]]:
    if isinstance(texts, str):
        raise TypeError("Pass a list of texts, not a single string.")
    tokenize = word_tokenize if tokenize is None else tokenize
    return [tokenize(text) for text in texts]


def distinct_n(texts: Iterable[str], n: int, tokenize: Tokenizer | None = None) -> float:
    """Distinct-n of Li et al. (2016), pooled: distinct n-grams over ALL texts / total number of tokens of all texts.

    This is the corpus-level definition (the set's n-grams are pooled before counting), not the average of a
    per-sentence ratio that the `Distinct-N` package computes; the two give different numbers.

    Args:
        texts (`Iterable[str]`): the generated texts of one set (e.g. every sample of a model at one temperature).
        n (`int`): the n-gram order (1 and 2 are customary).
        tokenize (`Callable[[str], list[str]]`, *optional*): defaults to `word_tokenize`.

    Returns:
        `float`: in [0, 1]; 0 for a set without tokens.
    """
    tokenized = _tokenized(texts, tokenize)
    total = sum(len(tokens) for tokens in tokenized)
    if total == 0:
        return 0.0
    distinct = {gram for tokens in tokenized for gram in ngrams(tokens, n)}
    return len(distinct) / total


def self_bleu(
    texts: Sequence[str],
    max_n: int = 3,
    tokenize: Tokenizer | None = None,
    max_hypotheses: int | None = None,
    seed: int = 0,
) -> float:
    """Self-BLEU (Zhu et al., 2018, Texygen): each text's BLEU against all the other texts as references, averaged.

    nltk's `sentence_bleu` with uniform weights over 1..`max_n`-grams and `SmoothingFunction().method1`, as in
    Texygen's code (whose default is `max_n = 3`). Lower means more diverse. Identical texts of at least `max_n`
    tokens score 1; texts sharing no word score 0.

    Args:
        texts (`Sequence[str]`): at least two texts.
        max_n (`int`): the highest n-gram order.
        tokenize (`Callable[[str], list[str]]`, *optional*): defaults to `word_tokenize`.
        max_hypotheses (`int`, *optional*): score only this many texts, drawn at random with `seed`, each still
            against ALL the other texts: an unbiased estimate of the full average at a fraction of the cost (the
            full average costs O(len(texts)^2) BLEU reference passes: ~40 s for 416 verses on one CPU core).

    Returns:
        `float`: in [0, 1].
    """
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}.")
    tokenized = _tokenized(texts, tokenize)
    if len(tokenized) < 2:
        raise ValueError(f"self-BLEU compares each text with the others: give at least 2 texts, got {len(tokenized)}.")
    _, _, smoothing_cls, sentence_bleu = _nltk()
    smoothing = smoothing_cls().method1
    weights = (1.0 / max_n,) * max_n
    indices = list(range(len(tokenized)))
    if max_hypotheses is not None and max_hypotheses < len(indices):
        if max_hypotheses < 1:
            raise ValueError(f"max_hypotheses must be >= 1 (or None for all), got {max_hypotheses}.")
        indices = sorted(random.Random(seed).sample(indices, max_hypotheses))
    scores = []
    for i in indices:
        hypothesis = tokenized[i]
        references = tokenized[:i] + tokenized[i + 1 :]
        scores.append(sentence_bleu(references, hypothesis, weights=weights, smoothing_function=smoothing))
    return float(sum(scores) / len(scores))
