"""Nothing lost in the single-run GAN recipes (issue 23, item 7): SIGKILL and resume, earlier runs in the output
folder, diverged runs, damaged MNIST files and the classifier cache."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes"))
TINY = ["--dataset", "grid", "--batch_size", "8", "--hidden_size", "16", "--disc_units", "8", "--num_train", "200",
        "--num_eval_samples", "50", "--num_threads", "1", "--disable_tqdm", "true", "--atom_tokens", "4",
        "--plot", "false"]  # fmt: skip


def _mixture(out, *flags):
    from gan_mixture import main

    return main(["--output_dir", str(out), *TINY, *flags])


def _same_networks(a, b) -> None:
    for name in ("generator/model.safetensors", "discriminator/model.safetensors", "atom_regularizer.safetensors"):
        left, right = load_file(str(a / name)), load_file(str(b / name))
        assert left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left), name


def test_a_run_killed_by_sigkill_resumes_to_the_same_networks_and_history(tmp_path):
    """Every run in its own process, as a job scheduler runs them (in this process, an earlier test's Trainer would
    leave its mixed precision in accelerate's shared state)."""
    flags = ["--method", "atom", "--max_steps", "400", "--eval_steps", "50", "--save_steps", "50"]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")

    def launch(out, *extra) -> subprocess.Popen:
        command = [sys.executable, os.path.join(ROOT, "recipes", "gan_mixture.py"), "--output_dir", str(out), *TINY]
        return subprocess.Popen([*command, *flags, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def finish(out, *extra) -> dict:
        process = launch(out, *extra)
        log = process.communicate()[0].decode()
        assert process.returncode == 0, log[-3000:]
        return json.loads((out / "results.json").read_text())

    reference = finish(tmp_path / "reference")
    killed = tmp_path / "killed"
    process = launch(killed)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint-100").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    log = process.communicate()[0].decode()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{log[-2000:]}"
    assert not (killed / "results.json").exists()

    resumed = finish(killed, "--resume_from_checkpoint", "true")
    assert resumed["resumed_from"] is not None and resumed["resumed_from"] != str(killed / "checkpoint-400")
    _same_networks(tmp_path / "reference", killed)
    for key in ("history", "atom_stats_mean", "final_d_loss", "final_g_loss"):  # as JSON: NaN == NaN there
        assert json.dumps(resumed[key]) == json.dumps(reference[key]), key


def test_a_half_written_checkpoint_is_never_resumed(tmp_path):
    flags = ["--method", "atom", "--max_steps", "20", "--save_steps", "10"]
    _mixture(tmp_path / "reference", *flags)
    run = tmp_path / "run"
    _mixture(run, *flags)
    os.remove(run / "results.json")
    (run / "checkpoint-20").rename(run / "checkpoint-20.tmp")  # as a run killed while saving leaves it
    results = _mixture(run, *flags, "--resume_from_checkpoint", "true")
    assert results["resumed_from"] == str(run / "checkpoint-10")
    _same_networks(tmp_path / "reference", run)
    assert not (run / "checkpoint-20.tmp").exists() and (run / "checkpoint-20").is_dir()


def test_an_earlier_run_in_the_output_folder_is_refused_or_deliberately_replaced(tmp_path, capsys):
    run = tmp_path / "run"
    first = _mixture(run, "--max_steps", "4", "--save_steps", "2")
    with pytest.raises(ValueError, match=r"holds an earlier run \(checkpoint-2, checkpoint-4, results.json\)"):
        _mixture(run, "--max_steps", "4", "--save_steps", "2")
    # re-launched with resume (a job scheduler): nothing trains, the results stay
    again = _mixture(run, "--max_steps", "4", "--save_steps", "2", "--resume_from_checkpoint", "true")
    assert again == json.loads((run / "results.json").read_text()) and again["final"] == first["final"]
    assert "finished: nothing to train" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"other settings \(--max_steps 4 -> 8\)"):
        _mixture(run, "--max_steps", "8", "--resume_from_checkpoint", "true")
    with pytest.raises(ValueError, match="pass one of them"):
        _mixture(run, "--max_steps", "4", "--resume_from_checkpoint", "true", "--overwrite_output_dir", "true")
    _mixture(run, "--max_steps", "3", "--overwrite_output_dir", "true")  # the old checkpoints are gone
    assert sorted(p.name for p in run.glob("checkpoint-*")) == []
    assert json.loads((run / "results.json").read_text())["args"]["max_steps"] == 3
    with pytest.raises(ValueError, match="holds no complete checkpoint to continue"):
        _mixture(tmp_path / "empty", "--max_steps", "3", "--resume_from_checkpoint", "true")
    with pytest.raises(ValueError, match="is not a complete GAN checkpoint"):
        _mixture(tmp_path / "x", "--max_steps", "3", "--resume_from_checkpoint", str(tmp_path))


@pytest.mark.parametrize("method", ["gan", "atom"])
def test_a_diverged_run_stops_with_an_error_and_writes_no_results(method, tmp_path):
    from _gan_common import GanDivergedError

    out = tmp_path / "run"
    with pytest.raises(GanDivergedError, match=r"(diverged: a loss became NaN or infinite at step|diverged at step)"):
        _mixture(out, "--method", method, "--learning_rate", "1e30", "--max_steps", "30", "--save_steps", "10")
    assert not (out / "results.json").exists() and not list(out.glob("checkpoint-*"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--adam_beta1", "1.5"], r"--adam_beta1 must be in \[0, 1\)"),
        (["--adam_beta2", "nan"], r"--adam_beta2 must be in \[0, 1\)"),
        (["--learning_rate", "inf"], "--learning_rate must be a finite number > 0"),
        (["--batch_size", "1"], "--batch_size must be >= 2"),
    ],
)
def test_bad_training_flags_fail_at_parsing(flags, message, tmp_path):
    from gan_mixture import parse

    with pytest.raises(ValueError, match=message):
        parse(["--output_dir", str(tmp_path), *flags])


def test_an_output_dir_that_is_a_file_is_named(tmp_path):
    from gan_stacked_mnist import parse

    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        parse(["--output_dir", str(tmp_path / "file")])


# -- stacked MNIST: damaged files and the classifier cache -------------------------------------------------------


def _write_idx(path, magic, shape, payload: bytes) -> None:
    with gzip.open(path, "wb") as handle:
        handle.write(np.array([magic, *shape], dtype=">i4").tobytes() + payload)


def _fake_mnist(folder, n=120, labels=None):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    _write_idx(
        folder / "t10k-images-idx3-ubyte.gz", 2051, (n, 28, 28), rng.integers(0, 256, n * 784, np.uint8).tobytes()
    )
    labels = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049, (len(labels),), labels.tobytes())
    return folder


def _damage(kind):
    def apply(folder):
        images, labels = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
        if kind == "empty":
            with gzip.open(images, "wb"):
                pass
        elif kind == "header_only":
            _write_idx(images, 2051, (120, 28, 28), b"")
        elif kind == "short":
            _write_idx(images, 2051, (120, 28, 28), bytes(784 * 50))
        elif kind == "not_gzip":
            images.write_bytes(b"not a gzip file at all")
        elif kind == "swapped":
            images.write_bytes(labels.read_bytes())
        elif kind == "fewer_labels":
            _write_idx(labels, 2049, (100,), bytes(100))
        elif kind == "label_11":
            _write_idx(labels, 2049, (120,), bytes([11] * 120))

    return apply


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "too short for an IDX header"),
        ("header_only", r"declares 120 items .* holds 0 bytes"),
        ("short", r"declares 120 items .* holds 39200 bytes"),
        ("not_gzip", "is not a whole gzip file"),
        ("swapped", r"is not an IDX image file \(magic 2049"),
        ("fewer_labels", "has 100 labels for the 120 images"),
        ("label_11", "holds label 11"),
    ],
)
def test_damaged_mnist_files_are_named(kind, message, tmp_path):
    from gan_stacked_mnist import load_mnist

    folder = _fake_mnist(tmp_path / "mnist")
    _damage(kind)(folder)
    with pytest.raises(ValueError, match=message):
        load_mnist(str(folder))


