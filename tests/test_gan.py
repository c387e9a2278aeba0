"""GANs on mode-collapse benchmarks: the metrics on hand-made samples, the recipes' pieces and smoke runs."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch

from hf_atom.mode_metrics import (
    kl_to_uniform,
    mixture_mode_metrics,
    mixture_spec,
    sample_mixture,
    stacked_mnist_mode_metrics,
)

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
sys.path.insert(0, RECIPES)

# --------------------------------------------------------------------------------------------------------
# Benchmark definitions
# --------------------------------------------------------------------------------------------------------


def test_ring_has_eight_distinct_centres_on_the_unit_circle():
    spec = mixture_spec("ring")
    assert spec.num_modes == 8 and spec.std == 0.01
    assert torch.allclose(spec.centres.norm(dim=1), torch.ones(8, dtype=torch.float64))
    # The linspace(0, 2 pi, 8) mistake would put two centres on one spot: all pairwise gaps must be the chord 2 sin(pi/8).
    gaps = torch.pdist(spec.centres)
    assert gaps.min() == pytest.approx(2 * math.sin(math.pi / 8))


def test_grid_is_five_by_five_with_spacing_two():
    spec = mixture_spec("grid")
    assert spec.num_modes == 25 and spec.std == 0.05
    assert sorted(set(spec.centres[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    assert torch.pdist(spec.centres).min() == pytest.approx(2.0)


def test_unknown_mixture_is_refused():
    with pytest.raises(ValueError, match="ring"):
        mixture_spec("spiral")


def test_real_samples_score_as_perfect():
    # Real data: every mode, ~99.7 % within 3 sigma (chi distribution with 2 d.o.f.: 1 - exp(-4.5) = 98.9 %).
    spec = mixture_spec("grid")
    samples = sample_mixture(spec, 20_000, torch.Generator().manual_seed(0))
    metrics = mixture_mode_metrics(samples, spec)
    assert metrics["modes"] == 25
    assert metrics["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert metrics["reverse_kl"] < 0.005


# --------------------------------------------------------------------------------------------------------
# Metrics on hand-made samples
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_all_modes_evenly_covered_gives_all_modes_and_zero_kl(name):
    spec = mixture_spec(name)
    samples = spec.centres.repeat(4, 1)  # 4 exact hits per centre
    metrics = mixture_mode_metrics(samples, spec)
    assert metrics["modes"] == spec.num_modes
    assert metrics["high_quality"] == 1.0
    assert metrics["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["mode_counts"] == [4] * spec.num_modes


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_everything_on_one_mode_gives_one_mode_and_log_k(name):
    spec = mixture_spec(name)
    samples = spec.centres[3].repeat(50, 1) + 0.5 * spec.std  # within 3 sigma of centre 3
    metrics = mixture_mode_metrics(samples, spec)
    assert metrics["modes"] == 1
    assert metrics["high_quality"] == 1.0
    assert metrics["reverse_kl"] == pytest.approx(math.log(spec.num_modes))


def test_samples_far_from_every_centre_are_not_high_quality():
    spec = mixture_spec("grid")
    samples = spec.centres + 1.0  # halfway between centres: 1.41 away from the nearest, 28 sigma
    metrics = mixture_mode_metrics(samples, spec)
    assert metrics["modes"] == 0 and metrics["high_quality"] == 0.0
    assert math.isnan(metrics["reverse_kl"])  # no high-quality histogram to compare


def test_quality_threshold_is_three_sigma_and_share_counts_all_points():
    spec = mixture_spec("ring")
    centre = spec.centres[0]
    inside = centre + torch.tensor([2.9 * spec.std, 0.0], dtype=torch.float64)
    outside = centre + torch.tensor([3.1 * spec.std, 0.0], dtype=torch.float64)
    metrics = mixture_mode_metrics(torch.stack([inside, outside, outside, outside]), spec)
    assert metrics["high_quality"] == 0.25 and metrics["modes"] == 1


def test_reverse_kl_matches_a_plain_formula_on_an_uneven_histogram():
    spec = mixture_spec("ring")
    counts = [5, 3, 2, 0, 0, 0, 0, 0]
    samples = torch.cat([spec.centres[i].repeat(c, 1) for i, c in enumerate(counts) if c])
    p = [c / 10 for c in counts if c]
    expected = sum(pi * math.log(pi / (1 / 8)) for pi in p)
    assert mixture_mode_metrics(samples, spec)["reverse_kl"] == pytest.approx(expected)
    assert kl_to_uniform(torch.tensor(counts)) == pytest.approx(expected)


def test_stacked_mnist_modes_and_kl():
    # Every one of the 1000 triples once: 1000 modes, KL 0.
    digits = torch.arange(1000)
    labels = torch.stack([digits // 100, digits // 10 % 10, digits % 10], dim=1)
    metrics = stacked_mnist_mode_metrics(labels)
    assert metrics["modes"] == 1000 and metrics["kl"] == pytest.approx(0.0, abs=1e-12)
    # Two triples that differ only in channel order are different modes; one triple alone gives log 1000.
    assert stacked_mnist_mode_metrics(torch.tensor([[1, 2, 3], [3, 2, 1]]))["modes"] == 2
    assert stacked_mnist_mode_metrics(torch.tensor([[7, 7, 7]] * 9))["kl"] == pytest.approx(math.log(1000))
    with pytest.raises(ValueError, match="channel_labels"):
        stacked_mnist_mode_metrics(torch.tensor([[10, 0, 0]]))
