"""The atomic loss against a literal double sum over token pairs (Eq. 5-12), edge cases and bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hf_atom
from hf_atom import AtomLoss, atom_loss, charge_target_penalty
from hf_atom.reference import naive_atom_loss

NORMS = [1.0, 2.0, 3.0, math.inf]


def random_batch(batch, tokens, dim, *, generator=None, mask_prob=0.3, dtype=torch.float64):
    q = (torch.rand(batch, tokens, dtype=dtype, generator=generator) * 2 - 1).requires_grad_()
    p = torch.randn(batch, tokens, dim, dtype=dtype, generator=generator).requires_grad_()
    mask = torch.rand(batch, tokens, generator=generator) >= mask_prob
    return q, p, mask


def assert_matches_reference(q, p, mask, **kwargs):
    fast = atom_loss(q, p, mask, **kwargs)
    slow = naive_atom_loss(q, p, mask, **kwargs)
    fast_grads = torch.autograd.grad(fast, (q, p), allow_unused=False)
    slow_grads = torch.autograd.grad(slow, (q, p), allow_unused=False)
    scale = max(slow.abs().item(), 1e-300)
    assert abs(fast.item() - slow.item()) <= 1e-10 * scale, (fast.item(), slow.item())
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        grad_scale = max(slow_grad.abs().max().item(), 1e-300)
        assert (fast_grad - slow_grad).abs().max().item() <= 1e-10 * grad_scale


@pytest.mark.parametrize("step", hf_atom.STEP_MODES)
@pytest.mark.parametrize("token_reduction", hf_atom.TOKEN_REDUCTIONS)
@pytest.mark.parametrize("norm_ord", NORMS)
def test_matches_naive_double_sum(step, token_reduction, norm_ord):
    generator = torch.Generator().manual_seed(17)
    q, p, mask = random_batch(6, 9, 5, generator=generator)
    mask[3] = False  # one fully padded sample
    assert_matches_reference(q, p, mask, step=step, token_reduction=token_reduction, norm_ord=norm_ord, softening=0.3)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 6),
    tokens=st.integers(1, 8),
    dim=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    step=st.sampled_from(hf_atom.STEP_MODES),
    token_reduction=st.sampled_from(hf_atom.TOKEN_REDUCTIONS),
    norm_ord=st.sampled_from(NORMS),
    softening=st.floats(1e-3, 10.0),
    mask_prob=st.floats(0.0, 0.8),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_matches_naive_double_sum_property(
    batch, tokens, dim, seed, step, token_reduction, norm_ord, softening, mask_prob, scale
):
    generator = torch.Generator().manual_seed(seed)
    q, p, mask = random_batch(batch, tokens, dim, generator=generator, mask_prob=mask_prob)
    p = (p.detach() * scale).requires_grad_()
    assert_matches_reference(
        q, p, mask, step=step, token_reduction=token_reduction, norm_ord=norm_ord, softening=softening
    )


def test_no_mask_equals_all_valid_mask():
    q, p, _ = random_batch(4, 5, 3)
    assert torch.equal(atom_loss(q, p), atom_loss(q, p, torch.ones(4, 5, dtype=torch.bool)))
    assert torch.equal(atom_loss(q, p), atom_loss(q, p, torch.ones(4, 5, dtype=torch.long)))


def test_padding_never_enters():
    """Changing padded tokens (even to inf/NaN) changes neither the loss nor the valid tokens' gradients."""
    q, p, mask = random_batch(5, 7, 4)
    mask[:, 0] = True
    loss = atom_loss(q, p, mask)
    q2 = q.detach().clone().masked_fill(~mask, 0.9).requires_grad_()
    p2 = p.detach().clone().masked_fill(~mask[..., None], float("nan")).requires_grad_()
    loss2 = atom_loss(q2, p2, mask)
    assert torch.equal(loss, loss2)
    grads = torch.autograd.grad(loss2, (q2, p2))
    assert all(torch.isfinite(g).all() for g in grads)
    assert grads[0][~mask].abs().sum() == 0 and grads[1][~mask].abs().sum() == 0


