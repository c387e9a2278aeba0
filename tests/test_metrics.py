"""hf_atom.metrics: one home for the metrics, the old module paths kept, and each metric as a local evaluate module."""

import os
import pickle

import evaluate
import pytest
import torch

import hf_atom
from hf_atom import metrics
from hf_atom.metrics import evaluate_module

TEXTS = [
    "the quiet river runs to the sea",
    "the quiet river sleeps",
    "a storm of bright leaves",
    "the sea runs quiet and deep",
    "bright leaves fall on the river",
]


def test_old_module_paths_are_aliases_of_the_metrics_package():
    assert hf_atom.mode_metrics.mixture_mode_metrics is metrics.mixture_mode_metrics
    assert hf_atom.mode_metrics.MixtureSpec is metrics.MixtureSpec
    assert hf_atom.text_metrics.self_bleu is metrics.self_bleu
    assert set(hf_atom.mode_metrics.__all__) <= set(metrics.__all__)
    assert set(hf_atom.text_metrics.__all__) <= set(metrics.__all__)


def test_pickles_made_under_the_old_module_path_still_load():
    spec = metrics.mixture_spec("ring")
    old = pickle.dumps(spec, protocol=0).replace(b"hf_atom.metrics.modes", b"hf_atom.mode_metrics")
    assert b"hf_atom.mode_metrics" in old
    again = pickle.loads(old)
    assert again.name == "ring" and torch.equal(again.centres, spec.centres)


def test_every_listed_evaluate_module_is_a_file():
    for name in metrics.EVALUATE_MODULES:
        assert os.path.isfile(os.path.join(evaluate_module(name), f"{name}.py")), name
    with pytest.raises(ValueError, match="Unknown metric 'bleu'; the evaluate modules are"):
        evaluate_module("bleu")


def _load(name: str, *args):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # conftest: a local module must load without the Hub
    return evaluate.load(evaluate_module(name), *args)


@pytest.mark.parametrize("mixture", ["ring", "grid"])
def test_mixture_modes_module_gives_the_functions_numbers(mixture):
    spec = metrics.mixture_spec(mixture)
    generator = torch.Generator().manual_seed(0)
    # Real points on part of the modes plus a few far-off ones: modes, high quality and reverse KL all non-trivial.
    samples = metrics.sample_mixture(spec, 300, generator).double()
    samples = torch.cat([samples[samples[:, 0] > -0.5], torch.full((7, 2), 9.0, dtype=torch.float64)])
    want = metrics.mixture_mode_metrics(samples, spec)
    assert 1 < want["modes"] < spec.num_modes and 0 < want["high_quality"] < 1 and want["reverse_kl"] > 0
    got = _load("mixture_modes", mixture).compute(predictions=samples.tolist())
    assert got == want
    by_kwarg = _load("mixture_modes").compute(predictions=samples.tolist(), mixture=mixture, quality_threshold=1.0)
    assert by_kwarg == metrics.mixture_mode_metrics(samples, spec, quality_threshold=1.0)
    with pytest.raises(ValueError, match="Name the mixture"):
        _load("mixture_modes").compute(predictions=samples.tolist())


def test_stacked_mnist_modes_module_gives_the_functions_numbers():
    labels = torch.randint(0, 10, (200, 3), generator=torch.Generator().manual_seed(1))
    want = metrics.stacked_mnist_mode_metrics(labels)
    assert 100 < want["modes"] < 200
    assert _load("stacked_mnist_modes").compute(predictions=labels.tolist()) == want


@pytest.mark.parametrize("n", [1, 2])
def test_distinct_n_module_gives_the_functions_numbers(n):
    want = metrics.distinct_n(TEXTS, n)
    assert 0 < want < 1
    assert _load("distinct_n").compute(predictions=TEXTS, n=n) == {f"distinct_{n}": want}


def test_self_bleu_module_gives_the_functions_numbers():
    want = metrics.self_bleu(TEXTS, 3)
    assert 0 < want < 1
    module = _load("self_bleu")
    assert module.compute(predictions=TEXTS) == {"self_bleu": want}
    subset = metrics.self_bleu(TEXTS, 2, max_hypotheses=3, seed=4)
    assert subset != want
    assert module.compute(predictions=TEXTS, max_n=2, max_hypotheses=3, seed=4) == {"self_bleu": subset}
