"""Nothing lost: torn checkpoints are skipped on resume, cut-short or inconsistent saved models fail with a message.

The SIGKILL test kills real training processes at random moments while they write checkpoints, then resumes.
"""

import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import bert

import hf_atom
from hf_atom.checkpoints import (
    checkpoint_problems,
    is_complete_checkpoint,
    newest_complete_checkpoint,
    safetensors_problem,
    torch_file_problem,
)

SCRIPTS = str(Path(__file__).parent / "scripts")
sys.path.insert(0, SCRIPTS)
import train_checkpointing  # noqa: E402  (tests/scripts is not a package)


def _truncate(path, keep=0.5):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])


# -- single files ------------------------------------------------------------------------------------------------


def test_file_checks_tell_whole_from_cut_short(tmp_path):
    tensors = {"a": torch.randn(5, 3), "b": torch.arange(7)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    assert safetensors_problem(path) is None
    whole = path.read_bytes()
    for cut in (0, 3, 8, 20, len(whole) - 30, len(whole) - 1):  # inside the length, the header, the data
        path.write_bytes(whole[:cut])
        problem = safetensors_problem(path)
        assert problem and "m.safetensors" in problem and ("incomplete" in problem or "readable" in problem), cut
    assert "missing" in safetensors_problem(tmp_path / "none.safetensors")

    saved = tmp_path / "optimizer.pt"
    torch.save({"state": {0: torch.randn(100)}, "step": 3}, saved)
    assert torch_file_problem(saved) is None
    whole = saved.read_bytes()
    for cut in (0, 10, len(whole) // 2, len(whole) - 1):
        saved.write_bytes(whole[:cut])
        assert "optimizer.pt is incomplete" in torch_file_problem(saved), cut


# -- resuming ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints 2, 4, 6, and its final parameters."""
    folder = tmp_path_factory.mktemp("full")
    params = _train(folder, save_steps=2, resume=None)
    return folder, params


def _train(folder, save_steps, resume):
    torch.manual_seed(0)
    model = bert()
    args = train_checkpointing.training_arguments(str(folder), max_steps=6)
    args.save_steps = save_steps
    trainer = hf_atom.AtomTrainer(model=model, args=args, train_dataset=train_checkpointing.text_dataset(32))
    trainer.train(resume_from_checkpoint=resume)
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def test_a_checkpoint_trainer_wrote_is_complete_and_each_missing_part_is_named(full_run, tmp_path):
    folder, _ = full_run
    source = folder / "checkpoint-2"
    assert checkpoint_problems(source) == [] and is_complete_checkpoint(source)
    tears = {
        "trainer_state.json is missing": lambda c: (c / "trainer_state.json").unlink(),
        "trainer_state.json is incomplete": lambda c: _truncate(c / "trainer_state.json"),
        "model.safetensors is incomplete": lambda c: _truncate(c / "model.safetensors"),
        "optimizer.pt is missing": lambda c: (c / "optimizer.pt").unlink(),
        "optimizer.pt is incomplete": lambda c: _truncate(c / "optimizer.pt"),
        "scheduler.pt is incomplete": lambda c: _truncate(c / "scheduler.pt", 0.9),
        "rng_state.pth is missing": lambda c: (c / "rng_state.pth").unlink(),
        "model weights (model.safetensors or pytorch_model.bin) are missing": lambda c: (
            c / "model.safetensors"
        ).unlink(),
        "config.json is incomplete": lambda c: _truncate(c / "config.json"),
    }
    for expected, tear in tears.items():
        torn = tmp_path / expected.replace(" ", "_")
        shutil.copytree(source, torn)
        tear(torn)
        problems = checkpoint_problems(torn)
        assert any(expected in p for p in problems), (expected, problems)
    # saved with save_only_model=True: no optimizer, scheduler or RNG state is needed
    model_only = tmp_path / "model_only"
    shutil.copytree(source, model_only)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (model_only / name).unlink()
    assert checkpoint_problems(model_only, require_optimizer=False) == []
    assert len(checkpoint_problems(model_only)) == 3
    # two processes: one RNG state per rank
    distributed = tmp_path / "distributed"
    shutil.copytree(source, distributed)
    os.replace(distributed / "rng_state.pth", distributed / "rng_state_0.pth")
    assert checkpoint_problems(distributed, world_size=2) == ["rng_state_1.pth is missing"]
    shutil.copy(distributed / "rng_state_0.pth", distributed / "rng_state_1.pth")
    assert checkpoint_problems(distributed, world_size=2) == []


@pytest.mark.parametrize(
    "tear",
    [
        lambda c: (c / "trainer_state.json").unlink(),  # killed before Trainer's last write
        lambda c: _truncate(c / "model.safetensors"),  # killed while writing the weights
        lambda c: [(c / n).unlink() for n in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")],
    ],
    ids=["no_trainer_state", "cut_weights", "model_only"],
)
def test_resume_true_skips_a_torn_newest_checkpoint_and_reaches_the_same_parameters(full_run, tmp_path, tear, caplog):
    folder, expected = full_run
    run = tmp_path / "run"
    run.mkdir()
    for step in (2, 4):  # the run was killed while saving checkpoint-4
        shutil.copytree(folder / f"checkpoint-{step}", run / f"checkpoint-{step}")
    tear(run / "checkpoint-4")
    assert newest_complete_checkpoint(run)[0] == str(run / "checkpoint-2")
    with caplog.at_level(logging.WARNING, logger="hf_atom"):
        resumed = _train(run, save_steps=2, resume=True)
    assert "Resuming from" in caplog.text and "checkpoint-4" in caplog.text and "skipped" in caplog.text
    for name, param in expected.items():
        assert torch.equal(param, resumed[name]), name
    assert is_complete_checkpoint(run / "checkpoint-4")  # rewritten whole


def test_resume_without_a_complete_checkpoint_says_so(full_run, tmp_path):
    folder, _ = full_run
    run = tmp_path / "run"
    shutil.copytree(folder / "checkpoint-2", run / "checkpoint-2")
    (run / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"no complete checkpoint in .*checkpoint-2: trainer_state.json is missing"):
        _train(run, save_steps=2, resume=True)
    with pytest.raises(ValueError, match=r"cannot be resumed from: trainer_state.json is missing"):
        _train(run, save_steps=2, resume=str(run / "checkpoint-2"))
    with pytest.raises(ValueError, match="holds no checkpoint-N folder"):
        _train(tmp_path / "empty", save_steps=2, resume=True)


# -- loading saved models ---------------------------------------------------------------------------------------


@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    model = hf_atom.with_atom(bert(), hf_atom.AtomConfig(position_dim=8))
    model.save_pretrained(tmp_path)
    return tmp_path


def test_cut_short_weights_are_named_when_loading(saved_model):
    _truncate(saved_model / "model.safetensors", 0.6)
    with pytest.raises(OSError, match=r"model.safetensors is incomplete: \d+ of \d+ bytes"):
        hf_atom.AutoAtomModel.from_pretrained(saved_model)


def test_position_dim_that_disagrees_with_the_head_weights_is_named(saved_model):
    config = json.loads((saved_model / "config.json").read_text())
    config["atom_config"]["position_dim"] = 6
    (saved_model / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError, match=r"config.json's `atom_config` and the saved atom head weights .* disagree"
    ) as info:
        hf_atom.AutoAtomModel.from_pretrained(saved_model)
    assert "atom_head.position.weight is (8, 16)" in str(info.value) and "position_dim=8" in str(info.value)
    with pytest.raises(ValueError, match="The `atom_config` passed to from_pretrained"):
        hf_atom.AutoAtomModel.from_pretrained(
            saved_model, atom_config=hf_atom.AtomConfig(position_dim=4, input_dim=16)
        )
    fresh = hf_atom.AutoAtomModel.from_pretrained(saved_model, ignore_mismatched_sizes=True)  # asked for new heads
    assert fresh.atom_head.position.out_features == 6
    config["atom_config"]["position_dim"] = 8
    (saved_model / "config.json").write_text(json.dumps(config))
    assert hf_atom.AutoAtomModel.from_pretrained(saved_model).atom_head.position.out_features == 8


@pytest.mark.parametrize("dropped", [["atom_head.position.weight"], None], ids=["some", "all"])
def test_missing_head_tensors_are_refused_not_replaced_by_random_heads(saved_model, dropped):
    weights = load_file(saved_model / "model.safetensors")
    dropped = dropped or [name for name in weights if name.startswith("atom_head.")]
    save_file({k: v for k, v in weights.items() if k not in dropped}, saved_model / "model.safetensors")
    with pytest.raises(ValueError, match="atom heads in .* are incomplete: model.safetensors has no") as info:
        hf_atom.AutoAtomModel.from_pretrained(saved_model)
    assert all(name in str(info.value) for name in dropped) and "hf_atom.with_atom" in str(info.value)


def test_a_plain_checkpoint_with_atom_settings_passed_gets_fresh_heads(tmp_path):
    bert().save_pretrained(tmp_path)
    model = hf_atom.AutoAtomModel.from_pretrained(tmp_path, atom_config=hf_atom.AtomConfig(input_dim=16))
    assert model.atom_head.input_dim == 16


# -- SIGKILL while checkpointing ----------------------------------------------------------------------------------


def _wait_for(predicate, timeout, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and not process.is_alive():
            return predicate()
        time.sleep(0.001)
    return False


@pytest.mark.slow
def test_sigkill_while_checkpointing_then_resume_finishes_with_the_same_parameters(tmp_path):
    """Real training processes (forked from a preloaded server, so that each starts in well under a second) are
    killed with SIGKILL a random delay after a checkpoint folder appears, i.e. while Trainer writes it; then
    `resume_from_checkpoint=True` runs to the end, and the final parameters equal an uninterrupted run's."""
    max_steps = 8
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "hf_atom", "train_checkpointing"])
    rng = random.Random(0)

    def start(folder, resume, log):
        process = context.Process(
            target=train_checkpointing.run, args=(str(folder), max_steps, resume, str(folder / log)), daemon=True
        )
        process.start()
        return process

    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    process = start(reference_dir, False, "log.txt")
    process.join(120)
    assert process.exitcode == 0, (reference_dir / "log.txt").read_text()[-3000:]
    reference = load_file(str(reference_dir / "final.safetensors"))
    # how long writing one checkpoint takes here: from its folder's creation to trainer_state.json (written last)
    durations = [
        (reference_dir / f"checkpoint-{s}" / "trainer_state.json").stat().st_mtime
        - (reference_dir / f"checkpoint-{s}" / "config.json").stat().st_mtime
        for s in range(2, max_steps + 1)
    ]
    save_time = max(max(durations), 0.005)

    torn_seen = 0
    for trial, kills in enumerate((1, 1, 2)):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        for kill in range(kills):
            resume_point = newest_complete_checkpoint(folder)[0]
            first = int(resume_point.rsplit("-", 1)[1]) if resume_point else 0
            target = rng.randint(first + 1, max_steps - 1)
            process = start(folder, resume_point is not None, f"log{kill}.txt")
            assert _wait_for((folder / f"checkpoint-{target}").is_dir, 120, process), (
                folder / f"log{kill}.txt"
            ).read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 1.2 * save_time))
            os.kill(process.pid, signal.SIGKILL)
            process.join(30)
            assert process.exitcode == -signal.SIGKILL
            newest = max(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            torn = bool(checkpoint_problems(newest))
            torn_seen += torn
            print(f"trial {trial} kill {kill}: killed at {newest.name}, {'torn' if torn else 'complete'}")
        process = start(folder, True, "log_final.txt")
        process.join(120)
        log = (folder / "log_final.txt").read_text()
        assert process.exitcode == 0, log[-3000:]
        if torn:
            assert (
                f"skipped newer incomplete checkpoint(s) (probably a save that was interrupted): {newest.name}" in log
            )
        final = load_file(str(folder / "final.safetensors"))
        for name, param in reference.items():
            assert torch.equal(param, final[name]), (trial, name)
    print(f"torn newest checkpoints after kills: {torn_seen} of 4")


def test_a_finished_run_launched_again_with_resume_trains_nothing(full_run, tmp_path, caplog):
    folder, expected = full_run
    run = tmp_path / "run"
    shutil.copytree(folder / "checkpoint-6", run / "checkpoint-6")
    torch.manual_seed(1)  # a fresh model, as in a new process: the checkpoint's weights must come back
    model = bert()
    args = train_checkpointing.training_arguments(str(run), max_steps=6)
    trainer = hf_atom.AtomTrainer(model=model, args=args, train_dataset=train_checkpointing.text_dataset(32))
    with caplog.at_level(logging.WARNING, logger="hf_atom"):
        output = trainer.train(resume_from_checkpoint=True)
    assert "ends a finished run (step 6 of 6): nothing to train" in caplog.text
    assert output.global_step == 6 and trainer.state.global_step == 6
    for name, param in model.named_parameters():
        assert torch.equal(param, expected[name]), name
    assert sorted(os.listdir(run)) == ["checkpoint-6"]  # no checkpoint-7
    # a larger budget trains on from there
    args = train_checkpointing.training_arguments(str(run), max_steps=7)
    trainer = hf_atom.AtomTrainer(model=model, args=args, train_dataset=train_checkpointing.text_dataset(32))
    assert trainer.train(resume_from_checkpoint=True).global_step == 7