def _smnist(out, data, *flags):
    from gan_stacked_mnist import main

    return main(["--data_dir", str(data), "--output_dir", str(out), "--classifier_epochs", "1", "--gen_channels", "4",
                 "--disc_channels", "4", "--latent_dim", "8", "--num_eval_samples", "30", "--max_steps", "2",
                 "--batch_size", "6", "--num_threads", "1", "--disable_tqdm", "true", *flags])  # fmt: skip


def test_the_classifier_cache_is_keyed_by_its_settings_and_data(tmp_path, capsys):
    data = _fake_mnist(tmp_path / "mnist")
    cache = tmp_path / "cache"
    first = _smnist(tmp_path / "a", data, "--classifier_dir", str(cache), "--classifier_train", "100")
    assert "accurate on held-out digits" in capsys.readouterr().out  # random pixels: a useless classifier, said so
    entries = sorted(p.parent for p in cache.glob("*/classifier_info.json"))
    assert len(entries) == 1
    stamp = (entries[0] / "model.safetensors").stat().st_mtime_ns
    again = _smnist(tmp_path / "b", data, "--classifier_dir", str(cache), "--classifier_train", "100")
    assert again["classifier"] == first["classifier"]  # the same settings and data: read from the cache
    assert (entries[0] / "model.safetensors").stat().st_mtime_ns == stamp
    other = _smnist(tmp_path / "c", data, "--classifier_dir", str(cache), "--classifier_train", "110")
    assert other["classifier"]["num_test"] == 10 and len(list(cache.glob("*/classifier_info.json"))) == 2
    relabelled = _fake_mnist(tmp_path / "mnist2", labels=((np.arange(120) + 1) % 10).astype(np.uint8))
    _smnist(tmp_path / "d", relabelled, "--classifier_dir", str(cache), "--classifier_train", "100")
    assert len(list(cache.glob("*/classifier_info.json"))) == 3  # other data: another classifier

    (entries[0] / "classifier_info.json").write_text('{"accuracy": 0.')  # torn by hand or an old version
    torn = _smnist(tmp_path / "e", data, "--classifier_dir", str(cache), "--classifier_train", "100")
    assert "cannot be read" in capsys.readouterr().out and torn["classifier"]["num_test"] == 20
    assert json.loads((entries[0] / "classifier_info.json").read_text())["num_test"] == 20


