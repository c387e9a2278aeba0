"""The benchmark scripts still run (tiny sizes; no timing is asserted: benchmarks print numbers, tests don't)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_atom.attribution import ATTRIBUTION_METHODS

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


def test_faithfulness_script_scores_every_method_with_its_cost(tmp_path):
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from tiny_models import bert, tiny_tokenizer

    from hf_atom import with_atom

    torch.manual_seed(0)
    with_atom(bert()).save_pretrained(tmp_path / "model")
    tiny_tokenizer().save_pretrained(tmp_path / "model")
    (tmp_path / "test.tsv").write_text(
        "0\tthe cat sat on the mat\t1\n1\ta dog ran far away\t0\n2\tgreen ideas sleep\t1\n"
    )
    out = tmp_path / "faithfulness.json"
    argv = ["--text_model", str(tmp_path / "model"), "--text_file", str(tmp_path / "test.tsv"), "--ig_steps", "4"]
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "faithfulness.py"), *argv, "--max_samples", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (study,) = json.loads(out.read_text())["text"]
    assert study["texts"] == 2
    methods = study["methods"]
    assert set(methods) == set(ATTRIBUTION_METHODS)  # every registered method (tests/test_attribution.py names them)
    assert methods["ig"]["forwards"]["mean"] == 1 + 4 + 2 and methods["ig"]["backwards"]["mean"] == 4
    assert methods["q"]["forwards"]["mean"] == 1 and methods["q"]["backwards"]["mean"] == 0
    assert methods["occlusion"]["forwards"]["mean"] == ((3 + 6) + (3 + 5)) / 2  # tokens + 3 per text
    for values in methods.values():
        assert 0 <= values["deletion_auc"]["mean"] <= 1 and values["ms"]["mean"] > 0
        assert values["deletion_auc"]["mean"] == pytest.approx(sum(values["deletion_auc"]["values"]) / 2)
        assert {"comprehensiveness@10", "sufficiency@50", "insertion_auc"} <= set(values)
    assert "| method | deletion AUC ↓ |" in result.stdout


def test_memory_study_pairs_runs_by_seed(tmp_path):
    """benchmarks/memory_study.py on hand-made CoLA results and generation evaluations: differences are per seed."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import memory_study

    mcc = {("atom_m0", 0): 0.25, ("atom_m0", 1): 0.27, ("atom_m1024", 0): 0.26, ("atom_m1024", 1): 0.30}
    for (variant, seed), value in mcc.items():
        folder = tmp_path / "cola" / variant / f"seed{seed}"
        folder.mkdir(parents=True)
        results = {"train_runtime_s": 10.0, "validation": {"mcc": value, "accuracy": 0.7, "atom_memory_pairs": 0.0}}
        (folder / "results.json").write_text(json.dumps(results))
    (tmp_path / "lm_eval").mkdir()
    metrics = dict.fromkeys(memory_study.LM_METRICS, 0.5) | {"heldout_ppl": 300.0, "base_ppl_of_samples": 200.0}
    for name, distinct_2 in (("w0.1_m0_s0", 0.80), ("w0.1_m0_s1", 0.82), ("w0.1_m1024_s0", 0.85),
                             ("w0.1_m1024_s1", 0.86), ("base_s0", 0.8)):  # fmt: skip
        temperatures = {"1.0": metrics | {"distinct_2": distinct_2, "mean_words": 7.0}}
        (tmp_path / "lm_eval" / f"{name}__{name}.json").write_text(json.dumps({"temperatures": temperatures}))
    record = memory_study.main(["--root", str(tmp_path), "--out", str(tmp_path / "out")])
    row = record["cola"]["mcc"]
    assert row["seeds"] == [0, 1] and row["higher"] == 2
    assert abs(row["diff"]["mean"] - 0.02) < 1e-12 and abs(row["per_seed_diff"][1] - 0.03) < 1e-12
    lm = record["lm"]["w0.1"]["1.0"]["distinct_2"]
    assert abs(lm["diff"]["mean"] - 0.045) < 1e-12 and lm["n"] == 2
    assert set(record["lm_summary"]) == {"baseline (λ 0)", "λ 0.1, M 0", "λ 0.1, M 1024"}
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| validation mcc |" in tables and (tmp_path / "out" / "lm_diversity_quality.png").is_file()
