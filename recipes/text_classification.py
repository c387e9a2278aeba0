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

Metrics (scikit-learn, offline): accuracy, macro F1 and Matthews correlation (the CoLA metric). Unlabelled evaluation
splits (GLUE's test splits: every label -1; a local file without a label column) are predicted, not scored: GLUE's
submission file (`CoLA.tsv`, ...) for GLUE tasks, else `predictions_<split>.tsv`; `results.json` then has validation
metrics only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from _common import classification_metrics, parse_arguments, train_and_evaluate
from _data import (
    FILE_FORMATS,
    TEXT_COLUMNS,
    UNLABELLED,
    check_data_source,
    check_label_ids,
    check_shuffle_buffer,
    check_streaming,
    check_streaming_source,
    load_text_splits,
    materialise,
    pick_column,
    truncate,
)
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    set_seed,
)

from hf_atom import AtomTrainer, AtomTrainingArguments, with_atom

logger = logging.getLogger(__name__)

UNLABELLED_STRING = str(UNLABELLED)
# GLUE's submission files (gluebenchmark.com): one TSV per task, `index<TAB>prediction`.
GLUE_SUBMISSION_FILES = {
    "cola": "CoLA.tsv",
    "sst2": "SST-2.tsv",
    "mrpc": "MRPC.tsv",
    "qqp": "QQP.tsv",
    "mnli_matched": "MNLI-m.tsv",
    "mnli_mismatched": "MNLI-mm.tsv",
    "qnli": "QNLI.tsv",
    "rte": "RTE.tsv",
    "wnli": "WNLI.tsv",
    "ax": "AX.tsv",
}
GLUE_NAMED_PREDICTIONS = {"mnli_matched", "mnli_mismatched", "qnli", "rte", "ax"}  # the rest take 0 / 1


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        metadata={"help": "Hub id or local folder of an encoder or decoder language model."},
    )


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id (needs network)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: str | None = field(default=None, metadata={"help": "Local training file(s), comma-separated."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation file(s)."})
    test_file: str | None = field(default=None, metadata={"help": "Local test file(s)."})
    file_format: str = field(
        default="auto",
        metadata={
            "help": "Local file format; 'auto' reads the extension and, for .tsv, the first row (4 columns: raw "
            "CoLA; 3 with an integer label: raw Poem Sentiment; else a header).",
            "choices": list(FILE_FORMATS),
        },
    )
    text_column: str | None = field(
        default=None, metadata={"help": f"Text column (default: the first of {', '.join(TEXT_COLUMNS)})."}
    )
    label_column: str = field(default="label", metadata={"help": "Label column."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate longer inputs."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test sets."})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split of a Hub (or local Hub-layout) dataset instead of materialising it; "
            "needs --max_steps. Validation and test are read in full as usual."
        },
    )
    shuffle_buffer_size: int = field(default=10000, metadata={"help": "With --streaming: rows in the shuffle buffer."})

    def __post_init__(self):
        check_data_source(self.dataset_name, self.train_file)
        check_streaming_source(self.streaming, from_hub=self.dataset_name is not None)
        check_shuffle_buffer(self.shuffle_buffer_size)


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def load_splits(data_args: DataArguments):
    import datasets

    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    splits = load_text_splits(
        data_args.dataset_name, data_args.dataset_config_name, files, data_args.file_format, data_args.streaming
    )
    if data_args.streaming:  # the evaluation splits are read in full
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = materialise(splits[name], data_args.max_eval_samples)
    streamed = isinstance(splits["train"], datasets.IterableDataset)
    columns = list(splits["train"].features or {})
    text_column = pick_column(columns, data_args.text_column, TEXT_COLUMNS, "text")
    label_column = pick_column(columns, data_args.label_column, (), "label")
    feature = splits["train"].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        labels = list(feature.names)
    elif streamed:
        raise ValueError(
            f"--streaming needs a ClassLabel label column (the label names), and {label_column!r} is {feature}: "
            "collecting the names would read the whole stream. Drop --streaming."
        )
    else:
        labels = sorted({str(v) for v in splits["train"][label_column]})
    for name, split in splits.items():
        if name == "train" and streamed:
            continue  # a stream is not read ahead of training; its ClassLabel feature names the classes
        split_feature = split.features.get(label_column)
        if split_feature is None:  # e.g. GLUE's raw test TSVs (index, sentence): predicted, not scored
            label_ids = None
        elif isinstance(split_feature, datasets.ClassLabel):
            if list(split_feature.names) != labels:
                raise ValueError(
                    f"The {name} split's classes {split_feature.names} differ from the training split's {labels}; "
                    "give splits of one dataset."
                )
            label_ids = split[label_column]
        else:
            values = [str(v) for v in split[label_column]]
            if name != "train" and values and UNLABELLED_STRING not in labels and set(values) == {UNLABELLED_STRING}:
                label_ids = [UNLABELLED] * len(values)  # a local file written like the Hub's test splits
            else:
                unknown = sorted(set(values) - set(labels))
                if unknown:
                    raise ValueError(
                        f"The {name} split has labels {unknown} that the training split lacks ({labels})."
                    )
                label_ids = [labels.index(value) for value in values]
                splits[name] = split.remove_columns(label_column).add_column(label_column, label_ids)
        if not check_label_ids(name, label_ids, labels):
            if name == "train":
                raise ValueError(
                    "The training split has no labels (all -1 or no label column); train on a labelled one."
                )
            if split_feature is not None:  # unlabelled: predicted, so no label column reaches the model
                splits[name] = splits[name].remove_columns(label_column)
    if streamed:  # shuffled in `run`, with the run's seed
        if data_args.max_train_samples is not None:
            splits["train"] = splits["train"].take(data_args.max_train_samples)
        return splits, text_column, labels  # a plain dict: DatasetDict holds no stream
    truncate(splits, data_args.max_train_samples, data_args.max_eval_samples)
    return datasets.DatasetDict(splits), text_column, labels


