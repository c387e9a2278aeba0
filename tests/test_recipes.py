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
    correct = result["test"]["accuracy"] * 16  # a share of the 16 test images: a whole number of them
    assert abs(correct - round(correct)) < 1e-6 and "atom_loss" in result["validation"]
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
    with pytest.raises(ValueError, match="No image column 'photo' among"):
        image_classification.main(
            ["--train_dir", str(image_folder), "--image_column", "photo", "--output_dir", str(tmp_path), *COMMON]
        )
    with pytest.raises(ValueError, match="Could not load dataset 'no-such/dataset'"):
        image_classification.main(["--dataset_name", "no-such/dataset", "--output_dir", str(tmp_path), *COMMON])
    # The user's remove_unused_columns is never changed behind their back: asked for, it is refused by name.
    with pytest.raises(ValueError, match="remove_unused_columns=True makes the Trainer drop the raw image column"):
        image_classification.main(["--remove_unused_columns", "true", "--output_dir", str(tmp_path), *COMMON])


def test_image_recipe_defaults_remove_unused_columns_to_false(tmp_path):
    import _common
    import _image

    arguments = (_image.ModelArguments, _image.DataArguments, hf_atom.AtomTrainingArguments)
    flags = ["--output_dir", str(tmp_path)]
    *_, default = _common.parse_arguments(arguments, flags, defaults=_image.TRAINING_DEFAULTS)
    *_, chosen = _common.parse_arguments(
        arguments, [*flags, "--remove_unused_columns", "true"], defaults=_image.TRAINING_DEFAULTS
    )
    *_, elsewhere = _common.parse_arguments(arguments, flags)  # other recipes keep the Trainer's default
    assert (default.remove_unused_columns, chosen.remove_unused_columns, elsewhere.remove_unused_columns) == (
        False,
        True,
        True,
    )
    config = tmp_path / "args.yaml"
    config.write_text(f"output_dir: {tmp_path}\n")
    assert (
        _common.parse_arguments(arguments, [str(config)], defaults=_image.TRAINING_DEFAULTS)[2].remove_unused_columns
        is False
    )
    config.write_text(f"output_dir: {tmp_path}\nremove_unused_columns: true\n")
    assert (
        _common.parse_arguments(arguments, [str(config)], defaults=_image.TRAINING_DEFAULTS)[2].remove_unused_columns
        is True
    )


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


# ---------------------------------------------------------------------------------------------------------
# Hub layouts: parquet splits, a ClassLabel label column, an unlabelled test split (label -1)
# ---------------------------------------------------------------------------------------------------------

IMAGENET_CLASSES = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark"]


def jpeg_rows(count: int, seed: int, prefix: str) -> list[dict]:
    """Encoded JPEGs with file names, as the Hub's image parquet files store them (bytes + path)."""
    import io

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (int(rng.integers(18, 30)), 24, 3), dtype=np.uint8)).save(buffer, "JPEG")
        rows.append({"bytes": buffer.getvalue(), "path": f"{prefix}_{i:08d}.JPEG"})
    return rows