def shifted_pair_energy(similarity: float, shift: float, step: str) -> float:
    """Two fixed atoms (one + and one - token each) with B moved by `shift` along e1.

    `similarity` -> 1 makes B's charge structure approach A's (+1, -1): (1, -t) vs (t, -1).
    """
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    e2 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    q = torch.tensor([[1.0, -similarity], [similarity, -1.0]], dtype=torch.float64)
    positions_a = torch.stack([e2, -e2])
    p = torch.stack([positions_a, positions_a + shift * e1])
    return atom_loss(q, p, step=step, softening=0.05).item()


def test_figure_2_opposite_minimum_is_not_zero_and_moves_out():
    shifts = torch.linspace(0.0, 40.0, 2001).tolist()
    minima = []
    for similarity in (0.2, 0.3, 0.4, 0.5):
        energies = [shifted_pair_energy(similarity, x, "opposite") for x in shifts]
        best = shifts[min(range(len(shifts)), key=energies.__getitem__)]
        assert 0.0 < best < shifts[-1], (similarity, best)
        minima.append(best)
    assert minima == sorted(minima) and len(set(minima)) == len(minima), minima


def test_figure_2_literal_minimum_at_smallest_distance():
    shifts = torch.linspace(0.0, 40.0, 401).tolist()
    for similarity in (0.1, 0.2, 0.3, 0.4):
        energies = [shifted_pair_energy(similarity, x, "literal") for x in shifts]
        assert min(range(len(shifts)), key=energies.__getitem__) == 0


# ---------------------------------------------------------------------------------------------------------
# Edge cases: finite values and gradients
# ---------------------------------------------------------------------------------------------------------


def assert_finite_with_grads(loss, *tensors):
    assert torch.isfinite(loss)
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    for grad in grads:
        assert grad is not None and torch.isfinite(grad).all()
    return grads


@pytest.mark.parametrize("norm_ord", NORMS)
@pytest.mark.parametrize("step", hf_atom.STEP_MODES)
def test_identical_samples_are_finite(norm_ord, step):
    q = (torch.rand(1, 6) * 2 - 1).expand(4, 6).clone().requires_grad_()
    p = torch.randn(1, 6, 3).expand(4, 6, 3).clone().requires_grad_()
    assert_finite_with_grads(atom_loss(q, p, norm_ord=norm_ord, step=step), q, p)


def test_identical_tokens_zero_radius_are_finite():
    q = torch.full((3, 4), 0.7, requires_grad=True)
    p = torch.zeros(3, 4, 5, requires_grad=True)
    assert_finite_with_grads(atom_loss(q, p), q, p)


def test_fully_masked_sample_is_left_out():
    q, p, mask = random_batch(4, 5, 3)
    mask[:, 0] = True
    mask[1] = False
    loss = atom_loss(q, p, mask)
    keep = [0, 2, 3]
    expected = atom_loss(q[keep], p[keep], mask[keep])
    assert torch.allclose(loss, expected, rtol=1e-12, atol=0)
    assert_finite_with_grads(loss, q, p)
    parts = AtomLoss()(q, p, mask, return_parts=True)
    assert parts.num_pairs.item() == 3


@pytest.mark.parametrize("batch, masked", [(1, False), (2, True), (3, True)])
def test_fewer_than_two_valid_samples_give_zero(batch, masked):
    q = (torch.rand(batch, 4) * 2 - 1).requires_grad_()
    p = torch.randn(batch, 4, 3, requires_grad=True)
    mask = torch.ones(batch, 4, dtype=torch.bool)
    if masked:
        mask[1:] = False  # only sample 0 stays valid
    loss = atom_loss(q, p, mask)
    assert loss.item() == 0.0
    grads = assert_finite_with_grads(loss, q, p)
    assert all(g.abs().sum() == 0 for g in grads)
    assert AtomLoss()(q, p, mask, return_parts=True).num_pairs.item() == 0


