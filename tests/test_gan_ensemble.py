"""Many GAN runs in one program (recipes/gan_ensemble.py) and the atom objective per member under `torch.func.vmap`."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

import hf_atom

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
sys.path.insert(0, RECIPES)

NETWORK = ["--hidden_size", "32", "--disc_units", "16", "--num_train", "2000", "--num_eval_samples", "300",
           "--batch_size", "20", "--atom_tokens", "4", "--num_threads", "1"]  # fmt: skip
TRAINING = ["--learning_rate", "1e-3", "--adam_beta1", "0.5", "--lr_scheduler_type", "linear"]


@pytest.fixture
def float64():
    """Both programs in float64: rounding differences between bmm and mm then stay ~1e-12 over 150 chaotic GAN
    steps, so a real mismatch (a shared statistic, a wrong stream) cannot hide behind float32 noise."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize(
    "methods, singles",
    [("gan,atom:0.5", [("gan", []), ("atom", ["--atom_weight", "0.5"])]), ("pacgan:2", [("pacgan", [])])],
)
def test_every_member_equals_its_single_run(methods, singles, tmp_path, float64):
    import gan_ensemble

    steps = ["--max_steps", "150", "--eval_steps", "75"]
    args, atom_args = gan_ensemble.parse(
        [
            "--datasets",
            "ring,grid",
            "--methods",
            methods,
            "--seeds",
            "1,2",
            "--output_dir",
            str(tmp_path / "ens"),
            *NETWORK,
            *TRAINING,
            *steps,
        ]  # fmt: skip
    )
    gan_ensemble.train_ensemble(args, atom_args, log=lambda *_: None)
    ensemble = gan_ensemble.MixtureGanEnsemble(args.members, args, atom_args)
    ensemble.load_state_dict(torch.load(tmp_path / "ens" / "checkpoint.pt", weights_only=True)["ensemble"])
    assert len(args.members) == 2 * len(singles) * 2
    for index, member in enumerate(args.members):
        saved = member_equals_its_single_run(ensemble, index, tmp_path, [*steps, *dict(singles)[member.method]])
        assert saved["final"]["step"] == 150


def member_equals_its_single_run(ensemble, index: int, tmp_path, flags: list[str]) -> dict:
    """Runs member `index` alone with `gan_mixture.py` (into tmp_path/<member>) and checks the ensemble's generator
    weights and evaluation histories against it; returns the member's saved JSON."""
    import gan_mixture

    member = ensemble.members[index]
    out = tmp_path / member.name
    single = gan_mixture.main(
        [
            "--dataset",
            member.dataset,
            "--method",
            member.method,
            "--seed",
            str(member.seed),
            "--output_dir",
            str(out),
            "--disable_tqdm",
            "true",
            "--plot",
            "false",
            *NETWORK,
            *TRAINING,
            *flags,
        ]  # fmt: skip
    )
    weights = load_file(str(out / "generator" / "model.safetensors"))
    mine = ensemble.member_state(index)
    for key, value in weights.items():
        if "num_batches_tracked" not in key:
            torch.testing.assert_close(mine[key], value, rtol=1e-6, atol=1e-8, msg=f"{member.name} {key}")
    saved = json.loads((tmp_path / "ens" / "runs" / f"{member.name}.json").read_text())
    assert [(r["step"], r["modes"], r["mode_counts"]) for r in saved["history"]] == [
        (r["step"], r["modes"], r["mode_counts"]) for r in single["history"]
    ]
    return saved


MEMORY = ["--atom_memory_size", "48", "--atom_memory_warmup_steps", "3"]


