"""The cross-batch memory of sample summaries (docs/DESIGN.md, D9): loss against the literal double sum, the queue,
its warm-up, the trainer (accumulation, logs, checkpoints, resume) and the regularizer; bad input."""

import pytest
import torch
from test_trainer import arguments, seeded
from tiny_models import bert, bert_no_dropout, text_dataset
from torch.utils._python_dispatch import TorchDispatchMode

import hf_atom
from hf_atom import AtomConfig, AtomLoss, AtomRegularizer, AtomTrainer, AtomTrainingArguments
from hf_atom import memory as memory_module
from hf_atom.configuration import MAX_MEMORY_SIZE, AtomConfigError
from hf_atom.memory import MEMORY_STATE_NAME, AtomMemory, memory_atom_loss
from hf_atom.reference import naive_atom_loss


def batch(size, tokens=5, dim=4, seed=0, invalid=None):
    generator = torch.Generator().manual_seed(seed)
    q = (torch.rand(size, tokens, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_()
    p = torch.randn(size, tokens, dim, generator=generator, dtype=torch.float64).requires_grad_()
    mask = torch.rand(size, tokens, generator=generator) > 0.3
    mask[:, 0] = True
    if invalid is not None:
        mask[invalid] = False
    return q, p, mask


SETTINGS = [
    dict(softening=0.2, step="opposite", token_reduction="mean", norm_ord=2.0),
    dict(softening=0.05, step="literal", token_reduction="sum", norm_ord=1.0),
    dict(softening=0.3, step="opposite", token_reduction="sum", norm_ord=float("inf")),
]


@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("chunk_elements", [2**21, 8])  # one block, or a checkpointed block per 1-2 memory samples
def test_memory_loss_and_gradients_equal_the_naive_double_sum(settings, chunk_elements, monkeypatch):
    """Pairs current-current and current-memory, each once, the memory held fixed: values and gradients."""
    monkeypatch.setattr(memory_module, "_CHUNK_ELEMENTS", chunk_elements)
    loss_fn = AtomLoss(**settings)
    memory = AtomMemory(size=7)
    earlier = [batch(4, seed=1, invalid=2), batch(5, seed=2)]  # 9 pushed into 7 slots: the 2 oldest drop out
    for q_m, p_m, mask_m in earlier:
        memory_atom_loss(loss_fn, loss_fn.summaries(q_m, p_m, mask_m), memory)
    q, p, mask = batch(4, seed=3, invalid=1)
    objective, parts, memory_pairs = memory_atom_loss(loss_fn, loss_fn.summaries(q, p, mask), memory)
    objective.backward()

    stored_q = torch.cat([earlier[0][0], earlier[1][0]])[2:]  # the last 7 samples, one of them invalid
    stored_p = torch.cat([earlier[0][1], earlier[1][1]])[2:]
    stored_mask = torch.cat([earlier[0][2], earlier[1][2]])[2:]
    q_ref, p_ref = q.detach().clone().requires_grad_(), p.detach().clone().requires_grad_()
    expected = naive_atom_loss(q_ref, p_ref, mask, memory=(stored_q, stored_p, stored_mask), **settings)
    expected.backward()
    assert torch.allclose(objective, expected, rtol=1e-10, atol=1e-13)
    assert torch.allclose(q.grad, q_ref.grad, rtol=1e-9, atol=1e-12)
    assert torch.allclose(p.grad, p_ref.grad, rtol=1e-9, atol=1e-12)
    assert int(parts.num_pairs) == 3 and int(memory_pairs) == 3 * 6  # 3 valid current, 6 valid stored
    assert all(t.grad is None or not t.grad.any() for t in (earlier[1][0], earlier[1][1]))  # memory is fixed


def test_the_queue_is_fifo_and_fills_during_warmup():
    loss_fn = AtomLoss()
    memory = AtomMemory(size=5, warmup_steps=2)
    pushed = []
    for step in range(4):
        q, p, mask = batch(2, seed=10 + step)
        summaries = loss_fn.summaries(q, p, mask)
        pushed.append(summaries.mu.detach())
        _, _, pairs = memory_atom_loss(loss_fn, summaries, memory, step=step)
        assert int(pairs) == (0 if step < 2 else 2 * min(2 * step, 5))  # warm-up: none, but the queue fills
    last_five = torch.cat(pushed)[-5:]
    stored = memory.summaries(torch.device("cpu")).mu
    # ring order: slot i holds sample (pushed index) i mod 5
    order = [(8 - 5 + k) % 5 for k in range(5)]
    assert torch.equal(stored[order], last_five.to(stored.dtype))
    assert memory.counts.tolist() == [8, 4]
    big = AtomMemory(size=3)
    q, p, mask = batch(6, seed=20)
    memory_atom_loss(loss_fn, loss_fn.summaries(q, p, mask), big)  # more samples than slots: the last 3 stay
    assert {tuple(row.tolist()) for row in big.mu} == {tuple(row.tolist()) for row in atom_mu(q, p, mask)[-3:]}


def atom_mu(q, p, mask):
    return AtomLoss().summaries(q, p, mask).mu.detach()


def test_no_tensor_of_batch_times_memory_times_dim_is_built(monkeypatch):
    """O(B*M*D) time, and with chunking no (B, M, D) tensor (nor (B, M, N)): the largest tensor is a chunk's."""
    monkeypatch.setattr(memory_module, "_CHUNK_ELEMENTS", 512)
    loss_fn = AtomLoss()
    memory = AtomMemory(size=512)
    for seed in range(4):
        q, p, mask = batch(128, tokens=4, dim=8, seed=seed)
        memory_atom_loss(loss_fn, loss_fn.summaries(q.detach(), p.detach(), mask), memory)
    q, p, mask = batch(4, tokens=16, dim=8, seed=9)

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for tensor in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(tensor, torch.Tensor):
                    Largest.numel = max(Largest.numel, tensor.numel())
            return out

    with Largest():
        objective, _, pairs = memory_atom_loss(loss_fn, loss_fn.summaries(q, p, mask), memory)
        objective.backward()
    assert int(pairs) == 4 * 512
    # the largest tensor is the queue's own (512, 8) copy at the push: O(M*D), never B*M*D = 16384 or B*M*N = 32768
    assert Largest.numel == 512 * 8


def test_regularizer_memory_statistics_eval_and_state_dict():
    config = AtomConfig(weight=0.5, memory_size=6, charge_constraint="none")
    reg = AtomRegularizer(5, config)
    tokens = torch.randn(4, 3, 5)
    first = reg(tokens)
    assert first.metrics()["atom_memory_pairs"] == 0 and first.metrics()["atom_pairs"] == 6
    second = reg(tokens + 1)
    assert second.metrics()["atom_memory_pairs"] == 16
    reg.eval()
    before = reg.atom_objective.memory.mu.clone()
    evaluated = reg(tokens)  # evaluation: no memory pairs, the queue untouched
    assert evaluated.metrics()["atom_memory_pairs"] == 0 and torch.equal(reg.atom_objective.memory.mu, before)
    reg.train()
    state = reg.state_dict()
    assert "atom_objective.memory.mu" in state and state["atom_objective.memory.counts"].tolist() == [8, 2]
    fresh = AtomRegularizer(5, config)  # an unallocated queue takes the saved one
    fresh.load_state_dict(state)
    assert torch.equal(fresh(tokens - 1).objective, reg(tokens - 1).objective)
    assert "atom_memory_pairs" in hf_atom.regularizer.ATOM_STATISTICS
    # off: no queue, the regularizer's state_dict keys are those of before
    assert AtomRegularizer(5, AtomConfig()).atom_objective.memory is None
    assert not any("memory" in key for key in AtomRegularizer(5, AtomConfig()).state_dict())


def test_memory_refuses_vmap():
    reg = AtomRegularizer(4, AtomConfig(memory_size=4))
    with pytest.raises(ValueError, match="torch.func.vmap"):
        torch.func.vmap(lambda t: reg(t).objective)(torch.randn(2, 3, 2, 4))


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(memory_size=-1), r"`memory_size` must be >= 0"),
        (dict(memory_size=2.5), r"`memory_size` must be an integer"),
        (dict(memory_size="8"), r"`memory_size` must be an integer"),
        (dict(memory_size=MAX_MEMORY_SIZE + 1), r"above the limit of 65536.*allow_large_memory"),
        (dict(memory_warmup_steps=-3), r"`memory_warmup_steps` must be >= 0"),
    ],
)
def test_bad_memory_settings_name_the_fix(overrides, match):
    with pytest.raises(AtomConfigError, match=match):
        AtomConfig(**overrides)


