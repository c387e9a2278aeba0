"""Pairs across processes (2 gloo processes on CPU) and a full AtomTrainer run under `accelerate launch`."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import bert as tiny_bert

import hf_atom

SCRIPTS = Path(__file__).parent / "scripts"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_in_own_session(command: list[str], *, timeout: int, **popen_kwargs) -> tuple[int, str]:
    """Runs `command` in a session of its own; on timeout kills the whole session (launcher AND its workers, which
    would otherwise live on holding ports and cores) and fails with the output so far."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen_kwargs
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{command[0]} still running after {timeout} s; output so far:\n{output[-6000:]}")
    return proc.returncode, output


def run_two_processes(script: Path, *args: str, timeout: int = 300) -> None:
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": "2",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS.parent)]),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for rank in range(2)
    ]
    try:
        outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    except subprocess.TimeoutExpired:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"{script.name} still running after {timeout} s")
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]


def test_cross_process_gradient_equals_single_process(tmp_path):
    sys.path.insert(0, str(SCRIPTS))
    from distributed_gradient import make_problem

    run_two_processes(SCRIPTS / "distributed_gradient.py", str(tmp_path))
    hidden, mask, model = make_problem()
    q, p = model(hidden)
    loss = hf_atom.AtomLoss(softening=0.2, step="opposite", token_reduction="mean")(q, p, mask, return_parts=True)
    loss.loss.backward()
    expected = [param.grad for param in model.parameters()]
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(result["loss"], loss.loss.detach(), rtol=1e-12, atol=0)
        assert int(result["num_pairs"]) == int(loss.num_pairs) == 6  # 4 valid samples
        for got, want in zip(result["grads"], expected):
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-14)


def test_memory_queue_is_the_same_on_both_processes_and_gradients_match(tmp_path):
    """The cross-batch memory (D9) under 2 processes: both hold the same queue (the gathered batches), equal to a
    single process's on the concatenated batches; the averaged gradient and the loss are the single-process ones."""
    sys.path.insert(0, str(SCRIPTS))
    from distributed_memory import make_problem, run

    run_two_processes(SCRIPTS / "distributed_memory.py", str(tmp_path))
    hidden, mask, model = make_problem()
    memory, grads, loss, pairs = run(model, hidden, mask)
    ranks = [torch.load(tmp_path / f"memory_rank{rank}.pt") for rank in range(2)]
    for result in ranks:
        assert result["memory"].keys() == memory.state_dict().keys()
        for name, value in memory.state_dict().items():
            assert torch.equal(result["memory"][name], ranks[0]["memory"][name]), name  # the same on both
            assert torch.allclose(result["memory"][name].double(), value.double(), rtol=1e-12, atol=1e-14), name
        assert int(result["pairs"]) == int(pairs) == 6 * 7
        assert torch.allclose(result["loss"], loss, rtol=1e-12, atol=0)
        for got, want in zip(result["grads"], grads):
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-14)


def accelerate_command(config: str, *extra: str) -> list[str]:
    return [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        str(REPO / "recipes" / "accelerate_configs" / config),
        *extra,
        "--main_process_port",  # never accelerate's fixed default, 29500, which a parallel job may hold
        str(free_port()),
    ]


def launch_train_tiny(command: list[str], output_dir: Path) -> str:
    """Runs tests/scripts/train_tiny.py (2 processes, 4 steps, cross-process pairs) under `command`; returns its
    output after checking that both processes finished."""
    script = [
        str(SCRIPTS / "train_tiny.py"),
        "--output_dir",
        str(output_dir),
        "--atom_gather_across_processes",
        "true",
    ]
    env = {
        **os.environ,
        "MASTER_PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS.parent)]),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    returncode, output = run_in_own_session([*command, *script], timeout=420, env=env, cwd=output_dir)
    assert returncode == 0, output[-6000:]
    assert output.count("world_size=2") == 2 and "rank 1 finished" in output, output[-6000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["accelerate", "torchrun"])
def test_two_process_launch_trains_and_saves(tmp_path, launcher):
    if launcher == "accelerate":
        command = accelerate_command("cpu_2proc.yaml")
    else:
        command = [
            str(Path(sys.executable).with_name("torchrun")),
            "--nproc_per_node",
            "2",
            "--master_port",
            str(free_port()),
        ]
    output = launch_train_tiny(command, tmp_path)
    checkpoint = tmp_path / "checkpoint-4"
    model = hf_atom.AutoAtomModel.from_pretrained(checkpoint)
    assert type(model).__name__ == "AtomBertForSequenceClassification"
    assert "hf_atom" in (checkpoint / "README.md").read_text()
    # global pairs: 2 processes x 4 samples -> C(8, 2) = 28 pairs per step
    assert re.search(r"'atom_pairs': '?28(\.0)?'?[,}]", output), output[-2000:]


@pytest.mark.slow
def test_fsdp_matches_ddp(tmp_path):
    """AtomTrainer under FSDP2 (2 CPU processes, gloo; accelerate's FSDP path, see scripts/train_fsdp_cpu.py) reaches
    the parameters of DDP on the same data with the same cross-process pairs, and its sharded checkpoint reloads."""
    from safetensors.torch import load_file

    ddp = launch_train_tiny(accelerate_command("cpu_2proc.yaml"), tmp_path / "ddp")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS.parent), str(SCRIPTS)]),
    }
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "--master_port"]
    command = [*torchrun, str(free_port()), str(SCRIPTS / "train_fsdp_cpu.py"), str(tmp_path / "fsdp")]
    (tmp_path / "fsdp").mkdir()
    returncode, fsdp = run_in_own_session(command, timeout=420, env=env, cwd=tmp_path)
    assert returncode == 0 and "rank 1 finished" in fsdp, fsdp[-6000:]

    assert ddp.count("fsdp=False sharded_parameters=0") == 2, ddp[-3000:]
    assert fsdp.count("fsdp=True sharded_parameters=45") == 2, fsdp[-3000:]  # every parameter a DTensor shard
    pairs = r"'atom_pairs': '?28(\.0)?'?[,}]"  # 2 processes x 4 samples -> C(8, 2) pairs per step, both ways
    assert len(re.findall(pairs, ddp)) == 4 and len(re.findall(pairs, fsdp)) == 4, (ddp[-2000:], fsdp[-2000:])
    assert "sharded checkpoint round trip: 45 tensors equal" in fsdp

    want = load_file(tmp_path / "ddp" / "checkpoint-4" / "model.safetensors")
    got = torch.load(tmp_path / "fsdp" / "full_state_dict.pt")
    assert set(got) == set(want) and any(key.startswith("atom_head.") for key in got)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
    torch.manual_seed(0)
    initial = tiny_bert().state_dict()  # training moved the parameters: not a comparison of two initial states
    assert max((want[key] - initial[key]).abs().max().item() for key in initial) > 1e-5