def test_every_member_with_a_memory_equals_its_single_run(tmp_path, float64):
    """Per-member cross-batch memories (stacked queues read inside the vmap, pushed after it) == one
    `gan_mixture.py` run with the same memory: generator weights, queues (FIFO order, validity, counts), histories."""
    import gan_ensemble

    steps = ["--max_steps", "60", "--eval_steps", "30"]
    ensemble_flags = ["--datasets", "grid", "--methods", "gan,atom:0.5", "--seeds", "1,2",
                      "--output_dir", str(tmp_path / "ens"), *NETWORK, *TRAINING, *steps, *MEMORY]  # fmt: skip
    args, atom_args = gan_ensemble.parse(ensemble_flags)
    assert [m.name for m in args.members] == ["grid__gan__s1", "grid__gan__s2", "grid__atom_w0.5_m48__s1",
                                               "grid__atom_w0.5_m48__s2"]  # fmt: skip
    gan_ensemble.train_ensemble(args, atom_args, log=lambda *_: None)
    state = torch.load(tmp_path / "ens" / "checkpoint.pt", weights_only=True)
    ensemble = gan_ensemble.MixtureGanEnsemble(args.members, args, atom_args)
    ensemble.load_state_dict(state["ensemble"])
    assert ensemble.atom_memory.mu.shape == (2, 48, 32 // 4)  # D = the token width (hidden 32 / 4 tokens)
    for queue_index, index in enumerate(ensemble.atom_index):
        saved = member_equals_its_single_run(ensemble, index, tmp_path, [*steps, "--atom_weight", "0.5", *MEMORY])
        head = load_file(str(tmp_path / args.members[index].name / "atom_regularizer.safetensors"))
        for field in ("mu", "r", "s_plus", "s_minus", "n_tokens"):
            torch.testing.assert_close(
                getattr(ensemble.atom_memory, field)[queue_index], head[f"atom_objective.memory.{field}"]
            )
        assert torch.equal(ensemble.atom_memory.valid[queue_index], head["atom_objective.memory.valid"])
        assert ensemble.atom_memory.counts.tolist() == head["atom_objective.memory.counts"].tolist() == [60 * 20, 60]
        # memory pairs after the warm-up: 20 samples x min(20 * pushes, 48) stored ones, averaged over 60 steps
        pairs = sum(20 * min(20 * step, 48) for step in range(3, 60)) / 60
        assert saved["atom_stats_mean"]["atom_memory_pairs"] == pytest.approx(pairs)


def test_vmapped_regularizer_equals_a_loop_over_members():
    """One `AtomRegularizer` per member under vmap (stacked heads) == a Python loop: objectives, statistics,
    gradients of the tokens and of every head parameter."""
    from torch.func import functional_call, stack_module_state, vmap

    members, batch, tokens, width = 3, 6, 4, 10
    config = hf_atom.AtomConfig(weight=0.3)
    regularizers = [hf_atom.AtomRegularizer(hidden_size=width, config=config) for _ in range(members)]
    features = torch.randn(members, batch, tokens, width, requires_grad=True)
    params, _ = stack_module_state(regularizers)

    def one(member_params, member_tokens):
        out = functional_call(regularizers[0], member_params, (member_tokens,))
        return out.objective, torch.stack(list(out.statistics().values()))

    objectives, stats = vmap(one)(params, features)
    objectives.sum().backward()
    for s, regularizer in enumerate(regularizers):
        own = features.detach()[s].clone().requires_grad_(True)
        out = regularizer(own)
        out.objective.backward()
        torch.testing.assert_close(objectives[s], out.objective.detach())
        torch.testing.assert_close(stats[s], torch.stack(list(out.statistics().values())))
        torch.testing.assert_close(features.grad[s], own.grad)
        for name, param in regularizer.named_parameters():
            torch.testing.assert_close(params[name].grad[s], param.grad, msg=name)
    assert objectives.abs().min() > 0  # a real loss, not the empty-batch zero


def test_atom_loss_under_vmap_equals_a_loop_with_masks():
    q = torch.rand(4, 5, 7) * 2 - 1
    p = torch.randn(4, 5, 7, 3, requires_grad=True)
    mask = torch.rand(4, 5, 7) > 0.3
    mask[:, :, 0] = True
    values = torch.func.vmap(hf_atom.atom_loss)(q, p, mask)
    (grad,) = torch.autograd.grad(values.sum(), p)
    for s in range(4):
        own = p.detach()[s].clone().requires_grad_(True)
        value = hf_atom.atom_loss(q[s], own, mask[s])
        value.backward()
        torch.testing.assert_close(values[s], value.detach())
        torch.testing.assert_close(grad[s], own.grad)


@pytest.mark.parametrize("memory", [[], MEMORY], ids=["no_memory", "memory"])
def test_resume_continues_bit_for_bit(tmp_path, monkeypatch, memory):
    """A run killed right after its step-20 checkpoint, resumed with --resume, ends with the same tensors, history
    and statistics as an uninterrupted run (streams, Adam moments, BatchNorm statistics, the members' queues)."""
    import gan_ensemble

    def flags(out, *extra):
        return ["--datasets", "grid", "--methods", "gan,atom:1", "--seeds", "0,1", "--output_dir", str(out),
                "--max_steps", "40", "--save_steps", "20", "--eval_steps", "10", *NETWORK, *TRAINING, *memory,
                *extra]  # fmt: skip

    quiet = {"log": lambda *_: None}
    gan_ensemble.train_ensemble(*gan_ensemble.parse(flags(tmp_path / "straight")), **quiet)

    save = gan_ensemble.save_checkpoint

    def save_then_die(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt  # the kill arrives right after the checkpoint is on disk

    monkeypatch.setattr(gan_ensemble, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        gan_ensemble.train_ensemble(*gan_ensemble.parse(flags(tmp_path / "cut")), **quiet)
    monkeypatch.setattr(gan_ensemble, "save_checkpoint", save)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["step"] == 20
    assert not (tmp_path / "cut" / "runs").exists()
    gan_ensemble.train_ensemble(*gan_ensemble.parse(flags(tmp_path / "cut", "--resume", "true")), **quiet)

    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    for key, value in straight["ensemble"].items():
        assert torch.equal(value, resumed["ensemble"][key]), key
    assert any("atom_memory.mu" in key for key in straight["ensemble"]) == bool(memory)
    # JSON text, not ==: an empty histogram's reverse KL is NaN, and NaN != NaN.
    assert json.dumps(straight["history"]) == json.dumps(resumed["history"]) and len(straight["history"][0]) == 4
    for name in os.listdir(tmp_path / "straight" / "runs"):
        a = json.loads((tmp_path / "straight" / "runs" / name).read_text())
        b = json.loads((tmp_path / "cut" / "runs" / name).read_text())
        assert json.dumps(a["history"]) == json.dumps(b["history"]) and a["atom_stats_mean"] == b["atom_stats_mean"]


def test_bad_input_is_named_before_training(tmp_path):
    import gan_ensemble

    base = ["--output_dir", str(tmp_path / "x"), *NETWORK]
    with pytest.raises(ValueError, match="mixes discriminator input widths"):
        gan_ensemble.parse([*base, "--methods", "gan,pacgan:2"])
    with pytest.raises(ValueError, match="--seeds"):
        gan_ensemble.parse([*base, "--seeds", "-1"])
    with pytest.raises(ValueError, match="--seeds"):
        gan_ensemble.parse([*base, "--seeds", "a-b"])
    with pytest.raises(ValueError, match="pack size"):
        gan_ensemble.parse([*base, "--methods", "pacgan:1"])
    with pytest.raises(ValueError, match="lambda"):
        gan_ensemble.parse([*base, "--methods", "atom:nan"])
    with pytest.raises(ValueError, match="BatchNorm"):
        gan_ensemble.parse([*base, "--batch_size", "1"])
    with pytest.raises(ValueError, match="name a run twice"):
        gan_ensemble.parse([*base, "--methods", "gan,gan"])

    flags = ["--max_steps", "2", "--output_dir", str(tmp_path / "run"), *NETWORK]
    args, atom_args = gan_ensemble.parse(flags)
    gan_ensemble.train_ensemble(args, atom_args, log=lambda *_: None)
    with pytest.raises(ValueError, match="pass --resume"):
        gan_ensemble.train_ensemble(*gan_ensemble.parse(flags), log=lambda *_: None)
    with pytest.raises(ValueError, match="learning_rate differ"):
        gan_ensemble.train_ensemble(
            *gan_ensemble.parse([*flags, "--resume", "true", "--learning_rate", "0.5"]), log=lambda *_: None
        )
    with pytest.raises(ValueError, match="other atom settings.*atom_memory_size differ"):
        gan_ensemble.train_ensemble(
            *gan_ensemble.parse([*flags, "--resume", "true", "--atom_memory_size", "8"]), log=lambda *_: None
        )
    with pytest.raises(ValueError, match="--cuda_graph cannot replay --atom_memory_size"):
        gan_ensemble.parse([*base, "--atom_memory_size", "8", "--cuda_graph", "true", "--rng", "shared"])


def test_study_statistics_on_hand_made_runs():
    sys.path.insert(0, os.path.join(os.path.dirname(RECIPES), "benchmarks"))
    import gan_study

    def run(method, seed, modes, hq):
        name = f"grid__{method}__s{seed}"
        final = {
            "modes": modes,
            "high_quality": hq,
            "reverse_kl": 0.5,
            "mode_counts": [1] * modes + [0] * (25 - modes),
        }
        return {"name": name, "member": {"dataset": "grid", "seed": seed}, "settings": {"precision": "bf16"},
                "final": final, "history": [{"step": 1, **final}]}  # fmt: skip

    runs = [run("gan", s, 20, 0.9) for s in range(3)] + [run("atom_w0.1", s, 25, 0.8) for s in range(3)]
    table = gan_study.summarize(runs)["grid"]
    assert table["gan"]["modes"]["mean"] == 20 and table["atom_w0.1"]["all_modes"] == 3
    assert table["atom_w0.1"]["modes"]["vs_reference"]["higher"] == 3
    assert "| atom_w0.1 | 3 | 25.00 ± 0.00 | 80.0 ± 0.0 |" in gan_study.tables_markdown({"grid": table})
    # Without a bf16 control the p-cells say so instead of calling every row "control".
    alone = gan_study.tables_markdown(gan_study.summarize(runs[3:]))
    assert "| — | — | — |" in alone and "control" not in alone
    # A cross-batch memory row is paired with the same method without memory, not with the control.
    memory = [run("atom_w0.1_m4096", s, 22 + s, 0.8) for s in range(3)]
    table = gan_study.summarize(runs + memory)["grid"]
    assert list(table) == ["gan", "atom_w0.1", "atom_w0.1_m4096"]
    assert table["atom_w0.1_m4096"]["reference"] == "atom_w0.1"
    assert table["atom_w0.1_m4096"]["modes"]["vs_reference"]["lower"] == 3  # 22, 23, 24 against 25
    assert "paired against atom_w0.1 (the same method" in gan_study.tables_markdown({"grid": table})


def test_study_results_never_overwrite_another_ensembles_run(tmp_path):
    """The fp32 control twin shares member names with the bf16 control (grid__gan__s0): their result files differ
    by precision, and a run of other settings under the same file name is refused instead of replacing it."""
    sys.path.insert(0, os.path.join(os.path.dirname(RECIPES), "benchmarks"))
    import gan_study

    def write(folder, precision, methods):
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "grid__gan__s0.json")
        with open(path, "w") as handle:
            json.dump({"name": "grid__gan__s0", "settings": {"precision": precision, "methods": methods}}, handle)
        return path

    target = str(tmp_path / "runs")
    os.makedirs(target)
    bf16 = gan_study.copy_result(write(str(tmp_path / "a"), "bf16", "gan,atom:0.1"), target)
    fp32 = gan_study.copy_result(write(str(tmp_path / "b"), "fp32", "gan"), target)
    assert (
        os.path.basename(bf16) == "grid__gan__bf16__s0.json" and os.path.basename(fp32) == "grid__gan__fp32__s0.json"
    )
    gan_study.copy_result(write(str(tmp_path / "c"), "bf16", "gan,atom:0.1"), target)  # the same ensemble again
    with pytest.raises(SystemExit, match="another ensemble"):
        gan_study.copy_result(write(str(tmp_path / "d"), "bf16", "gan"), target)
    with open(bf16) as handle:
        assert json.load(handle)["settings"]["methods"] == "gan,atom:0.1"  # kept

    # The scatter pairs each ensemble's samples with the run of the same name AND precision.
    runs = [{"name": "grid__gan__s0", "settings": {"precision": precision}} for precision in ("bf16", "fp32")]
    for precision, value in (("bf16", 1.0), ("fp32", 2.0)):
        folder = tmp_path / "outputs" / f"{precision}control"
        folder.mkdir(parents=True)
        summary = {"settings": {"precision": precision}, "members": [{"name": "grid__gan__s0"}]}
        (folder / "summary.json").write_text(json.dumps(summary))
        torch.save(torch.full((1, 4, 2), value), folder / "samples.pt")
    panels = gan_study.scatter_panels(str(tmp_path / "outputs"), runs)
    assert sorted((run["settings"]["precision"], points[0, 0].item()) for run, points in panels) == [
        ("bf16", 1.0),
        ("fp32", 2.0),
    ]


def test_a_training_step_never_synchronises_the_host(tmp_path):
    """A CUDA graph can only capture a step without host synchronisations (`aten._local_scalar_dense`, `.item()`):
    counted on CPU, per step, as the difference of a 4-step and a 2-step run (evaluation and checkpoint cancel)."""
    import gan_ensemble
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = self.syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            self.syncs += func is torch.ops.aten._local_scalar_dense.default
            return func(*args, **(kwargs or {}))

    for methods in ("gan,atom:0.1", "pacgan:2"):
        counts = []
        for steps in (2, 4):
            flags = ["--datasets", "grid", "--methods", methods, "--seeds", "0-1", "--max_steps", str(steps),
                     "--rng", "shared", "--precision", "bf16", "--output_dir", str(tmp_path / f"{methods}{steps}"),
                     *NETWORK]  # fmt: skip
            counter = Count()
            with counter:
                gan_ensemble.train_ensemble(*gan_ensemble.parse(flags), log=lambda *_: None)
            counts.append((counter.ops, counter.syncs))
        ops_per_step, syncs_per_step = (counts[1][0] - counts[0][0]) / 2, (counts[1][1] - counts[0][1]) / 2
        assert syncs_per_step == 0, methods
        assert 0 < ops_per_step < 1000, (methods, ops_per_step)  # the launch count the GPU estimate rests on
