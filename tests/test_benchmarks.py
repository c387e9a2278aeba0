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


def test_input_pipeline_script_runs_both_pixel_paths(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "input_pipeline.py"),
            "--num_images",
            "6",
            "--batch_size",
            "3",
            "--workers",
            "0",
            "--image_size",
            "32",
            "--model_steps",
            "0",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "input_pipeline_cpu.json").read_text())
    assert [(row["pipeline"], row["workers"]) for row in report["rows"]] == [("processor", 0), ("fast", 0)]
    assert all(row["images_per_s"] > 0 and row["images_per_cpu_s"] > 0 for row in report["rows"])
    assert set(report["stage_ms_per_image"]) == {"decode + RGB", "random crop + flip", "processor", "fast pixels"}
    assert "| pixels | DataLoader workers | images/s (wall) | images per CPU-second |" in result.stdout


def test_gan_benchmark_grid_runs_the_recipes_it_names():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gan_benchmarks

    main = list(gan_benchmarks.runs("main"))
    assert len(main) == 2 * 3 * len(gan_benchmarks.SEEDS) and len({name for name, _, _ in main}) == len(main)
    for group in ("main", "ablations", "smnist", "smnist_long"):
        for _, recipe, flags in gan_benchmarks.runs(group):
            assert (REPO / "recipes" / recipe).is_file() and "--seed" in flags
    assert gan_benchmarks.RESULTS == str(REPO / "docs" / "results" / "gan")  # where gan_summarize.py reads