def test_a_classifier_train_larger_than_the_data_is_named(tmp_path):
    data = _fake_mnist(tmp_path / "mnist")
    with pytest.raises(ValueError, match=r"--classifier_train 500 leaves no image .* holds 120 images"):
        _smnist(tmp_path / "run", data, "--classifier_train", "500")


@pytest.mark.slow
def test_a_two_process_run_resumes_each_processs_streams(tmp_path):
    """`accelerate launch` with 2 gloo processes: each process saves and restores its own random streams, so the
    resumed run ends with the uninterrupted run's networks and history."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--config_file",
              os.path.join(ROOT, "recipes", "accelerate_configs", "cpu_2proc.yaml"), "--main_process_port", str(port),
              os.path.join(ROOT, "recipes", "gan_mixture.py"), *TINY, "--cpu", "true", "--method", "atom",
              "--max_steps", "20", "--eval_steps", "10", "--save_steps", "10"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")

    def run(out, *extra):
        done = subprocess.run([*launch, "--output_dir", str(out), *extra], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    run(tmp_path / "reference")
    assert {p.name for p in (tmp_path / "reference" / "checkpoint-10").glob("gan_state_*")} == {
        "gan_state_0.pt",
        "gan_state_1.pt",
    }
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    os.rename(tmp_path / "reference" / "checkpoint-10", resumed / "checkpoint-10")
    run(resumed, "--resume_from_checkpoint", "true")
    _same_networks(tmp_path / "reference", resumed)
    reference, results = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "reference", resumed))
    assert results["num_processes"] == 2 and results["resumed_from"] == str(resumed / "checkpoint-10")
    assert json.dumps(results["history"]) == json.dumps(reference["history"])