def test_large_memory_needs_opt_in_and_cli_spelling():
    assert AtomConfig(memory_size=MAX_MEMORY_SIZE + 1, allow_large_memory=True).memory_size == MAX_MEMORY_SIZE + 1
    with pytest.raises(AtomConfigError, match=r"`--atom_memory_size` is 65537, above the limit"):
        AtomTrainingArguments(output_dir="x", atom_memory_size=MAX_MEMORY_SIZE + 1, use_cpu=True)
    args = AtomTrainingArguments(output_dir="x", atom_memory_size=1024, atom_memory_warmup_steps=5, use_cpu=True)
    assert args.atom_config.memory_size == 1024 and args.atom_config.memory_warmup_steps == 5


def train(output_dir, data, build=bert_no_dropout, resume=None, **overrides):
    model = seeded(build)
    trainer = AtomTrainer(
        model=model, args=arguments(AtomTrainingArguments, output_dir, **overrides), train_dataset=data
    )
    trainer.train(resume_from_checkpoint=resume)
    return model, trainer


def test_memory_off_is_today_and_an_inactive_memory_changes_nothing(tmp_path):
    """atom_memory_size=0 never reaches the memory code (no queue, no file): bit for bit the default run; a memory
    whose warm-up outlasts the run computes the same loss by another path (to rounding); an active one changes the
    weights."""
    data = text_dataset(16)
    common = dict(num_train_epochs=1, atom_weight=0.5)
    off, off_trainer = train(tmp_path / "off", data, **common, atom_memory_size=0)
    default, _ = train(tmp_path / "default", data, **common)
    inactive, _ = train(tmp_path / "inactive", data, **common, atom_memory_size=8, atom_memory_warmup_steps=100)
    active, active_trainer = train(tmp_path / "active", data, **common, atom_memory_size=8)
    assert off_trainer.atom_objective.memory is None
    for name, param in off.named_parameters():
        assert torch.equal(param, dict(default.named_parameters())[name]), name
        # M = 0 takes the fused one-node objective (issue 19), a memory run the op-by-op path: equal up to rounding
        assert torch.allclose(param, dict(inactive.named_parameters())[name], rtol=1e-4, atol=1e-6), name
    assert any(not torch.equal(p, dict(active.named_parameters())[n]) for n, p in off.named_parameters())
    logs = [log for log in off_trainer.state.log_history if "atom_memory_pairs" in log]
    assert logs and all(log["atom_memory_pairs"] == 0 for log in logs)
    active_logs = [log for log in active_trainer.state.log_history if "atom_memory_pairs" in log]
    assert [log["atom_memory_pairs"] for log in active_logs] == [0, 16, 32, 32]  # 4 samples x (0, 4, 8, 8 stored)


