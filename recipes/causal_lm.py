"""Finetune a causal language model with atom modeling (`--atom_weight 0`: the baseline), in the shape of
transformers' `run_clm.py`.

Data: a Hub dataset (`--dataset_name wikitext --dataset_config_name wikitext-2-raw-v1`) or local files
(`--train_file`, `--validation_file`, `--test_file`; several files comma-separated): `.txt` (one example per
non-empty line), `.csv` / `.tsv` with a header, `.json` / `.jsonl`, or the raw Poem Sentiment TSV (id, verse, label;
no header; only the verse is used). The text column is `--text_column` (default: text / verse_text / sentence /
content). Examples are either one per line/row (padded, EOS appended so that the model learns where a text ends;
the default) or, with `--block_size N`, all texts concatenated and cut into blocks of N tokens (run_clm's
`group_texts`). Without a validation file, `--validation_split_percentage` of the training rows are held out.
Models: any `AutoModelForCausalLM` (GPT-2, Llama / SmolLM2, ...); a tokenizer without a pad token pads with EOS.

    python recipes/causal_lm.py --model_name_or_path HuggingFaceTB/SmolLM2-135M \\
        --train_file ../shared/data/poem_sentiment/train.tsv --validation_file ../shared/data/poem_sentiment/dev.tsv \\
        --test_file ../shared/data/poem_sentiment/test.tsv --output_dir out/poem_lm --atom_weight 0.1
    python recipes/causal_lm.py --dataset_name wikitext --dataset_config_name wikitext-2-raw-v1 --block_size 256 ...
    python recipes/causal_lm.py --trainer sft ...     # trl's SFTTrainer with the atom mixin (hf_atom[trl])

`results.json` holds the validation and test loss (the task loss alone, comparable between baseline and atom),
perplexity = exp(loss) as run_clm reports it (with per-line examples this is the exponential of a mean over batches
of per-batch token means; `benchmarks/generation_eval.py` reports the exact token-pooled perplexity), and the atom
statistics. The model is saved with its tokenizer, atom heads and model card.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from _common import parse_arguments, train_and_evaluate
from _data import FILE_FORMATS, TEXT_COLUMNS, check_data_source, load_text_splits, pick_column, truncate
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, default_data_collator, set_seed

from hf_atom import AtomTrainer, AtomTrainingArguments, with_atom

logger = logging.getLogger(__name__)

TRAINERS = ("atom", "sft")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="HuggingFaceTB/SmolLM2-135M",
        metadata={"help": "Hub id or local folder of a causal language model (AutoModelForCausalLM)."},
    )
    trainer: str = field(
        default="atom",
        metadata={
            "help": "'atom': hf_atom.AtomTrainer (a transformers Trainer). 'sft': trl's SFTTrainer with the atom "
            "mixin (hf_atom.AtomSFTTrainer; needs `pip install hf_atom[trl]`).",
            "choices": list(TRAINERS),
        },
    )
    trainable_parameters: str | None = field(
        default=None,
        metadata={
            "help": "Regular expression: train only the parameters whose names match it (re.search), plus the atom "
            "heads; the rest is frozen. E.g. 'layers\\.(2[6-9])\\.|^model\\.norm' for the last 4 blocks of a "
            "30-block Llama. Unset: train everything."
        },
    )

    def __post_init__(self):
        if self.trainable_parameters is not None:
            try:
                re.compile(self.trainable_parameters)
            except re.error as error:
                raise ValueError(f"--trainable_parameters is not a regular expression: {error}.") from error


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
            "help": "Local file format; 'auto' reads the extension (.txt: one example per line) and, for .tsv, "
            "the first row (4 columns: raw CoLA; 3 with an integer label: raw Poem Sentiment; else a header).",
            "choices": list(FILE_FORMATS),
        },
    )
    text_column: str | None = field(
        default=None, metadata={"help": f"Text column (default: the first of {', '.join(TEXT_COLUMNS)})."}
    )
    block_size: int | None = field(
        default=None,
        metadata={
            "help": "Concatenate all texts and train on blocks of this many tokens (run_clm). Unset: one example "
            "per line/row, truncated to --max_seq_length."
        },
    )
    max_seq_length: int = field(default=128, metadata={"help": "Per-example mode: truncate longer examples."})
    add_eos: bool = field(
        default=True,
        metadata={"help": "Append the EOS token to every text (so that generation learns to stop; ours)."},
    )
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Without a validation split: the percentage of training rows held out."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation and test sets."})

    def __post_init__(self):
        check_data_source(self.dataset_name, self.train_file)
        if self.block_size is not None and self.block_size < 2:
            raise ValueError(
                f"--block_size must be at least 2 tokens (or unset for per-line examples), got {self.block_size}."
            )
        if self.max_seq_length < 2:
            raise ValueError(f"--max_seq_length must be at least 2 tokens, got {self.max_seq_length}.")
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(
                f"--validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}."
            )
        for name in ("max_train_samples", "max_eval_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1 (or unset for all rows), got {getattr(self, name)}.")


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def load_splits(data_args: DataArguments, seed: int = 0):
    """Train / validation / test splits (`datasets.DatasetDict`) and the name of the text column."""
    import datasets

    files = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    splits = load_text_splits(data_args.dataset_name, data_args.dataset_config_name, files, data_args.file_format)
    columns = splits["train"].column_names
    text_column = pick_column(columns, data_args.text_column, TEXT_COLUMNS, "text")
    for name, split in splits.items():
        if text_column not in split.column_names:
            raise ValueError(f"The {name} split has no column {text_column!r} (it has {split.column_names}).")
    if "validation" not in splits and data_args.validation_split_percentage > 0:
        rows, percentage = len(splits["train"]), data_args.validation_split_percentage
        if rows - math.ceil(rows * percentage / 100) < 1:  # what datasets' train_test_split holds out
            raise ValueError(
                f"--validation_split_percentage {percentage} of the {rows} training row(s) leaves none to train on: "
                "pass --validation_file, add training rows, or --validation_split_percentage 0 (no validation)."
            )
        held_out = splits["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        splits["train"], splits["validation"] = held_out["train"], held_out["test"]
    truncate(splits, data_args.max_train_samples, data_args.max_eval_samples)
    return datasets.DatasetDict(splits), text_column


def tokenize_splits(splits, text_column: str, tokenizer, data_args: DataArguments, special_tokens_mask: bool):
    """Per-line examples (`labels` = `input_ids`, padded later with -100) or run_clm's fixed-size blocks."""
    eos = [tokenizer.eos_token_id] if data_args.add_eos and tokenizer.eos_token_id is not None else []
    if data_args.add_eos and not eos:
        raise ValueError("--add_eos needs a tokenizer with an EOS token; set one or pass --add_eos false.")
    # Per-line examples keep room for the EOS token; blocks are cut after concatenation.
    max_length = data_args.max_seq_length - len(eos) if data_args.block_size is None else None

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        texts = [str(text) for text in batch[text_column]]
        encoded = tokenizer(
            texts,
            truncation=max_length is not None,
            max_length=max_length,
            return_special_tokens_mask=special_tokens_mask,
        )
        encoded = {key: [list(row) for row in value] for key, value in encoded.items()}
        for i in range(len(texts)):
            encoded["input_ids"][i] += eos
            encoded["attention_mask"][i] += [1] * len(eos)
            if special_tokens_mask:
                encoded["special_tokens_mask"][i] += [1] * len(eos)
        encoded["labels"] = [list(ids) for ids in encoded["input_ids"]]
        return encoded

    def group_texts(batch: dict[str, list[list[int]]]) -> dict[str, list[list[int]]]:
        size = data_args.block_size
        joined = {key: list(chain.from_iterable(batch[key])) for key in batch}
        total = (len(joined["input_ids"]) // size) * size  # the remainder is dropped, as in run_clm
        return {key: [values[i : i + size] for i in range(0, total, size)] for key, values in joined.items()}

    tokenized = splits.map(tokenize, batched=True, remove_columns=splits["train"].column_names)
    if data_args.block_size is None:
        kept = tokenized.filter(lambda row: len(row["input_ids"]) > 1)  # a single token has nothing to predict
        empty = [name for name, split in kept.items() if len(split) == 0]
        if empty:
            raise ValueError(
                f"The {' and '.join(empty)} split(s) hold no text of two tokens or more (with --add_eos, "
                "an empty line is one token): give them real lines of text."
            )
        return kept
    grouped = tokenized.map(group_texts, batched=True, batch_size=1000)
    if len(grouped["train"]) == 0:
        raise ValueError(
            f"The training texts hold fewer than --block_size={data_args.block_size} tokens in all; lower it."
        )
    return grouped


# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------


def _sft_classes():
    try:
        from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer
    except ImportError as error:
        raise ImportError(
            "--trainer sft needs trl and hf_atom.trl (trl's SFTTrainer with the atom mixin): "
            f"`pip install hf_atom[trl]` ({error}). Or use --trainer atom."
        ) from error
    return AtomSFTTrainer, AtomSFTConfig


def training_arguments_class(trainer: str) -> type:
    """`AtomTrainingArguments` for `--trainer atom`, `AtomSFTConfig` (trl's SFTConfig + atom_*) for `--trainer sft`."""
    if trainer not in TRAINERS:
        raise ValueError(f"--trainer must be one of {TRAINERS}, got {trainer!r}.")
    return AtomTrainingArguments if trainer == "atom" else _sft_classes()[1]


def build_model_and_tokenizer(model_args: ModelArguments):
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if tokenizer.pad_token is None:  # padded positions carry label -100 and attention 0, so EOS is a safe pad
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        raise ValueError(f"The tokenizer of {model_args.model_name_or_path!r} has neither a pad nor an EOS token.")
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if model_args.trainable_parameters is not None:
        freeze_except(model, model_args.trainable_parameters)
    return model, tokenizer


def freeze_except(model, pattern: str) -> list[str]:
    """Freezes every parameter whose name does not match `pattern`; returns the names left trainable. The atom heads,
    attached later by the trainer, are new parameters and always train."""
    trainable = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(re.search(pattern, name) is not None)
        if parameter.requires_grad:
            trainable.append(name)
    if not trainable:
        raise ValueError(
            f"--trainable_parameters {pattern!r} matches no parameter of the model; names look like "
            f"{[name for name, _ in model.named_parameters()][:3]}."
        )
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(
        "Training %d of %d parameter tensors (%d weights).", len(trainable), len(list(model.parameters())), count
    )
    return trainable


def add_perplexity(prefix: str, metrics: dict[str, float]) -> None:
    """`<prefix>_perplexity` = exp(`<prefix>_loss`) (inf where it overflows), added before the metrics are saved,
    as run_clm does."""
    loss = metrics.get(f"{prefix}_loss")
    if loss is not None:
        metrics[f"{prefix}_perplexity"] = math.exp(loss) if loss < 700 else float("inf")


def run(model_args: ModelArguments, data_args: DataArguments, training_args: AtomTrainingArguments):
    """Trains, evaluates on validation and test, saves model and tokenizer; returns (trainer, results)."""
    if model_args.trainer == "sft":
        trainer_cls, config_cls = _sft_classes()
        if not isinstance(training_args, config_cls):
            raise ValueError(
                f"--trainer sft needs {config_cls.__name__} arguments, got {type(training_args).__name__}."
            )
        if training_args.atom_exclude_special_tokens:
            raise ValueError(
                "--atom_exclude_special_tokens needs special_tokens_mask in the batches, which trl's collator drops; "
                "use --trainer atom for it."
            )
    else:
        trainer_cls = AtomTrainer
    set_seed(training_args.seed)
    splits, text_column = load_splits(data_args, seed=training_args.seed)
    model, tokenizer = build_model_and_tokenizer(model_args)
    special = bool(training_args.atom_exclude_special_tokens)
    with training_args.main_process_first(desc="tokenization"):
        splits = tokenize_splits(splits, text_column, tokenizer, data_args, special)
    collator_kwargs = {}
    if model_args.trainer == "sft":
        # The same tokens as --trainer atom; trl sees a processed dataset and its collator pads and builds labels.
        splits = splits.select_columns(["input_ids"])
    elif data_args.block_size is None:
        collator_kwargs["data_collator"] = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, padding=True)
    else:
        collator_kwargs["data_collator"] = default_data_collator
    # Heads on every run, the lambda = 0 baseline too (its untrained heads' statistics are logged beside the
    # atom run's), seeded alike so that runs differing only in lambda start from the same heads.
    model = with_atom(model, training_args.atom_config, seed=training_args.seed)
    trainer = trainer_cls(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),
        processing_class=tokenizer,
        **collator_kwargs,
    )
    results = train_and_evaluate(
        trainer,
        splits,
        {
            "model": model_args.model_name_or_path,
            "trainer": model_args.trainer,
            "dataset": data_args.dataset_name or data_args.train_file,
            "text_column": text_column,
            "block_size": data_args.block_size,
            "max_seq_length": data_args.max_seq_length if data_args.block_size is None else None,
        },
        add_metrics=add_perplexity,
    )
    return trainer, results


def _requested_trainer(argv: list[str]) -> str:
    """`--trainer` before full parsing: it decides which training-arguments dataclass parses the rest."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        import yaml  # JSON is YAML

        with open(argv[0], encoding="utf-8") as handle:
            return str((yaml.safe_load(handle) or {}).get("trainer", "atom"))
    for i, arg in enumerate(argv):
        if arg == "--trainer" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--trainer="):
            return arg.split("=", 1)[1]
    return "atom"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args_cls = training_arguments_class(_requested_trainer(argv))
    model_args, data_args, training_args = parse_arguments((ModelArguments, DataArguments, args_cls), argv)
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    _, results = run(model_args, data_args, training_args)
    return results


if __name__ == "__main__":
    main()
