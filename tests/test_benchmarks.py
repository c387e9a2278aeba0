"""The benchmark scripts still run (tiny sizes; no timing is asserted: benchmarks print numbers, tests don't)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_loss_speed_script_runs_and_variants_agree(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "loss_speed.py"),
            "--device",
            "cpu",
            "--batch_sizes",
            "3",
            "5",
            "--tokens",
            "6",
            "--dim",
            "4",
            "--no_compile",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "loss_speed_cpu.json").read_text())["rows"]
    assert {row["variant"] for row in rows} == {"naive_loop", "naive_vectorized", "factorised"}
    assert all(row["abs_diff_vs_first"] < 1e-5 for row in rows)  # the three forms compute the same loss
    assert "| B | variant |" in result.stdout