def unlabelled_splits(splits, label_column: str) -> list[str]:
    """The evaluation splits `load_splits` found unlabelled (it drops their label column)."""
    return [
        name for name in ("validation", "test") if name in splits and label_column not in splits[name].column_names
    ]


def prediction_file(data_args: DataArguments, split_name: str) -> tuple[str, bool]:
    """The file name of an unlabelled split's predictions, and whether to write label names (else label ids):
    GLUE's submission file for GLUE tasks (`CoLA.tsv`, ...; ids, names for the NLI tasks), else
    `predictions_<split>.tsv` with label names."""
    name = os.path.basename((data_args.dataset_name or "").rstrip("/")).lower()
    task = (data_args.dataset_config_name or "").lower()
    if name == "glue" and task in GLUE_SUBMISSION_FILES and split_name == "test":
        return GLUE_SUBMISSION_FILES[task], task in GLUE_NAMED_PREDICTIONS
    return f"predictions_{split_name}.tsv", True


def write_text_predictions(path: str, indices: list[int], predicted, labels: list[str], names: bool) -> str:
    """`index<TAB>prediction` rows under a header, GLUE's submission format."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("index\tprediction\n")
        for index, label_id in zip(indices, predicted):
            handle.write(f"{index}\t{labels[int(label_id)] if names else int(label_id)}\n")
    return path


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
    """Trains, scores the labelled validation / test splits and predicts the unlabelled ones (GLUE's submission
    file, or `predictions_<split>.tsv`), saves model and tokenizer; returns (trainer, results)."""
    import datasets

    check_streaming(data_args.streaming, training_args.max_steps)
    set_seed(training_args.seed)
    splits, text_column, labels = load_splits(data_args)
    streamed = isinstance(splits["train"], datasets.IterableDataset)
    if streamed:
        splits["train"] = splits["train"].shuffle(seed=training_args.seed, buffer_size=data_args.shuffle_buffer_size)
    unlabelled = unlabelled_splits(splits, data_args.label_column)
    indices = {  # GLUE's test splits number their rows in `idx`
        name: list(splits[name]["idx"]) if "idx" in splits[name].column_names else list(range(len(splits[name])))
        for name in unlabelled
    }
    model, tokenizer = build_model_and_tokenizer(model_args, labels)
    special = bool(training_args.atom_exclude_special_tokens)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        encoded = tokenizer(
            batch[text_column],
            truncation=True,
            max_length=data_args.max_seq_length,
            return_special_tokens_mask=special,
        )
        if data_args.label_column in batch:  # unlabelled splits have none
            encoded["labels"] = batch[data_args.label_column]
        return encoded

    with training_args.main_process_first(desc="tokenization"):
        splits = datasets.DatasetDict(
            {
                name: split.map(tokenize, batched=True, remove_columns=split.column_names)
                for name, split in splits.items()
            }
        )

    def write_predictions(name: str, predicted) -> str:
        file_name, names = prediction_file(data_args, name)
        path = os.path.join(training_args.output_dir, file_name)
        return write_text_predictions(path, indices[name], predicted, labels, names)

    # Heads on every run, the lambda = 0 baseline too (its untrained heads' statistics are logged beside the
    # atom run's), seeded alike so that runs differing only in lambda start from the same heads.
    model = with_atom(model, training_args.atom_config, seed=training_args.seed)
    trainer = AtomTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation") if "validation" not in unlabelled else None,
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
        unlabelled=unlabelled,
        write_predictions=write_predictions,
        num_train=data_args.max_train_samples if streamed else None,
    )
    return trainer, results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataArguments, AtomTrainingArguments), argv
    )
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    _, results = run(model_args, data_args, training_args)
    return results


if __name__ == "__main__":
    main()
