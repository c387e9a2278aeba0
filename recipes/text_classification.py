"""Finetune an encoder or decoder language model for text classification with atom modeling (`--atom_weight 0`:
the baseline).

Data: a Hub dataset (`--dataset_name nyu-mll/glue --dataset_config_name cola`,
`--dataset_name google-research-datasets/poem_sentiment`) or local files (`--train_file`, `--validation_file`,
`--test_file`; several files comma-separated), including the raw TSV releases of CoLA (source, label, mark,
sentence; no header) and Poem Sentiment (id, verse, label in -1..2; no header). Models: any
`AutoModelForSequenceClassification` (BERT/MiniLM, GPT-2, Llama/SmolLM2, ...); decoders get a pad token.

    python recipes/text_classification.py --model_name_or_path MINILM_FOLDER \\
        --train_file ../shared/data/cola/in_domain_train.tsv \\
        --validation_file ../shared/data/cola/in_domain_dev.tsv,../shared/data/cola/out_of_domain_dev.tsv \\
        --output_dir out/cola --num_train_epochs 3 --atom_weight 0.1
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/text_classification.py \\
        --model_name_or_path HuggingFaceTB/SmolLM2-135M --dataset_name google-research-datasets/poem_sentiment ...

Metrics (scikit-learn, offline): accuracy, macro F1 and Matthews correlation (the CoLA metric).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from _common import classification_metrics, parse_arguments, train_and_evaluate
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    set_seed,
)

from hf_atom import AtomTrainer, AtomTrainingArguments

logger = logging.getLogger(__name__)

FILE_FORMATS = ("auto", "cola_tsv", "poem_tsv", "csv", "tsv", "json")
POEM_LABELS = {-1: "negative", 0: "no_impact", 1: "positive", 2: "mixed"}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        metadata={"help": "Hub id or local folder of an encoder or decoder language model."},
    )


@dataclass
class DataArguments:
    dataset_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset id (needs network)."})
    dataset_config_name: Optional[str] = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: Optional[str] = field(default=None, metadata={"help": "Local training file(s), comma-separated."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "Local validation file(s)."})
    test_file: Optional[str] = field(default=None, metadata={"help": "Local test file(s)."})
    file_format: str = field(
        default="auto",
        metadata={
            "help": "Local file format; 'auto' reads the extension and, for .tsv, the column count "
            "(4: raw CoLA, 3: raw Poem Sentiment).",
            "choices": list(FILE_FORMATS),
        },
    )
    text_column: Optional[str] = field(
        default=None, metadata={"help": "Text column (default: sentence / verse_text / text)."}
    )
    label_column: str = field(default="label", metadata={"help": "Label column."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate longer inputs."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Truncate validation and test sets."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_file is None:
            raise ValueError(
                "Give a dataset: --dataset_name HUB_ID, or local files with --train_file (and "
                "--validation_file / --test_file)."
            )
        if self.dataset_name is not None and self.train_file is not None:
            raise ValueError("Give either --dataset_name or --train_file, not both.")


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def _read_tsv_rows(path: str) -> list[list[str]]:
    # Split on tabs only: CoLA and Poem Sentiment rows contain quote characters (never csv quoting).
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if line.strip()]


def _detect_format(path: str, requested: str) -> str:
    if requested != "auto":
        return requested
    extension = os.path.splitext(path)[1].lower()
    if extension in (".json", ".jsonl"):
        return "json"
    if extension == ".csv":
        return "csv"
    if extension == ".tsv":
        first = _read_tsv_rows(path)[:1]
        width = len(first[0]) if first else 0
        if width == 4 and first[0][1] in ("0", "1"):
            return "cola_tsv"
        if width == 3 and first[0][2].lstrip("-").isdigit():
            return "poem_tsv"
        return "tsv"
    raise ValueError(f"Cannot tell the format of {path!r}; set --file_format to one of {FILE_FORMATS[1:]}.")


def read_local_file(path: str, file_format: str) -> dict[str, list[Any]]:
    """Rows of one local file as columns (`sentence`/`verse_text` and `label`)."""
    if not os.path.isfile(path):
        raise ValueError(f"Data file {path!r} does not exist.")
    file_format = _detect_format(path, file_format)
    if file_format == "cola_tsv":
        rows = _read_tsv_rows(path)
        bad = [i for i, row in enumerate(rows) if len(row) != 4]
        if bad:
            raise ValueError(
                f"{path}: raw CoLA rows have 4 tab-separated columns; line {bad[0] + 1} has {len(rows[bad[0]])}."
            )
        return {"sentence": [row[3] for row in rows], "label": [int(row[1]) for row in rows]}
    if file_format == "poem_tsv":
        rows = _read_tsv_rows(path)
        bad = [i for i, row in enumerate(rows) if len(row) != 3 or int(row[2]) not in POEM_LABELS]
        if bad:
            raise ValueError(
                f"{path}: raw Poem Sentiment rows are 'id<TAB>verse<TAB>label in -1..2'; see line {bad[0] + 1}."
            )
        return {"verse_text": [row[1] for row in rows], "label": [POEM_LABELS[int(row[2])] for row in rows]}
    if file_format == "json":
        import datasets

        return datasets.load_dataset("json", data_files=path, split="train").to_dict()
    delimiter = "," if file_format == "csv" else "\t"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=delimiter))
    return {key: [row[key] for row in rows] for key in (rows[0].keys() if rows else [])}


def load_splits(data_args: DataArguments):
    import datasets

    if data_args.dataset_name is not None:
        try:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        except Exception as error:  # noqa: BLE001 - re-raised with the fix
            raise ValueError(
                f"Could not load dataset {data_args.dataset_name!r} ({type(error).__name__}: {error}). Hub datasets "
                "need network; offline, pass local files with --train_file/--validation_file."
            ) from error
        splits = {name: raw[name] for name in ("train", "validation", "test") if name in raw}
    else:
        splits = {}
        for name, files in (
            ("train", data_args.train_file),
            ("validation", data_args.validation_file),
            ("test", data_args.test_file),
        ):
            if files:
                columns: dict[str, list[Any]] = {}
                for path in files.split(","):
                    for key, values in read_local_file(path.strip(), data_args.file_format).items():
                        columns.setdefault(key, []).extend(values)
                splits[name] = datasets.Dataset.from_dict(columns)
    columns = splits["train"].column_names
    text_column = data_args.text_column or next(
        (c for c in ("sentence", "verse_text", "text", "content") if c in columns), None
    )
    if text_column is None or text_column not in columns:
        raise ValueError(f"No text column {data_args.text_column or ''!r} among {columns}; set --text_column.")
    if data_args.label_column not in columns:
        raise ValueError(f"Label column {data_args.label_column!r} not among {columns}; set --label_column.")

    feature = splits["train"].features[data_args.label_column]
    if isinstance(feature, datasets.ClassLabel):
        labels = list(feature.names)
    else:
        labels = sorted({str(v) for v in splits["train"][data_args.label_column]})
    for name, split in splits.items():
        if isinstance(split.features[data_args.label_column], datasets.ClassLabel):
            continue
        unknown = sorted({str(v) for v in split[data_args.label_column]} - set(labels))
        if unknown:
            raise ValueError(f"The {name} split has labels {unknown} that the training split lacks ({labels}).")
        splits[name] = split.map(lambda row: {data_args.label_column: labels.index(str(row[data_args.label_column]))})
    if data_args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(data_args.max_train_samples, len(splits["train"]))))
    if data_args.max_eval_samples is not None:
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = splits[name].select(range(min(data_args.max_eval_samples, len(splits[name]))))
    return datasets.DatasetDict(splits), text_column, labels


# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------


def build_model_and_tokenizer(model_args: ModelArguments, labels: list[str]):
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if tokenizer.pad_token is None:  # decoder LMs: pad with EOS; the classifier reads the last non-pad token
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=True,  # a new classifier head
    )
    return model, tokenizer


def run(model_args: ModelArguments, data_args: DataArguments, training_args: AtomTrainingArguments):
    """Trains, evaluates on validation and test, saves model and tokenizer; returns (trainer, results)."""
    set_seed(training_args.seed)
    splits, text_column, labels = load_splits(data_args)
    model, tokenizer = build_model_and_tokenizer(model_args, labels)
    special = bool(training_args.atom_exclude_special_tokens)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(
            batch[text_column],
            truncation=True,
            max_length=data_args.max_seq_length,
            return_special_tokens_mask=special,
        )
        encoded["labels"] = batch[data_args.label_column]
        return encoded

    with training_args.main_process_first(desc="tokenization"):
        splits = splits.map(tokenize, batched=True, remove_columns=splits["train"].column_names)

    trainer = AtomTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=classification_metrics,
        processing_class=tokenizer,
    )
    results = train_and_evaluate(
        trainer,
        splits,
        {
            "model": model_args.model_name_or_path,
            "dataset": data_args.dataset_name or data_args.train_file,
            "labels": labels,
        },
    )
    return trainer, results


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataArguments, AtomTrainingArguments), argv
    )
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    _, results = run(model_args, data_args, training_args)
    return results


if __name__ == "__main__":
    main()
