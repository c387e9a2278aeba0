"""AtomConfig validation and serialisation; the atom head (Eq. 6, 12, D3b) and the head registry."""

import math

import pytest
import torch
from tiny_models import bert

import hf_atom
from hf_atom import AtomConfig, AtomHead


def test_defaults_are_valid_and_round_trip():
    config = AtomConfig()
    assert config.step == "opposite" and config.token_reduction == "mean" and config.softening > 0
    assert AtomConfig.from_dict(config.to_dict()) == config
    changed = config.replace(weight=0.5, norm_ord=1)
    assert changed.weight == 0.5 and changed.norm_ord == 1.0 and config.weight == 0.1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight": -0.1}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"softening": 0}, "softening"),
        ({"step": "both"}, "step"),
        ({"token_reduction": "median"}, "token_reduction"),
        ({"norm_ord": 0.5}, "norm_ord"),
        ({"position_norm": "ball"}, "position_norm.*sphere"),
        ({"charge_constraint": "l1"}, "charge_constraint"),
        ({"charge_target": 2.0}, "charge_target"),
        ({"charge_weight": -1.0}, "charge_weight"),
        ({"position_dim": 0}, "position_dim"),
        ({"hidden_layer": "last"}, "hidden_layer"),
    ],
)
def test_invalid_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AtomConfig(**kwargs)
    with pytest.raises(ValueError, match=match):
        AtomConfig().replace(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="Unknown AtomConfig field"):
        AtomConfig.from_dict({"lambda": 0.1})


def test_head_shapes_and_ranges():
    head = AtomHead(hidden_size=16, position_dim=5, position_norm="none")
    hidden = torch.randn(3, 7, 16) * 10
    q, p = head(hidden)
    assert q.shape == (3, 7) and p.shape == (3, 7, 5)
    # Eq. 6 and 12 written out: q = 2 sigmoid(W_q h + b) - 1 (in (-1, 1)), p = W_p h + b (no norm here)
    torch.testing.assert_close(
        q, 2 * torch.sigmoid(hidden @ head.importance.weight.T + head.importance.bias)[..., 0] - 1
    )
    torch.testing.assert_close(p, hidden @ head.position.weight.T + head.position.bias)


def test_importance_head_never_starts_at_zero():
    head = AtomHead(hidden_size=64, position_dim=8)
    assert head.importance.weight.abs().sum() > 0
    q, _ = head(torch.randn(4, 10, 64))
    # charges start spread out, not collapsed at 0 (docs/DESIGN.md, D3e)
    assert q.abs().mean() > 0.2


@pytest.mark.parametrize("position_norm", ["sphere", "layernorm"])
def test_position_normalisation(position_norm):
    head = AtomHead(hidden_size=8, position_dim=6, position_norm=position_norm)
    _, p = head(torch.randn(2, 3, 8))
    if position_norm == "sphere":
        assert torch.allclose(p.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    else:
        assert torch.allclose(p.mean(-1), torch.zeros(2, 3), atol=1e-5)
        assert torch.allclose(p.var(-1, unbiased=False), torch.ones(2, 3), atol=1e-3)


def test_head_rejects_bad_arguments():
    with pytest.raises(ValueError, match="position_norm"):
        AtomHead(4, 4, position_norm="cube")
    with pytest.raises(ValueError, match="position_dim"):
        AtomHead(4, 0)


def test_q_is_eq_6():
    head = AtomHead(hidden_size=4, position_dim=2)
    hidden = torch.randn(2, 3, 4)
    q, _ = head(hidden)
    logits = hidden @ head.importance.weight.T + head.importance.bias
    assert torch.allclose(q, 2 * torch.sigmoid(logits.squeeze(-1)) - 1)
    assert not math.isnan(q.sum().item())


def test_loss_module_follows_the_config():
    config = AtomConfig(softening=0.3, step="literal", token_reduction="sum", norm_ord=1.0, charge_target=0.4)
    module = hf_atom.AtomLoss.from_config(config)
    assert (module.softening, module.step, module.token_reduction, module.norm_ord) == (0.3, "literal", "sum", 1.0)
    q, p = torch.rand(3, 4) * 2 - 1, torch.randn(3, 4, 2)
    assert torch.equal(
        module(q, p), hf_atom.atom_loss(q, p, softening=0.3, step="literal", token_reduction="sum", norm_ord=1.0)
    )


class ScaledAtomHead(hf_atom.AtomHead):
    """A new head type for the tests: the linear head with q scaled by a fixed factor."""

    @classmethod
    def from_config(cls, config, hidden_size):
        return cls(hidden_size, config.position_dim or hidden_size, config.position_norm)

    def forward(self, hidden_states):
        q, p = super().forward(hidden_states)
        return 0.5 * q, p


def test_a_new_head_type_is_one_class_and_one_registration(tmp_path):
    with pytest.raises(hf_atom.AtomConfigError, match="head_type.*registered head type.*'linear'.*register_atom_head"):
        AtomConfig(head_type="scaled")
    hf_atom.register_atom_head("scaled")(ScaledAtomHead)
    try:
        config = AtomConfig(head_type="scaled", position_dim=3)
        regularizer = hf_atom.AtomRegularizer(8, config)
        assert type(regularizer.head) is ScaledAtomHead and regularizer.head.head_type == "scaled"
        assert regularizer(torch.randn(4, 5, 8)).q.abs().max() <= 0.5
        model = hf_atom.with_atom(bert(), config)
        assert type(model.atom_head) is ScaledAtomHead
        model.save_pretrained(tmp_path)
        reloaded = hf_atom.AutoAtomModel.from_pretrained(tmp_path)
        assert type(reloaded.atom_head) is ScaledAtomHead and reloaded.atom_config.head_type == "scaled"
        assert torch.equal(reloaded.atom_head.position.weight, model.atom_head.position.weight)
        with pytest.raises(ValueError, match="already registered"):
            hf_atom.register_atom_head("scaled")(hf_atom.AtomHead)
        with pytest.raises(TypeError, match="BaseAtomHead subclass"):
            hf_atom.register_atom_head("plain")(torch.nn.Linear)
    finally:
        del hf_atom.ATOM_HEAD_TYPES["scaled"]


def test_the_default_head_type_is_the_papers_linear_head():
    assert AtomConfig().head_type == "linear" and hf_atom.ATOM_HEAD_TYPES["linear"] is AtomHead
    head = hf_atom.build_atom_head(AtomConfig(position_dim=3, position_norm="none"), 6)
    assert type(head) is AtomHead and head.input_dim == 6 and head.position.out_features == 3
    assert AtomHead.settings_from_shapes({"position.weight": (3, 6)}) == {"input_dim": 6, "position_dim": 3}
