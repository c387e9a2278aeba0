"""GANs on mode-collapse benchmarks: the metrics on hand-made samples, the recipes' pieces and smoke runs."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch

import hf_atom
from hf_atom.metrics import (
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


# --------------------------------------------------------------------------------------------------------
# Recipe pieces
# --------------------------------------------------------------------------------------------------------


def test_pack_concatenates_consecutive_samples():
    from _gan_common import pack

    x = torch.arange(12.0).view(6, 2)
    packed = pack(x, 3)
    assert packed.shape == (2, 6)
    assert torch.equal(packed[1], torch.tensor([6.0, 7.0, 8.0, 9.0, 10.0, 11.0]))
    images = torch.randn(4, 3, 5, 5)
    assert torch.equal(pack(images, 2)[1, 3:], images[3])  # channels of the 2nd sample follow the 1st's
    assert pack(x, 1) is x


def test_gan_losses_match_their_formulas():
    from _gan_common import discriminator_loss, generator_loss

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sig = torch.sigmoid
    expected_d = -(sig(real).log().mean() + (1 - sig(fake)).log().mean())
    assert discriminator_loss(real, fake) == pytest.approx(float(expected_d), rel=1e-6)
    assert generator_loss(fake) == pytest.approx(float(-sig(fake).log().mean()), rel=1e-6)


def test_mixture_networks_follow_the_protocol_shapes():
    from _gan_networks import MixtureDiscriminator, MixtureGenerator

    generator = MixtureGenerator(2, 400, 4)
    out, hidden = generator(torch.randn(5, 2), return_hidden=True)
    assert out.shape == (5, 2) and [h.shape for h in hidden] == [(5, 400)] * 4
    linears = [m for m in generator.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.bias is None for m in linears] == [True] * 4 + [False]  # no biases except the output layer
    discriminator = MixtureDiscriminator(2 * 3)  # pack 3
    assert discriminator(torch.randn(5, 6)).shape == (5,)
    assert discriminator.layers[0].linear.out_features == 200 * 5


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--dataset", "spiral"], "--dataset"),
        (["--method", "wgan"], "--method"),
        (["--method", "pacgan", "--pack_size", "0"], "--pack_size"),
        (["--method", "atom", "--atom_tokens", "7"], "must divide --hidden_size"),
        (["--atom_layer", "5"], "out of range"),
        (["--method", "atom", "--atom_weight", "-1"], "--atom_weight must be >= 0.0, got -1.0"),
        (["--method", "atom", "--atom_charge_target", "2"], "--atom_charge_target must be <= 1.0"),
    ],
)
def test_bad_mixture_arguments_fail_at_parsing(flags, message, tmp_path):
    from gan_mixture import parse

    with pytest.raises(ValueError, match=message):
        parse(["--output_dir", str(tmp_path), *flags])


def test_gan_atom_flags_are_atom_configs_fields(tmp_path, capsys):
    """The GAN recipes' atom settings are AtomConfig's own fields (type, choices, default, help), not copies."""
    import dataclasses
    import typing

    from _gan_common import NOT_GAN_SETTINGS, AtomGanArguments
    from gan_mixture import parse

    flags = {spec.name: spec for spec in dataclasses.fields(AtomGanArguments)}
    hints = typing.get_type_hints(AtomGanArguments)
    for spec in dataclasses.fields(hf_atom.AtomConfig):
        if spec.name in NOT_GAN_SETTINGS:
            assert "atom_" + spec.name not in flags
            continue
        flag = flags["atom_" + spec.name]
        assert (flag.default, flag.metadata["help"]) == (spec.default, spec.metadata["help"]), spec.name
        assert hints[flag.name] == typing.get_type_hints(hf_atom.AtomConfig)[spec.name], spec.name
    _, _, atom_args = parse(
        ["--output_dir", str(tmp_path), "--method", "atom", "--atom_token_reduction", "sum", "--atom_norm_ord", "inf"]
    )
    assert atom_args.atom_config == hf_atom.AtomConfig(token_reduction="sum", norm_ord=float("inf"))
    # Choices come from AtomConfig's Literal types, refused by argparse as HfArgumentParser refuses them.
    with pytest.raises(SystemExit):
        parse(["--output_dir", str(tmp_path), "--atom_step", "sideways"])
    assert "--atom_step: invalid choice: 'sideways'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--atom_head_type must be a registered head type"):
        parse(["--output_dir", str(tmp_path), "--atom_head_type", "nope"])


def test_bad_stacked_mnist_arguments_fail_at_parsing(tmp_path):
    from gan_stacked_mnist import parse

    with pytest.raises(ValueError, match="out of range"):
        parse(["--output_dir", str(tmp_path), "--atom_layer", "3"])
    with pytest.raises(ValueError, match="--pack_size"):
        parse(["--output_dir", str(tmp_path), "--pack_size", "0"])


# --------------------------------------------------------------------------------------------------------
# Smoke runs: every method on every dataset for a few steps
# --------------------------------------------------------------------------------------------------------

TINY_MIXTURE = ["--max_steps", "3", "--batch_size", "8", "--hidden_size", "16", "--disc_units", "8",
                "--num_train", "200", "--num_eval_samples", "50", "--num_threads", "1", "--disable_tqdm", "true",
                "--eval_steps", "2", "--atom_tokens", "4"]  # fmt: skip


@pytest.mark.parametrize("dataset", ["ring", "grid"])
@pytest.mark.parametrize("method", ["gan", "atom", "pacgan"])
def test_mixture_smoke_run(dataset, method, tmp_path):
    from _gan_networks import MixtureGenerator
    from gan_mixture import main

    out = tmp_path / "run"
    results = main(["--dataset", dataset, "--method", method, "--output_dir", str(out), *TINY_MIXTURE])
    saved = json.loads((out / "results.json").read_text())
    assert saved["final"]["num_samples"] == 50 and [h["step"] for h in saved["history"]] == [2, 3]
    assert set(saved["final"]) >= {"modes", "high_quality", "reverse_kl"}
    assert (out / "samples.png").stat().st_size > 0
    generator = MixtureGenerator.from_pretrained(str(out / "generator"))  # the checkpoint reloads
    assert generator.hidden[0][0].out_features == 16
    assert (out / "discriminator" / "model.safetensors").exists()
    assert (out / "atom_regularizer.safetensors").exists() == (method == "atom")
    if method == "atom":
        assert results["atom_stats_mean"]["atom_pairs"] == 8 * 7 / 2


def test_pacgan_discriminator_sees_packed_samples(tmp_path):
    from _gan_networks import MixtureDiscriminator
    from gan_mixture import main

    out = tmp_path / "run"
    main(["--method", "pacgan", "--pack_size", "3", "--save_steps", "3", "--output_dir", str(out), *TINY_MIXTURE])
    assert MixtureDiscriminator.from_pretrained(str(out / "discriminator")).layers[0].linear.in_features == 6
    checkpoint = sorted(os.listdir(out / "checkpoint-3"))  # both networks and both optimisers (accelerate state)
    assert sum(name.startswith("model") for name in checkpoint) == 2
    assert sum(name.startswith("optimizer") for name in checkpoint) == 2


def _write_fake_mnist(folder, n=120):
    """A tiny IDX gzip pair in the MNIST format (random pixels, labels 0-9)."""
    import gzip

    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(0)
    header = np.array([2051, n, 28, 28], dtype=">i4").tobytes()
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(header + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(np.array([2049, n], dtype=">i4").tobytes() + (np.arange(n) % 10).astype(np.uint8).tobytes())


@pytest.mark.parametrize("method", ["gan", "atom", "pacgan"])
def test_stacked_mnist_smoke_run(method, tmp_path):
    from gan_stacked_mnist import main

    _write_fake_mnist(tmp_path / "mnist")
    out = tmp_path / "run"
    flags = ["--data_dir", str(tmp_path / "mnist"), "--classifier_train", "100", "--classifier_epochs", "1",
             "--gen_channels", "4", "--disc_channels", "4", "--latent_dim", "8", "--num_eval_samples", "30",
             "--max_steps", "2", "--batch_size", "6", "--num_threads", "1", "--disable_tqdm", "true"]  # fmt: skip
    results = main(["--method", method, "--output_dir", str(out), *flags])
    assert results["final"]["num_samples"] == 30 and 1 <= results["final"]["modes"] <= 30
    correct = results["classifier"]["accuracy"] * 20  # a share of the 20 test images: a whole number of them
    assert results["classifier"]["num_test"] == 20 and abs(correct - round(correct)) < 1e-6
    assert len(list((out / "classifier").glob("*/classifier_info.json"))) == 1 and (out / "samples.png").exists()
    assert (out / "generator" / "model.safetensors").exists()


# --------------------------------------------------------------------------------------------------------
# The atom objective reaches the generator
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [1, -1])
def test_atom_gradient_reaches_the_mixture_generators_first_layer(layer):
    from _gan_networks import MixtureGenerator

    from hf_atom import AtomConfig, AtomRegularizer, mlp_tokens

    torch.manual_seed(0)
    generator = MixtureGenerator(2, 16, 3)
    regularizer = AtomRegularizer(hidden_size=4, config=AtomConfig(weight=0.1))
    _, hidden = generator(torch.randn(6, 2), return_hidden=True)
    regularizer(mlp_tokens(hidden[layer if layer < 0 else layer - 1], 4)).objective.backward()
    first = generator.hidden[0][0].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert generator.out.weight.grad is None  # the output layer is after every hidden layer: untouched
    assert regularizer.head.importance.weight.grad.abs().sum() > 0


def test_atom_gradient_reaches_the_dcgan_generators_first_layer():
    from gan_stacked_mnist import DCGANGenerator

    from hf_atom import AtomConfig, AtomRegularizer, feature_map_tokens

    torch.manual_seed(0)
    generator = DCGANGenerator(latent_dim=8, channels=4)
    _, hidden = generator(torch.randn(5, 8), return_hidden=True)
    tokens = feature_map_tokens(hidden[1])
    assert tokens.shape == (5, 14 * 14, 4)
    AtomRegularizer(hidden_size=4, config=AtomConfig(weight=0.1))(tokens).objective.backward()
    assert generator.fc[0].weight.grad.abs().sum() > 0


def test_atom_run_differs_from_gan_run_only_through_the_atom_term(tmp_path):
    # Same seed: lambda = 0 gives the gan control's generator exactly; lambda > 0 changes it.
    from _gan_networks import MixtureGenerator
    from gan_mixture import main

    def generator_after(method, weight):
        out = tmp_path / f"{method}_{weight}"
        main(["--method", method, "--atom_weight", str(weight), "--output_dir", str(out), *TINY_MIXTURE])
        return MixtureGenerator.from_pretrained(str(out / "generator")).state_dict()

    control, zero, atom = generator_after("gan", 0.1), generator_after("atom", 0.0), generator_after("atom", 1.0)
    assert all(torch.equal(control[k], zero[k]) for k in control)
    assert not all(torch.equal(control[k], atom[k]) for k in control)


def _summarizer():
    sys.path.insert(0, os.path.join(os.path.dirname(RECIPES), "benchmarks"))
    import gan_summarize

    return gan_summarize


def test_summarizer_cells_count_undefined_runs():
    fmt = _summarizer().fmt  # mean ± std from benchmarks/_stats.py (tests/test_stats.py)
    assert fmt([21.0, 25.0, 19.0, 22.0], digits=1) == "21.8 ± 2.5"
    assert fmt([0.5, float("nan")]) == "0.50 ± 0.00 (1 undefined)"  # a run without high-quality points
    assert fmt([0.1, 0.3], scale=100, digits=1) == "20.0 ± 14.1"
    assert fmt([float("nan")]) == "n/a"


def test_summarizer_replaces_only_the_marked_blocks(tmp_path):
    update_doc = _summarizer().update_doc
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- BEGIN a -->\nold\n<!-- END a -->\nkept\n<!-- BEGIN b -->\n<!-- END b -->\n")
    update_doc(str(doc), {"a": "| new |", "c": "ignored"})
    assert (
        doc.read_text() == "intro\n<!-- BEGIN a -->\n| new |\n<!-- END a -->\nkept\n<!-- BEGIN b -->\n<!-- END b -->\n"
    )