def write_imagenet_layout(root: Path, test_labels: list[int] | None = None) -> Path:
    """ILSVRC/imagenet-1k's layout: data/{train,validation,test}-NNNNN-of-NNNNN.parquet, `image` + ClassLabel
    `label`, the test split unlabelled (-1)."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=IMAGENET_CLASSES)})
    test_labels = [-1] * 5 if test_labels is None else test_labels
    for split, count, labels in (
        ("train", 18, [i % 3 for i in range(18)]),
        ("validation", 6, [i % 3 for i in range(6)]),
        ("test", len(test_labels), test_labels),
    ):
        rows = jpeg_rows(count, seed=len(split), prefix=f"ILSVRC2012_{split}")
        dataset = datasets.Dataset.from_dict({"image": rows, "label": labels}, features=features)
        (root / "data").mkdir(parents=True, exist_ok=True)
        dataset.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


IMAGE_SCRATCH = ["--image_size", "16", "--per_device_train_batch_size", "4"]


@pytest.mark.parametrize("streaming", [False, True])
def test_image_recipe_on_imagenet_layout_predicts_unlabelled_test(tmp_path, streaming, monkeypatch):
    from _image_transforms import FastPixels

    built = []
    from_processor = FastPixels.from_processor
    monkeypatch.setattr(FastPixels, "from_processor", lambda processor: built.append(1) or from_processor(processor))
    data = write_imagenet_layout(tmp_path / "imagenet-1k")
    out = tmp_path / "out"
    image_classification.main(
        [
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--streaming",
            str(streaming).lower(),
            "--image_pipeline",
            "fast",
            *COMMON,
            *IMAGE_SCRATCH,
        ]
    )
    result = results(out)
    assert result["image_pipeline"] == "fast" and len(built) == 1  # one FastPixels for every transform of the run
    assert result["unlabelled_splits"] == ["test"] and "test" not in result  # predicted, not scored
    assert set(result["validation"]) >= {"accuracy", "mcc", "atom_loss"} and result["num_validation"] == 6
    assert result["streaming"] is streaming and result["num_test"] == 5
    rows = (out / "predictions_test.csv").read_text().splitlines()
    assert rows[0] == "index,file,label_id,label" and len(rows) == 6
    index, file, label_id, label = next(iter(__import__("csv").reader(rows[1:2])))
    assert (index, file) == ("0", "ILSVRC2012_test_00000000.JPEG") and label == IMAGENET_CLASSES[int(label_id)]
    assert result["predictions"]["test"] == str(out / "predictions_test.csv")
    assert (out / "eval_results.json").is_file() and not (out / "test_results.json").is_file()
    assert (out / "train_results.json").is_file() and (out / "trainer_state.json").is_file()  # save_metrics/state


def test_image_recipe_rejects_partly_labelled_split_before_training(tmp_path):
    data = write_imagenet_layout(tmp_path / "imagenet-1k", test_labels=[-1, 0, -1, 2])
    with pytest.raises(ValueError, match=r"The test split has label ids \[-1\] outside the training label set 0\.\.2"):
        image_classification.main(["--dataset_name", str(data), "--output_dir", str(tmp_path / "o"), *COMMON])
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


def test_image_recipe_streaming_argument_errors(tmp_path):
    data = write_imagenet_layout(tmp_path / "imagenet-1k")
    no_steps = [arg for arg in COMMON if arg not in ("--max_steps", "2")]
    with pytest.raises(ValueError, match="--streaming needs --max_steps N"):
        image_classification.main(
            ["--dataset_name", str(data), "--streaming", "true", "--output_dir", str(tmp_path), *no_steps]
        )
    with pytest.raises(ValueError, match="--streaming is for Hub datasets"):
        image_classification.main(["--streaming", "true", "--output_dir", str(tmp_path), *COMMON])


GLUE_README = """---
configs:
- config_name: cola
  data_files:
  - split: train
    path: cola/train-*
  - split: validation
    path: cola/validation-*
  - split: test
    path: cola/test-*
