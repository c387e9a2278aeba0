"""Smoke tests of the recipes and the main job on tiny configs and small slices (seconds each)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import _llama_config, bert, tiny_tokenizer

import hf_atom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))

import image_classification  # noqa: E402
import text_classification  # noqa: E402

COMMON = [
    "--report_to",
    "none",
    "--use_cpu",
    "true",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--per_device_eval_batch_size",
    "8",
]


def results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_image_recipe_on_digits(tmp_path):
    out = tmp_path / "digits"
    image_classification.main(
        [
            "--output_dir",
            str(out),
            "--max_train_samples",
            "32",
            "--max_eval_samples",
            "16",
            "--atom_weight",
            "0.1",
            *COMMON,
        ]
    )
    result = results(out)
    assert result["dataset"] == "digits" and result["num_train"] == 32 and result["num_test"] == 16
    assert 0 <= result["test"]["accuracy"] <= 1 and "atom_loss" in result["validation"]
    model = hf_atom.AutoAtomModel.from_pretrained(out)
    assert type(model).__name__ == "AtomViTForImageClassification" and model.config.num_labels == 10
    assert (out / "preprocessor_config.json").is_file() and (out / "README.md").is_file()


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, value in (("cats", 40), ("dogs", 200)):
        (root / label).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(value, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("architecture", ["resnet", "convnext"])
def test_image_recipe_on_imagefolder_cnn_baseline(tmp_path, image_folder, architecture):
    out = tmp_path / "run"
    image_classification.main(
        [
            "--train_dir",
            str(image_folder),
            "--output_dir",
            str(out),
            "--scratch_architecture",
            architecture,
            "--atom_weight",
            "0",
            "--validation_split",
            "0.2",
            "--test_split",
            "0.2",
            *COMMON,
        ]
    )
    result = results(out)
    assert result["atom_weight"] == 0 and (result["num_train"], result["num_validation"], result["num_test"]) == (
        12,
        4,
        4,
    )
    model = hf_atom.AutoAtomModel.from_pretrained(out)
    assert model.config.id2label == {0: "cats", 1: "dogs"}


def test_image_recipe_errors(tmp_path, image_folder):
    with pytest.raises(ValueError, match="needs --train_dir"):
        image_classification.main(["--dataset_name", "imagefolder", "--output_dir", str(tmp_path), *COMMON])
    with pytest.raises(ValueError, match="--image_column 'photo' is not a column"):
        image_classification.main(
            ["--train_dir", str(image_folder), "--image_column", "photo", "--output_dir", str(tmp_path), *COMMON]
        )
    with pytest.raises(ValueError, match="Could not load dataset 'no-such/dataset'"):
        image_classification.main(["--dataset_name", "no-such/dataset", "--output_dir", str(tmp_path), *COMMON])


@pytest.fixture(scope="module")
def tiny_text_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_models")
    torch.manual_seed(0)
    bert().save_pretrained(root / "bert")
    tiny_tokenizer().save_pretrained(root / "bert")
    import transformers as T

    T.LlamaForSequenceClassification(_llama_config(num_labels=2)).save_pretrained(root / "llama")
    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None  # decoders often ship without one: the recipe must add it
    tokenizer.eos_token = "[SEP]"
    tokenizer.save_pretrained(root / "llama")
    return root


def write_raw_cola(path: Path, rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", 'ran "far"', "away"]
    lines = [
        f"gj04\t{int(rng.integers(0, 2))}\t{'*' if rng.random() < 0.3 else ''}\t{' '.join(rng.choice(words, 4))} ."
        for _ in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")


def write_raw_poem(path: Path, rows: int, labels=(-1, 0, 1, 2)):
    rng = np.random.default_rng(1)
    words = ["the", "green", "ideas", "sleep", "far", "away", "dog"]
    path.write_text(
        "\n".join(f"{i}\t{' '.join(rng.choice(words, 5))},\t{labels[i % len(labels)]}" for i in range(rows))
    )


@pytest.mark.parametrize("model_name", ["bert", "llama"])
def test_text_recipe_on_raw_cola(tmp_path, tiny_text_models, model_name):
    write_raw_cola(tmp_path / "train.tsv", 24)
    write_raw_cola(tmp_path / "dev1.tsv", 6, seed=1)
    write_raw_cola(tmp_path / "dev2.tsv", 6, seed=2)
    out = tmp_path / "out"
    text_classification.main(
        [
            "--model_name_or_path",
            str(tiny_text_models / model_name),
            "--train_file",
            str(tmp_path / "train.tsv"),
            "--validation_file",
            f"{tmp_path / 'dev1.tsv'},{tmp_path / 'dev2.tsv'}",
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    result = results(out)
    assert result["num_validation"] == 12 and set(result["validation"]) >= {"mcc", "accuracy", "f1_macro", "atom_loss"}
    model = hf_atom.AutoAtomModel.from_pretrained(out)
    assert model.config.pad_token_id is not None


def test_text_recipe_on_raw_poem_with_test_split(tmp_path, tiny_text_models):
    write_raw_poem(tmp_path / "train.tsv", 16)
    write_raw_poem(tmp_path / "test.tsv", 6, labels=(-1, 0, 1))
    out = tmp_path / "out"
    text_classification.main(
        [
            "--model_name_or_path",
            str(tiny_text_models / "bert"),
            "--train_file",
            str(tmp_path / "train.tsv"),
            "--test_file",
            str(tmp_path / "test.tsv"),
            "--atom_weight",
            "0",
            "--atom_exclude_special_tokens",
            "true",
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    result = results(out)
    assert result["labels"] == ["mixed", "negative", "no_impact", "positive"]
    assert result["num_test"] == 6 and "accuracy" in result["test"]


def test_text_recipe_errors(tmp_path, tiny_text_models):
    write_raw_poem(tmp_path / "train.tsv", 8, labels=(0, 1))
    write_raw_poem(tmp_path / "dev.tsv", 4, labels=(-1, 2))
    model = ["--model_name_or_path", str(tiny_text_models / "bert"), "--output_dir", str(tmp_path / "o"), *COMMON]
    with pytest.raises(ValueError, match="Give a dataset"):
        text_classification.main(model)
    with pytest.raises(ValueError, match=r"labels \['mixed', 'negative'\] that the training split lacks"):
        text_classification.main(
            ["--train_file", str(tmp_path / "train.tsv"), "--validation_file", str(tmp_path / "dev.tsv"), *model]
        )
    with pytest.raises(ValueError, match="No text column 'body'"):
        text_classification.main(["--train_file", str(tmp_path / "train.tsv"), "--text_column", "body", *model])
    with pytest.raises(ValueError, match="does not exist"):
        text_classification.main(["--train_file", str(tmp_path / "missing.tsv"), *model])


def test_recipes_read_yaml_arguments(tmp_path):
    config = tmp_path / "args.yaml"
    config.write_text(
        f"output_dir: {tmp_path / 'out'}\nmax_train_samples: 16\nmax_eval_samples: 8\nmax_steps: 1\n"
        "per_device_train_batch_size: 8\nreport_to: none\nuse_cpu: true\nsave_strategy: 'no'\n"
        "atom_weight: 0.2\n"
    )
    result = image_classification.main([str(config)])
    assert result["atom_weight"] == 0.2 and result["num_train"] == 16


@pytest.mark.slow
def test_main_job_runs_end_to_end(tmp_path):
    out = tmp_path / "main"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "recipes" / "main_job.py"),
            "--output_dir",
            str(out),
            "--epochs",
            "1",
            "--num_pictures",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| baseline | 0 |" in completed.stdout and "| atom | 0.1 |" in completed.stdout
    assert "identical logits and q" in completed.stdout
    comparison = json.loads((out / "comparison.json").read_text())
    assert [row["run"] for row in comparison["runs"]] == ["baseline", "atom"]
    assert (out / "training_curves.png").is_file() and (out / "importance" / "index.html").is_file()
    assert len(list((out / "importance").glob("*.png"))) == 2
