"""AtomRegularizer / AtomObjective (docs/DESIGN.md, D7) and the token helpers for plain torch modules."""

import pytest
import torch
from torch import nn

import hf_atom
from hf_atom import AtomConfig, AtomRegularizer, atom_loss, charge_target_penalty, feature_map_tokens, mlp_tokens


def test_objective_equals_atom_loss_plus_charge_term_on_the_same_tensors():
    torch.manual_seed(0)
    config = AtomConfig(weight=0.3, softening=0.2, charge_weight=2.0, charge_target=0.4)
    reg = AtomRegularizer(5, config).double()
    tokens = torch.randn(6, 4, 5, dtype=torch.float64)
    mask = torch.rand(6, 4) > 0.2
    mask[:, 0] = True
    out = reg(tokens, mask)
    q, p = reg.head(tokens)
    expected_loss = atom_loss(q, p, mask, softening=0.2)
    expected_charge = charge_target_penalty(q, mask, target=0.4)
    assert torch.allclose(out.loss, expected_loss, rtol=1e-12)
    assert torch.allclose(out.charge_penalty, expected_charge, rtol=1e-12)
    assert torch.allclose(out.objective, 0.3 * (expected_loss + 2.0 * expected_charge), rtol=1e-12)
    assert out.parts.num_pairs.item() == 15
    metrics = out.metrics()
    assert list(metrics) == list(hf_atom.regularizer.ATOM_STATISTICS)
    assert metrics["atom_pairs"] == 15 and abs(metrics["atom_loss"] - expected_loss.item()) < 1e-9
    assert abs(metrics["atom_q_positive"] + metrics["atom_q_negative"] + metrics["atom_q_neutral"] - 1) < 1e-6


def test_weight_override_and_charge_constraint_off():
    reg = AtomRegularizer(4, AtomConfig(weight=0.5, charge_constraint="none"))
    tokens = torch.randn(3, 2, 4)
    out = reg(tokens)
    assert out.charge_penalty.item() == 0.0 and torch.allclose(out.objective, 0.5 * out.loss)
    assert torch.allclose(reg(tokens, weight=2.0).objective, 2.0 * out.loss)


def test_mlp_tokens_and_feature_map_tokens_shapes():
    activations = torch.arange(2 * 12.0).reshape(2, 12)
    tokens = mlp_tokens(activations, 3)
    assert tokens.shape == (2, 3, 4) and torch.equal(tokens[1, 2], activations[1, 8:12])  # consecutive units
    fmap = torch.randn(2, 5, 3, 4)
    cells = feature_map_tokens(fmap)
    assert cells.shape == (2, 12, 5) and torch.equal(cells[1, 4 * 2 + 3], fmap[1, :, 2, 3])  # row-major cells
    with pytest.raises(ValueError, match="divides the layer width 12"):
        mlp_tokens(activations, 5)
    with pytest.raises(ValueError, match="positive integer"):
        mlp_tokens(activations, 0)
    with pytest.raises(ValueError, match=r"\(batch, width\)"):
        mlp_tokens(torch.randn(2, 3, 4), 2)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        feature_map_tokens(torch.randn(2, 3, 4))


def test_bad_regularizer_inputs_name_the_fix():
    with pytest.raises(ValueError, match="hidden_size"):
        AtomRegularizer(0)
    with pytest.raises(ValueError, match="input_dim=8.*hidden_size=4"):
        AtomRegularizer(4, AtomConfig(input_dim=8))
    reg = AtomRegularizer(4)
    with pytest.raises(ValueError, match="mlp_tokens"):
        reg(torch.randn(3, 8))
    with pytest.raises(ValueError, match="built for hidden_size=4"):
        reg(torch.randn(3, 2, 5))


def test_gradient_reaches_the_generators_first_layer():
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
    reg = AtomRegularizer(4, AtomConfig(weight=0.1))
    z = torch.randn(8, 2)
    hidden = generator[:4](z)  # the last hidden layer's activations
    out = reg(mlp_tokens(hidden, 4))
    out.objective.backward()
    first = generator[0].weight.grad
    assert first is not None and first.abs().sum() > 0
    assert reg.head.importance.weight.grad.abs().sum() > 0 and reg.head.position.weight.grad.abs().sum() > 0


def test_bad_regularizer_inputs_are_named():
    reg = AtomRegularizer(8)
    tokens = torch.randn(4, 3, 8)
    for weight in (-1, float("nan"), float("inf"), "abc", True):
        with pytest.raises(ValueError, match="`weight` \\(lambda\\) must be a finite number >= 0"):
            reg(tokens, weight=weight)
    with pytest.raises(ValueError, match="`mask` must be boolean.*mask.bool\\(\\)"):
        reg(tokens, mask=torch.full((4, 3), 0.5))
    with pytest.raises(ValueError, match="`config` must be an hf_atom.AtomConfig, got dict.*from_dict"):
        AtomRegularizer(8, config={"weight": 0.1})
    with pytest.raises(ValueError, match="`q` has NaN or infinite values"):
        reg(tokens.index_fill(0, torch.tensor([1]), float("inf")))


def test_a_nan_at_a_masked_token_never_matters():
    reg = AtomRegularizer(8, AtomConfig(charge_weight=1.0))
    tokens = torch.randn(4, 3, 8, requires_grad=True)
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0, 0] = mask[2, 1] = False
    poisoned = torch.where(mask[..., None], tokens, torch.tensor(float("nan")))
    out = reg(poisoned, mask=mask)
    assert torch.equal(out.objective, reg(tokens, mask=mask).objective) and torch.isfinite(out.objective)
    out.objective.backward()
    assert torch.isfinite(tokens.grad).all() and tokens.grad[0, 0].abs().sum() == 0
    assert all(torch.isfinite(parameter.grad).all() for parameter in reg.parameters())