def test_all_tokens_masked_gives_zero():
    q = torch.rand(3, 4, requires_grad=True)
    p = torch.randn(3, 4, 2, requires_grad=True)
    loss = atom_loss(q, p, torch.zeros(3, 4, dtype=torch.bool))
    assert loss.item() == 0.0
    assert_finite_with_grads(loss, q, p)


def test_zero_charges_give_zero_loss_and_zero_gradient_wrt_positions():
    q = torch.zeros(3, 4, requires_grad=True)
    p = torch.randn(3, 4, 2, requires_grad=True)
    loss = atom_loss(q, p)
    assert loss.item() == 0.0
    _, grad_p = torch.autograd.grad(loss, (q, p))
    assert grad_p.abs().sum() == 0


@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1e6, 1e12])
def test_tiny_and_huge_position_scales(scale):
    q = (torch.rand(5, 6) * 2 - 1).requires_grad_()
    p = (torch.randn(5, 6, 8) * scale).requires_grad_()
    assert_finite_with_grads(atom_loss(q, p), q, p)
    # float32 matches the float64 reference to float32 accuracy at every scale
    expected = naive_atom_loss(q.double(), p.double())
    assert torch.allclose(atom_loss(q, p).double(), expected, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_are_computed_in_float32(dtype):
    q32 = torch.rand(4, 6) * 2 - 1
    p32 = torch.randn(4, 6, 3)
    q, p = q32.to(dtype).requires_grad_(), p32.to(dtype).requires_grad_()
    loss = atom_loss(q, p)
    assert loss.dtype == torch.float32
    expected = atom_loss(q.detach().float(), p.detach().float())
    assert torch.equal(loss, expected)
    grads = assert_finite_with_grads(loss, q, p)
    assert grads[0].dtype == dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_float32(dtype):
    q = torch.rand(4, 6) * 2 - 1
    p = torch.randn(4, 6, 3)
    with torch.autocast("cpu", dtype=dtype):
        loss = atom_loss(q, p)
        parts = AtomLoss()(q, p, return_parts=True)
    assert loss.dtype == torch.float32 and parts.pair_energies.dtype == torch.float32
    assert torch.equal(loss, atom_loss(q, p))


def test_no_quadratic_token_tensor_anywhere():
    """No op in forward or backward makes a tensor of (B, N, N) or (B, B, N) size (D2)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    batch, tokens, dim = 6, 96, 2
    sizes = []

    class RecordSizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(tensor, torch.Tensor):
                    sizes.append((tensor.numel(), str(func)))
            return out

    q = (torch.rand(batch, tokens) * 2 - 1).requires_grad_()
    p = torch.randn(batch, tokens, dim, requires_grad=True)
    with RecordSizes():
        loss = atom_loss(q, p, torch.ones(batch, tokens, dtype=torch.bool))
        loss.backward()
    largest = max(sizes)
    assert largest[0] <= batch * tokens * dim, largest
    assert largest[0] < batch * tokens * tokens and largest[0] < batch * batch * tokens


# ---------------------------------------------------------------------------------------------------------
# Module form and the charge constraint
# ---------------------------------------------------------------------------------------------------------


def test_module_parts_are_consistent():
    q, p, mask = random_batch(5, 6, 3)
    mask[:, 0] = True
    module = AtomLoss(softening=0.2, step="opposite", token_reduction="sum", norm_ord=1.0)
    out = module(q, p, mask, return_parts=True)
    assert torch.equal(out.loss, module(q, p, mask))
    assert torch.allclose(out.loss, atom_loss(q, p, mask, softening=0.2, token_reduction="sum", norm_ord=1.0))
    energies = out.pair_energies
    assert energies.shape == (5, 5)
    assert torch.allclose(energies, energies.T) and energies.diagonal().abs().sum() == 0
    upper = torch.triu_indices(5, 5, offset=1)
    assert torch.allclose(out.loss, energies[upper[0], upper[1]].mean())
    assert out.num_pairs.item() == 10
    assert out.mu.shape == (5, 3) and out.r.shape == (5,)
    weights = mask.double()
    assert torch.allclose(out.s_plus, (q.clamp(min=0) * weights).sum(1))
    assert torch.allclose(out.s_minus, (q.clamp(max=0) * weights).sum(1))
    assert torch.allclose(out.pair_distances, torch.cdist(out.mu, out.mu, p=1.0))


def test_charge_target_penalty_matches_definition():
    q, _, mask = random_batch(4, 6, 1)
    mask[:, 0] = True
    mask[2] = False
    expected = torch.stack([(q[b][mask[b]].abs().mean() - 0.4) ** 2 for b in range(4) if mask[b].any()]).mean()
    assert torch.allclose(charge_target_penalty(q, mask, target=0.4), expected)
    (grad,) = torch.autograd.grad(charge_target_penalty(q, mask, target=0.4), q)
    assert grad[~mask].abs().sum() == 0


def test_charge_penalty_pushes_collapsed_charges_up():
    q = torch.full((2, 3), 0.01, requires_grad=True)
    (grad,) = torch.autograd.grad(charge_target_penalty(q, target=0.5), q)
    assert (grad < 0).all()  # gradient descent raises |q|


# ---------------------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"softening": 0.0}, "softening"),
        ({"softening": -1.0}, "softening"),
        ({"softening": float("nan")}, "softening"),
        ({"step": "sideways"}, "step.*opposite.*literal"),
        ({"token_reduction": "max"}, "token_reduction.*mean.*sum"),
        ({"norm_ord": 0.5}, "norm_ord"),
        ({"norm_ord": float("nan")}, "norm_ord"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    q, p, _ = random_batch(2, 3, 2)
    with pytest.raises(ValueError, match=match):
        atom_loss(q, p, **kwargs)
    with pytest.raises(ValueError, match=match):
        AtomLoss(**kwargs)


@pytest.mark.parametrize(
    "q_shape, p_shape, mask_shape, match",
    [
        ((2, 3, 1), (2, 3, 2), None, "`q` must have shape"),
        ((2, 3), (2, 3), None, "`p` must have shape"),
        ((2, 3), (2, 4, 2), None, "`p` must have shape"),
        ((2, 3), (2, 3, 2), (2, 4), "`mask` must have shape"),
    ],
)
def test_bad_shapes_raise(q_shape, p_shape, mask_shape, match):
    mask = None if mask_shape is None else torch.ones(mask_shape)
    with pytest.raises(ValueError, match=match):
        atom_loss(torch.zeros(q_shape), torch.zeros(p_shape), mask)


def test_bad_dtypes_raise():
    with pytest.raises(ValueError, match="`q` must have a floating dtype"):
        atom_loss(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="`p` must have a floating dtype"):
        atom_loss(torch.zeros(2, 3), torch.zeros(2, 3, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match="`mask` must be a torch.Tensor"):
        atom_loss(torch.zeros(2, 3), torch.zeros(2, 3, 2), [[1, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="`q` must be a torch.Tensor"):
        atom_loss([[0.0]], torch.zeros(1, 1, 1))


def test_bad_charge_target_raises():
    with pytest.raises(ValueError, match="target"):
        charge_target_penalty(torch.zeros(2, 3), target=1.5)


def test_masked_charges_never_matter_in_the_charge_term():
    q = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    poisoned = torch.where(mask, q, torch.tensor(float("nan"), dtype=torch.float64))
    value = charge_target_penalty(poisoned, mask, target=0.3)
    assert torch.equal(value, charge_target_penalty(q, mask, target=0.3))
    (grad,) = torch.autograd.grad(value, q)
    assert torch.isfinite(grad).all() and torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))


# ---------------------------------------------------------------------------------------------------------
# The input contract (docs/DESIGN.md): shapes/dtypes always, values on CPU always, elsewhere opt-in
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "q_value, mask, match",
    [
        (1.5, None, r"`q` must be in \[-1, 1\]"),
        (-3.0, None, r"`q` must be in \[-1, 1\]"),
        (float("nan"), None, "`q` has NaN or infinite values"),
        (0.5, torch.full((2, 3), 0.5), "`mask` must be boolean"),
        (0.5, torch.tensor([[1, 1, 2], [1, 1, 1]]), "`mask` must hold only 0 and 1"),
        (0.5, torch.tensor([[1, 1, -1], [1, 1, 1]]), "`mask` must hold only 0 and 1"),
        (0.5, torch.tensor([[1.0, float("nan"), 1.0], [1.0, 1.0, 1.0]]), "`mask` must be boolean"),
    ],
)
def test_inputs_outside_the_contract_are_refused(q_value, mask, match):
    q = torch.full((2, 3), 0.5)
    q[0, 1] = q_value
    p = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=match):
        atom_loss(q, p, mask)
    with pytest.raises(ValueError, match=match):
        hf_atom.check_atom_inputs(q, p, mask)
    with pytest.raises(ValueError, match=match):
        AtomLoss()(q, p, mask)


def test_values_on_masked_tokens_never_matter_to_the_check():
    q = torch.full((2, 3), 0.5)
    q[0, 2] = float("nan")
    p = torch.randn(2, 3, 4)
    p[1, 2] = float("inf")
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    assert torch.isfinite(atom_loss(q, p, mask, check_values=True))
    with pytest.raises(ValueError, match="`p` has NaN or infinite values"):
        atom_loss(torch.full((2, 3), 0.5), p, check_values=True)


def test_pair_energy_matrix_validates_step():
    q, p, mask = random_batch(3, 4, 2)
    summaries = hf_atom.atom_summaries(q, p, mask)
    with pytest.raises(ValueError, match="`step` must be one of"):
        hf_atom.pair_energy_matrix(summaries, summaries, softening=0.1, step="Opposite")


def test_loss_output_holds_the_summaries():
    q, p, mask = random_batch(4, 5, 3)
    out = AtomLoss()(q, p, mask, return_parts=True)
    assert isinstance(out.summaries, hf_atom.AtomSummaries)
    assert out.mu is out.summaries.mu and out.valid is out.summaries.valid
    with pytest.raises(AttributeError):
        out.not_a_field  # noqa: B018


@pytest.mark.parametrize("step", ["opposite", "literal"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("charge", ["target_abs", "none"])
def test_fused_objective_matches_the_op_by_op_loss(step, reduction, charge):
    """AtomObjective's one-node path (issue 19): same objective and gradients as atom_loss + charge term."""
    from hf_atom.regularizer import AtomObjective

    torch.manual_seed(0)
    config = hf_atom.AtomConfig(weight=0.3, step=step, token_reduction=reduction, charge_constraint=charge)
    q = (torch.rand(6, 5, dtype=torch.float64) * 2 - 1).requires_grad_()
    p = torch.randn(6, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(6, 5) > 0.3
    mask[2] = False  # a sample without valid tokens
    with torch.no_grad():
        q[~mask] = float("nan")  # masked values never matter
    out = AtomObjective(config)(q, p, mask, validate=False)
    reference = atom_loss(q, p, mask, step=step, token_reduction=reduction)
    if config.uses_charge_constraint:
        reference = reference + config.charge_weight * charge_target_penalty(q, mask, target=config.charge_target)
    reference = config.weight * reference
    for got, want in zip(torch.autograd.grad(out.objective, (q, p)), torch.autograd.grad(reference, (q, p))):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.objective, reference, rtol=1e-10, atol=1e-12)


def test_positions_that_overflow_float32_are_refused():
    q = torch.rand(4, 5) * 2 - 1
    with pytest.raises(ValueError, match="overflow float32"):
        atom_loss(q, torch.randn(4, 5, 3) * 1e19)
    atom_loss(q.double(), torch.randn(4, 5, 3, dtype=torch.float64) * 1e19)  # float64 holds them
