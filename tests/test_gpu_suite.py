"""`bash benchmarks/gpu_suite.sh --dry_run`: every part of the GPU suite runs on the CPU at tiny sizes (issue 19).

One dry run (module fixture) serves every test: the loss alone, the training step of the three architectures and the
GAN protocol program; the tests check what each part writes, not how fast it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "benchmarks", "gpu_suite.sh")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_suite")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", SUITE, "--dry_run", "--out", str(out)], capture_output=True, text=True, env=env,
                            timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, json.loads((out / "gpu_suite.json").read_text())


def test_every_part_ran_and_has_a_table(dry_run):
    out, record = dry_run
    assert record["dry_run"] and record["card"] == "cpu"
    assert list(record["parts"]) == ["loss", "train_step", "gan_protocol"]
    combined = (out / "tables.md").read_text()
    for part in record["parts"]:
        assert record["parts"][part]["part_wall_s"] > 0
        assert f"## {part}" in combined and (out / part / "tables.md").read_text() in combined


def test_loss_part_measures_eager_compiled_and_fused_on_the_same_inputs(dry_run):
    _, record = dry_run
    rows = record["parts"]["loss"]["rows"]
    assert [r["variant"] for r in rows] == ["eager", "compiled", "fused_objective"]
    assert all(r["ms"] > 0 and r["abs_diff_vs_first"] < 1e-6 for r in rows)  # one value: the same L_A
    assert rows[0]["loss"] != 0


def test_train_step_part_counts_syncs_and_ops_of_both_trainers(dry_run):
    _, record = dry_run
    rows = {row["model"]: row for row in record["parts"]["train_step"]["rows"]}
    assert list(rows) == ["vit_b16", "gpt2_small", "smollm2_135m"]
    for row in rows.values():
        assert row["trainer_median_step_ms"] > 0 and row["atom_trainer_median_step_ms"] > 0
        assert row["added_syncs_per_step"] <= 0  # issue 19: an atom step adds no host synchronisation
        assert 0 < row["added_ops_per_step"] <= 160  # the heads + the fused objective, forward and backward
        assert row["atom_trainer_throughput"] > 0 and row["unit"] in ("images/s", "tokens/s")
        assert {r["trainer"] for r in row["rounds"]} == {"trainer", "atom_trainer"}


def test_gan_protocol_part_runs_both_ensembles(dry_run):
    out, record = dry_run
    part = record["parts"]["gan_protocol"]
    assert part["steps"] == 200 and part["members"] == {"gan_atom": 16, "pacgan2": 4}
    runs = os.listdir(out / "gan_protocol" / "runs")
    assert len(runs) == 20 and "ring__atom_w0.01__s1.json" in runs and "grid__pacgan2__s0.json" in runs
    tables = (out / "gan_protocol" / "tables.md").read_text()
    assert tables.count("| atom_w0.1 | 2 |") == 2 and "control" in tables
    for picture in ("curves.png", "scatter.png"):
        assert (out / "gan_protocol" / picture).stat().st_size > 10_000


def test_unknown_part_and_missing_gpu_are_refused():
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", SUITE, "--parts", "nope", "--dry_run"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "unknown ['nope']" in result.stderr
    result = subprocess.run(["bash", SUITE, "--parts", "loss"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "no CUDA device is visible" in result.stderr