def test_queue_advances_per_micro_batch_under_gradient_accumulation(tmp_path):
    """Our decision (D9): every micro-batch reads then joins the queue, so the micro-batches of one optimizer step
    pair with each other; warm-up counts optimizer steps."""
    data = text_dataset(16)
    _, trainer = train(
        tmp_path / "ga",
        data,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=3,
        atom_weight=0.5,
        atom_memory_size=4,
        atom_memory_warmup_steps=1,
    )
    memory = trainer.atom_objective.memory
    assert memory.counts.tolist() == [12, 6]  # 6 micro-batches of 2
    pairs = [log["atom_memory_pairs"] for log in trainer.state.log_history if "atom_memory_pairs" in log]
    # step 0 (warm-up): none; step 1: 2 x 4 stored for both micro-batches; step 2: the same
    assert pairs == [0, 8, 8]


@pytest.mark.parametrize("gradient_accumulation_steps", [1, 2])
def test_resume_restores_the_queue_bit_identically(tmp_path, gradient_accumulation_steps):
    data = text_dataset(24)
    common = dict(
        num_train_epochs=1,
        per_device_train_batch_size=4 // gradient_accumulation_steps,
        gradient_accumulation_steps=gradient_accumulation_steps,
        save_strategy="steps",
        save_steps=3,
        atom_weight=0.5,
        atom_memory_size=6,  # smaller than the samples seen by step 3: the ring has wrapped
        atom_memory_warmup_steps=1,
    )
    full, _ = train(tmp_path / "full", data, build=bert, **common)  # dropout on: the RNG state is resumed too
    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert (checkpoint / MEMORY_STATE_NAME).is_file()
    resumed, trainer = train(tmp_path / "resumed", data, build=bert, resume=str(checkpoint), **common)
    for name, param in full.named_parameters():
        assert torch.equal(param, dict(resumed.named_parameters())[name]), name

    # the restore is what makes it identical: the same resume with an emptied queue ends elsewhere
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint / MEMORY_STATE_NAME))
    state["valid"] = torch.zeros_like(state["valid"])
    save_file(state, str(checkpoint / MEMORY_STATE_NAME))
    emptied, _ = train(tmp_path / "emptied", data, build=bert, resume=str(checkpoint), **common)
    assert any(not torch.equal(p, dict(emptied.named_parameters())[n]) for n, p in full.named_parameters())


