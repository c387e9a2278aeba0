"""Text diversity metrics on hand-made texts with hand-computed values."""

import math

import pytest

from hf_atom.metrics import distinct_n, ngrams, self_bleu, word_tokenize


def test_word_tokenize_reproduces_nltk_documented_example():
    # The example of nltk.word_tokenize's documentation, with its documented output (needs no Punkt download).
    text = "Good muffins cost $3.88\nin New York.  Please buy me\ntwo of them.\n\nThanks."
    assert word_tokenize(text) == (
        ["Good", "muffins", "cost", "$", "3.88", "in", "New", "York", ".", "Please", "buy", "me", "two", "of"]
        + ["them", ".", "Thanks", "."]
    )


def test_word_tokenize_on_verses():
    assert word_tokenize("and that is why, the lonesome day,") == [
        "and",
        "that",
        "is",
        "why",
        ",",
        "the",
        "lonesome",
        "day",
        ",",
    ]
    # Treebank conventions: contractions and quotes split as in nltk.word_tokenize
    assert word_tokenize('he said, "don\'t go."') == ["he", "said", ",", "``", "do", "n't", "go", ".", "''"]
    assert word_tokenize("in these peaceful shades--") == ["in", "these", "peaceful", "shades", "--"]


def test_ngrams():
    assert ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert ngrams(["a"], 2) == []
    with pytest.raises(ValueError, match="n must be >= 1"):
        ngrams(["a"], 0)


def test_distinct_n_hand_computed():
    texts = ["a b c d", "a b c e"]
    # 8 tokens; unigrams {a, b, c, d, e}; bigrams {ab, bc, cd, ce}
    assert distinct_n(texts, 1, tokenize=str.split) == pytest.approx(5 / 8)
    assert distinct_n(texts, 2, tokenize=str.split) == pytest.approx(4 / 8)
    # pooled over the set, not a mean of per-text ratios (which would be 1.0 for unigrams here)
    assert distinct_n(["a a", "b"], 1, tokenize=str.split) == pytest.approx(2 / 3)
    assert distinct_n([], 1) == 0.0 and distinct_n([""], 2) == 0.0


def test_identical_samples_minimal_distinct_and_self_bleu_one():
    same = ["the night is dark and still"] * 4
    different = [
        "the night is dark and still",
        "a river sings beneath the moon",
        "green hills wake to morning light",
        "my heart grows cold with winter",
    ]
    # identical: distinct n-grams are those of one text, over 4x its tokens -> the minimum for this length
    assert distinct_n(same, 1) == pytest.approx(6 / 24)
    assert distinct_n(same, 2) == pytest.approx(5 / 24)
    assert self_bleu(same) == pytest.approx(1.0)
    assert distinct_n(different, 1) > distinct_n(same, 1) and distinct_n(different, 2) > distinct_n(same, 2)
    assert self_bleu(different) < 0.5 * self_bleu(same)


def test_self_bleu_hand_computed():
    # "a b c d" vs reference "a b c e": p1 = 3/4, p2 = 2/3, equal lengths (no brevity penalty); symmetric.
    expected = math.exp(0.5 * math.log(3 / 4) + 0.5 * math.log(2 / 3))
    assert self_bleu(["a b c d", "a b c e"], max_n=2, tokenize=str.split) == pytest.approx(expected)
    # three texts: each is scored against the two others (multi-reference clipping), then averaged
    texts = ["a b", "a c", "d e"]
    # "a b" vs {"a c", "d e"}: p1 = 1/2; likewise "a c"; "d e" vs {"a b", "a c"}: 0 -> BLEU 0
    assert self_bleu(texts, max_n=1, tokenize=str.split) == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert self_bleu(["x y z", "a b c"], tokenize=str.split) == 0.0


def test_self_bleu_subset_of_hypotheses():
    texts = ["a b", "a c", "d e", "d f", "g h"]
    full = self_bleu(texts, max_n=1, tokenize=str.split)
    assert self_bleu(texts, max_n=1, tokenize=str.split, max_hypotheses=10) == full
    # per-text scores: 1/2, 1/2, 1/2, 1/2, 0; any 2-subset averages one of {1/2, 1/4}, always against all others
    subset = self_bleu(texts, max_n=1, tokenize=str.split, max_hypotheses=2, seed=3)
    assert subset in (pytest.approx(0.5), pytest.approx(0.25))
    assert self_bleu(texts, max_n=1, tokenize=str.split, max_hypotheses=2, seed=3) == subset
    with pytest.raises(ValueError, match="max_hypotheses must be >= 1"):
        self_bleu(texts, max_hypotheses=0)


def test_self_bleu_errors():
    with pytest.raises(ValueError, match="at least 2 texts"):
        self_bleu(["only one"])
    with pytest.raises(ValueError, match="max_n must be >= 1"):
        self_bleu(["a", "b"], max_n=0)
    with pytest.raises(TypeError, match="list of texts"):
        distinct_n("a single string", 1)