---
"""


def write_glue_cola_layout(root: Path) -> Path:
    """nyu-mll/glue's layout for CoLA: a README declaring the config, cola/{split}-00000-of-00001.parquet with
    `sentence`, ClassLabel `label` (unacceptable / acceptable) and `idx`; the test split unlabelled (-1)."""
    import datasets

    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["unacceptable", "acceptable"]),
            "idx": datasets.Value("int32"),
        }
    )
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "away"]
    (root / "cola").mkdir(parents=True)
    (root / "README.md").write_text(GLUE_README)
    for split, count in (("train", 24), ("validation", 8), ("test", 6)):
        labels = [-1] * count if split == "test" else [int(v) for v in rng.integers(0, 2, count)]
        columns = {
            "sentence": [" ".join(rng.choice(words, 5)) + " ." for _ in range(count)],
            "label": labels,
            "idx": list(range(100, 100 + count)),  # GLUE's test ids need not start at 0
        }
        dataset = datasets.Dataset.from_dict(columns, features=features)
        dataset.to_parquet(str(root / "cola" / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.mark.parametrize("streaming", [False, True])
def test_text_recipe_on_glue_layout_writes_submission_file(tmp_path, tiny_text_models, streaming):
    data = write_glue_cola_layout(tmp_path / "glue")
    out = tmp_path / "out"
    text_classification.main(
        [
            "--model_name_or_path",
            str(tiny_text_models / "bert"),
            "--dataset_name",
            str(data),
            "--dataset_config_name",
            "cola",
            "--streaming",
            str(streaming).lower(),
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    result = results(out)
    assert result["num_train"] == (None if streaming else 24)
    assert result["labels"] == ["unacceptable", "acceptable"] and result["unlabelled_splits"] == ["test"]
    assert "test" not in result and set(result["validation"]) >= {"mcc", "accuracy"} and result["num_test"] == 6
    lines = (out / "CoLA.tsv").read_text().splitlines()  # GLUE's submission format: index, 0/1
    assert lines[0] == "index\tprediction" and [line.split("\t")[0] for line in lines[1:]] == [
        str(i) for i in range(100, 106)
    ]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_text_recipe_predicts_local_unlabelled_test_file(tmp_path, tiny_text_models):
    write_raw_cola(tmp_path / "train.tsv", 16)
    # GLUE's raw CoLA test file: a header, an index and the sentence, no label
    (tmp_path / "test.tsv").write_text('index\tsentence\n0\tthe cat sat .\n1\ta dog ran "far" .\n')
    out = tmp_path / "out"
    text_classification.main(
        [
            "--model_name_or_path",
            str(tiny_text_models / "bert"),
            "--train_file",
            str(tmp_path / "train.tsv"),
            "--test_file",
            str(tmp_path / "test.tsv"),
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    result = results(out)
    assert result["unlabelled_splits"] == ["test"] and "test" not in result
    lines = (out / "predictions_test.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 3
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}  # label names of raw CoLA: "0" / "1"


def test_check_label_ids_hand_made_cases():
    from _data import check_label_ids

    labels = ["a", "b", "c"]
    assert check_label_ids("test", None, labels) is False  # no label column
    assert check_label_ids("test", [-1, -1], labels) is False  # the Hub's unlabelled test splits
    assert check_label_ids("validation", [0, 2, 1], labels) is True
    with pytest.raises(ValueError, match=r"label ids \[-1\] outside"):
        check_label_ids("test", [0, -1], labels)
    with pytest.raises(ValueError, match=r"label ids \[3, 7\] outside the training label set 0\.\.2"):
        check_label_ids("validation", [3, 0, 7], labels)


# ---------------------------------------------------------------------------------------------------------
# Input pipeline: augmentation randomness, the fast pixel path
# ---------------------------------------------------------------------------------------------------------


def augmented_batches(num_workers: int, rank: int = 0, seed: int = 0) -> list[torch.Tensor]:
    """Two batches of 4 crops of the SAME image; with 2 workers, batch i comes from worker i."""
    import datasets
    import transformers
    from _image_transforms import ImageTransform, collate

    gradient = np.add.outer(np.arange(48), np.arange(48)).astype(np.uint8)
    image = Image.fromarray(np.stack([gradient, gradient.T, 255 - gradient], axis=-1))
    dataset = datasets.Dataset.from_dict({"image": [image] * 8, "label": [0] * 8}, features=None)
    processor = transformers.ViTImageProcessor(size={"height": 16, "width": 16})
    dataset.set_transform(ImageTransform(processor, "image", "label", augment="crop_flip", seed=seed, rank=rank))
    torch.manual_seed(1234)  # what Trainer's set_seed does before building the loader
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=num_workers, collate_fn=collate)
    return [batch["pixel_values"] for batch in loader]


def test_augmentation_differs_across_workers_and_ranks_and_reruns_the_same():
    first, second = augmented_batches(num_workers=2)
    assert not torch.equal(first, second)  # worker 0 and worker 1 drew different crops of the same image
    again = augmented_batches(num_workers=2)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])  # reproducible
    rank0, rank1 = augmented_batches(num_workers=0, rank=0), augmented_batches(num_workers=0, rank=1)
    assert not torch.equal(rank0[0], rank1[0])  # data-parallel ranks draw independently
    assert not torch.equal(rank0[0], rank0[1])  # in one process the stream continues
    assert torch.equal(rank0[0], augmented_batches(num_workers=0, rank=0)[0])


def test_fast_pixels_match_the_processor():
    import _image
    import transformers
    from _image_transforms import FastPixels

    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), np.uint8))
        for _ in range(5)
    ]
    for processor in (
        transformers.ViTImageProcessor(size={"height": 32, "width": 32}),
        transformers.ViTImageProcessor(size={"height": 16, "width": 24}, image_mean=[0.2, 0.4, 0.6], resample=3),
        transformers.ViTImageProcessor(size={"height": 16, "width": 16}, do_normalize=False),
    ):
        want = processor(images, return_tensors="pt")["pixel_values"]
        got = FastPixels.from_processor(processor)(images)
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0, atol=2e-6)  # float32 rounding of values up to ~2.6
        assert not torch.equal(got, processor(images[::-1], return_tensors="pt")["pixel_values"])
    centre_crop = transformers.BitImageProcessor()  # shortest-edge resize + centre crop: not reproduced
    assert FastPixels.from_processor(centre_crop) is None
    with pytest.raises(ValueError, match="--image_pipeline fast reproduces fixed-size processors"):
        _image.pixel_pipeline(_image.DataArguments(image_pipeline="fast"), centre_crop)
    assert _image.pixel_pipeline(_image.DataArguments(), centre_crop) is None  # the processor path


RECIPE_MODULES = sorted(path.stem for path in (REPO / "recipes").glob("*.py"))
RECIPES = [name for name in RECIPE_MODULES if not name.startswith("_")]  # the scripts; `_*` are their helpers


def test_recipes_need_hf_atom_installed_and_leave_sys_path_alone():
    assert {"causal_lm", "gan_mixture", "image_classification", "main_job"} <= set(RECIPES)
    code = f"""