def test_resuming_with_another_memory_is_refused(tmp_path):
    data = text_dataset(12)
    common = dict(num_train_epochs=1, save_strategy="steps", save_steps=2, atom_weight=0.5)
    train(tmp_path / "run", data, **common, atom_memory_size=6)
    checkpoint = str(tmp_path / "run" / "checkpoint-2")
    with pytest.raises(ValueError, match=r"holds 6 samples but atom_memory_size is 8.*--atom_memory_size 6"):
        train(tmp_path / "a", data, resume=checkpoint, **common, atom_memory_size=8)
    with pytest.raises(ValueError, match=r"holds an atom memory .* but this run has atom_memory_size=0"):
        train(tmp_path / "b", data, resume=checkpoint, **common)
    from safetensors.torch import load_file

    saved = load_file(checkpoint + "/" + MEMORY_STATE_NAME)
    restored = AtomMemory(size=6)
    restored.load_state_dict(saved)
    q, p, mask = batch(2, dim=4)
    with pytest.raises(ValueError, match=r"D=16 but this batch has D=4.*--atom_position_dim"):
        restored.push(AtomLoss().summaries(q, p, mask))
    other = AtomMemory(size=6)
    other.push(AtomLoss().summaries(q, p, mask))
    with pytest.raises(ValueError, match=r"width D=16, this one D=4"):
        other.load_state_dict(saved)
    train(tmp_path / "plain", data, **common)
    with pytest.raises(ValueError, match=r"has no atom memory .* atom_memory_size=6"):
        train(tmp_path / "d", data, resume=str(tmp_path / "plain" / "checkpoint-2"), **common, atom_memory_size=6)


def test_memory_across_processes_needs_gathering(monkeypatch):
    with pytest.raises(ValueError, match="--atom_gather_across_processes true"):
        memory_module.check_memory_processes(AtomConfig(memory_size=8), num_processes=2)
    memory_module.check_memory_processes(AtomConfig(memory_size=8, gather_across_processes=True), num_processes=2)
    memory_module.check_memory_processes(AtomConfig(memory_size=8), num_processes=1)


