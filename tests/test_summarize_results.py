"""benchmarks/summarize_results.py turns results.json files into mean ± std tables."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import summarize_results  # noqa: E402


def write(root: Path, task: str, variant: str, seed: int, results: dict) -> None:
    folder = root / task / variant / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"train_runtime_s": 10.0, "num_train": 5, **results}))


def test_tables_with_test_split_and_with_validation_mcc(tmp_path, capsys):
    for seed, (base, atom) in enumerate([(0.8, 0.9), (0.6, 0.7)]):
        write(tmp_path, "poem", "baseline", seed, {"test": {"accuracy": base, "f1_macro": base / 2}})
        write(tmp_path, "poem", "atom", seed, {"test": {"accuracy": atom, "f1_macro": atom / 2}})
    write(tmp_path, "cola", "atom", 0, {"validation": {"mcc": 0.3, "accuracy": 0.7}})
    summarize_results.main(["--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| baseline | 2 | 0.7000 ± 0.1414 |" in out and "| atom | 2 | 0.8000 ± 0.1414 |" in out
    assert out.index("| baseline |") < out.index("| atom | 2")  # baseline first
    assert "val MCC (mean ± std)" in out and "| atom | 1 | 0.3000 ± n/a | 0.7000 ± n/a |" in out