import importlib, sys
sys.path.insert(0, "recipes")
before = list(sys.path)
for name in {RECIPE_MODULES!r}:
    importlib.import_module(name)
    print(name, "path unchanged:", sys.path == before)
"""
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.stdout.splitlines() == [f"{name} path unchanged: True" for name in RECIPE_MODULES], (
        completed.stderr[-2000:]
    )
    code = f"""
import importlib, sys
sys.path.insert(0, "recipes")
sys.modules["hf_atom"] = None  # as if hf_atom were not installed
for name in {RECIPES!r}:
    for loaded in [m for m in sys.modules if m.split(".")[0] in {RECIPE_MODULES!r}]:
        del sys.modules[loaded]  # each recipe imports its helpers afresh
    try:
        importlib.import_module(name)
        print(name, "imported")
    except ImportError as error:
        print(name, "error:", error)
"""
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = completed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == RECIPES, completed.stderr[-2000:]
    for line in lines:
        assert "error: The recipes need the hf_atom package: run `pip install -e" in line, line


def test_no_recipe_imports_another_recipe():
    """Recipes share code one way: through the `_*` helpers, never by importing a sibling recipe."""
    import ast

    for name in RECIPE_MODULES:
        tree = ast.parse((REPO / "recipes" / f"{name}.py").read_text())
        imported = {
            alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        }
        imported |= {
            node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not imported & set(RECIPES) - {name}, (
            f"recipes/{name}.py imports the recipe(s) {sorted(imported & set(RECIPES))}"
        )


def test_text_recipe_streaming_argument_errors(tmp_path, tiny_text_models):
    data = write_glue_cola_layout(tmp_path / "glue")
    model = ["--model_name_or_path", str(tiny_text_models / "bert"), "--output_dir", str(tmp_path / "o")]
    no_steps = [arg for arg in COMMON if arg not in ("--max_steps", "2")]
    with pytest.raises(ValueError, match="--streaming needs --max_steps N"):
        text_classification.main(
            ["--dataset_name", str(data), "--dataset_config_name", "cola", "--streaming", "true", *model, *no_steps]
        )
    write_raw_cola(tmp_path / "train.tsv", 8)
    with pytest.raises(ValueError, match="--streaming is for Hub datasets"):
        text_classification.main(["--train_file", str(tmp_path / "train.tsv"), "--streaming", "true", *model, *COMMON])