def test_gan_loop_keeps_the_queue_in_its_checkpoints(tmp_path):
    """The GAN recipe's regularizer carries the queue: a run resumed from its checkpoint (the queue full and wrapped)
    ends on the uninterrupted run's networks and queue; the logged statistics count the memory pairs. Each run in its
    own process (an earlier Trainer's mixed precision stays in accelerate's shared state in-process)."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from safetensors.torch import load_file

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags = ["--dataset", "grid", "--batch_size", "8", "--hidden_size", "16", "--disc_units", "8", "--num_train",
             "200", "--num_eval_samples", "50", "--num_threads", "1", "--disable_tqdm", "true", "--atom_tokens", "4",
             "--plot", "false", "--method", "atom", "--max_steps", "40", "--eval_steps", "20", "--save_steps", "20",
             "--atom_memory_size", "64"]  # fmt: skip

    def run(out, *extra) -> dict:
        command = [sys.executable, os.path.join(root, "recipes", "gan_mixture.py"), "--output_dir", str(out), *flags]
        env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1")
        done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return json.loads((out / "results.json").read_text())

    full = run(tmp_path / "full")
    assert full["atom_stats_mean"]["atom_memory_pairs"] > 0
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-20", resumed_dir / "checkpoint-20")
    resumed = run(resumed_dir, "--resume_from_checkpoint", "true")
    assert resumed["resumed_from"] is not None
    for name in ("generator/model.safetensors", "discriminator/model.safetensors", "atom_regularizer.safetensors"):
        left, right = load_file(str(tmp_path / "full" / name)), load_file(str(resumed_dir / name))
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left), name
    queue = load_file(str(tmp_path / "full" / "atom_regularizer.safetensors"))
    assert (
        queue["atom_objective.memory.valid"].all() and int(queue["atom_objective.memory.counts"][0]) == 40 * 8
    )  # 320 samples through 64 slots


def test_grouped_queues_under_vmap_equal_one_memory_per_group():
    """`AtomMemory(groups=S)` + `held_memory_atom_loss` under vmap, pushed after it == S separate memories with
    `memory_atom_loss`: objectives, gradients and queues over steps that fill and wrap the queues."""
    from hf_atom.loss import AtomSummaries
    from hf_atom.memory import held_memory_atom_loss

    loss_fn, groups, size = AtomLoss(), 3, 5
    stacked = AtomMemory(size, warmup_steps=1, groups=groups)
    separate = [AtomMemory(size, warmup_steps=1) for _ in range(groups)]
    for step in range(4):
        inputs = [batch(3, seed=100 * step + g, invalid=step % 3 if g == 1 else None) for g in range(groups)]
        q = torch.stack([i[0].detach() for i in inputs]).requires_grad_()
        p = torch.stack([i[1].detach() for i in inputs]).requires_grad_()
        mask = torch.stack([i[2] for i in inputs])
        active = stacked.mu is not None and stacked.is_active()
        stored = stacked.summaries(q.device).as_tuple() if active else ()

        def one(q_g, p_g, mask_g, *memory_g):
            held = AtomSummaries(*memory_g) if memory_g else None
            summaries = loss_fn.summaries(q_g, p_g, mask_g)
            loss, _, pairs = held_memory_atom_loss(loss_fn, summaries, held)
            return loss, pairs, summaries.as_tuple()

        losses, pairs, summaries = torch.func.vmap(one)(q, p, mask, *stored)
        stacked.push(AtomSummaries(*summaries))
        losses.sum().backward()
        for g, (q_g, p_g, mask_g) in enumerate(inputs):
            q_ref, p_ref = q_g.detach().clone().requires_grad_(), p_g.detach().clone().requires_grad_()
            expected, _, expected_pairs = memory_atom_loss(
                loss_fn, loss_fn.summaries(q_ref, p_ref, mask_g), separate[g]
            )
            expected.backward()
            assert torch.allclose(losses[g], expected, rtol=1e-12) and int(pairs[g]) == int(expected_pairs)
            assert torch.allclose(q.grad[g], q_ref.grad) and torch.allclose(p.grad[g], p_ref.grad)
    for g in range(groups):
        for name in ("mu", "r", "s_plus", "s_minus", "n_tokens", "valid"):
            assert torch.equal(getattr(stacked, name)[g], getattr(separate[g], name)), name
    assert stacked.counts.tolist() == [12, 4] and int(pairs[0]) == 3 * 5  # 12 pushed into 5 slots: full
    with pytest.raises(ValueError, match=r"\(3, batch, D\), one batch per queue"):
        stacked.push(loss_fn.summaries(*batch(2)))
    with pytest.raises(ValueError, match="held_memory_atom_loss"):
        memory_atom_loss(loss_fn, loss_fn.summaries(*batch(2)), stacked)
