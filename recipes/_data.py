"""The recipes' data, read one way: a Hub dataset or local files as named splits, the local-file readers, column
choice, truncation, label checks and the data-argument checks every recipe makes.

`datasets` is imported where it is used (like the recipes' other optional packages), so importing this module is
cheap.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

UNLABELLED = -1  # how GLUE, ImageNet-1K and most Hub datasets mark the labels of their test splits
SPLITS = ("train", "validation", "test")
# Other names of the evaluation splits on the Hub; the recipes always use the names of `SPLITS`.
SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val"), "test": ("test",)}
# 'auto' reads the extension and, for .tsv, the first row (4 columns: raw CoLA; 3 with an integer label: raw Poem
# Sentiment; else a header).
FILE_FORMATS = ("auto", "text", "cola_tsv", "poem_tsv", "csv", "tsv", "json")
POEM_LABELS = {-1: "negative", 0: "no_impact", 1: "positive", 2: "mixed"}
# The text column when none is named: the first of these that a dataset has.
TEXT_COLUMNS = ("text", "verse_text", "sentence", "content")


# ---------------------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------------------


def check_data_source(dataset_name: str | None, train_file: str | None) -> None:
    """Exactly one of `--dataset_name` and `--train_file`."""
    if dataset_name is None and train_file is None:
        raise ValueError(
            "Give a dataset: --dataset_name HUB_ID, or local files with --train_file (and --validation_file / "
            "--test_file)."
        )
    if dataset_name is not None and train_file is not None:
        raise ValueError("Give either --dataset_name or --train_file, not both.")


def check_streaming(streaming: bool, max_steps: int) -> None:
    """A streamed training split has no length, so the Trainer needs a step budget."""
    if streaming and max_steps <= 0:
        raise ValueError(
            "--streaming needs --max_steps N (a positive number of optimizer steps): a stream has no length, so the "
            "Trainer cannot count epochs."
        )


def check_streaming_source(streaming: bool, from_hub: bool) -> None:
    """Only a Hub dataset (or a local folder in the Hub's layout, given as `--dataset_name`) streams."""
    if streaming and not from_hub:
        raise ValueError("--streaming is for Hub datasets (or local Hub-layout folders) given as --dataset_name.")


def check_shuffle_buffer(shuffle_buffer_size: int) -> None:
    if shuffle_buffer_size < 1:
        raise ValueError(f"--shuffle_buffer_size must be at least 1, got {shuffle_buffer_size}.")


# ---------------------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------------------


def _read_tsv_rows(path: str) -> list[list[str]]:
    # Split on tabs only: CoLA and Poem Sentiment rows contain quote characters (never csv quoting).
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if line.strip()]


def detect_format(path: str, requested: str = "auto") -> str:
    """The format of a local file: `requested`, or for 'auto' the one its extension and first row say."""
    if requested not in FILE_FORMATS:
        raise ValueError(f"--file_format must be one of {FILE_FORMATS}, got {requested!r}.")
    if requested != "auto":
        return requested
    extension = os.path.splitext(path)[1].lower()
    if extension in (".txt", ".text", ".raw"):
        return "text"
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


def read_local_file(path: str, file_format: str = "auto") -> dict[str, list[Any]]:
    """The rows of one local file as columns.

    Args:
        path (`str`): the file.
        file_format (`str`, defaults to `"auto"`): one of `FILE_FORMATS`. `text`: one example per non-empty line
            (column `text`); `cola_tsv`: the raw CoLA release (source, label, mark, sentence; no header: columns
            `sentence`, `label`); `poem_tsv`: the raw Poem Sentiment release (id, verse, label in -1..2; no header:
            `verse_text`, `label` as names); `csv` / `tsv` with a header; `json` / JSON lines.

    Returns:
        `dict[str, list]`: column name -> values.
    """
    if not os.path.isfile(path):
        raise ValueError(f"Data file {path!r} does not exist.")
    try:
        columns = _read_columns(path, file_format)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Data file {path!r} is not UTF-8 text ({error.reason} at byte {error.start}): convert it first, e.g. "
            f"`iconv -f latin1 -t utf-8 {path} > converted{os.path.splitext(path)[1]}`."
        ) from None
    if not columns or not len(next(iter(columns.values()))):
        raise ValueError(
            f"Data file {path!r} holds no examples (it is empty, has blank lines only, or a header without rows): "
            "give it at least one row, or leave the flag out."
        )
    return columns


def _read_columns(path: str, file_format: str) -> dict[str, list[Any]]:
    file_format = detect_format(path, file_format)
    if file_format == "text":
        with open(path, encoding="utf-8") as handle:
            return {"text": [line.rstrip("\n") for line in handle if line.strip()]}
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


def read_local_files(files: str, file_format: str = "auto") -> dict[str, list[Any]]:
    """Several comma-separated local files (`a.tsv,b.tsv`) as one set of columns, rows in file order."""
    columns: dict[str, list[Any]] = {}
    for path in files.split(","):
        for key, values in read_local_file(path.strip(), file_format).items():
            columns.setdefault(key, []).extend(values)
    return columns


# ---------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------


def load_hub_dataset(name: str, config_name: str | None = None, streaming: bool = False, offline_hint: str = ""):
    """`datasets.load_dataset(name, config_name)`, with an error that names the way out when it fails."""
    import datasets

    try:
        return datasets.load_dataset(name, config_name, streaming=streaming)
    except Exception as error:  # noqa: BLE001 - re-raised with the fix
        raise ValueError(
            f"Could not load dataset {name!r} ({type(error).__name__}: {error}). Hub datasets need network; "
            f"{offline_hint or 'offline, pass local files.'}"
        ) from error


def named_splits(raw: Mapping[str, Any], dataset_name: str) -> dict[str, Any]:
    """The train / validation / test splits of a loaded dataset under those names (Hub aliases such as `valid`
    accepted); raises when there is no training split."""
    splits = {}
    for name in SPLITS:
        found = next((alias for alias in SPLIT_ALIASES[name] if alias in raw), None)
        if found is not None:
            splits[name] = raw[found]
    if "train" not in splits:
        raise ValueError(f"Dataset {dataset_name!r} has no 'train' split; splits: {list(raw)}.")
    return splits


def load_text_splits(
    dataset_name: str | None,
    dataset_config_name: str | None,
    files: Mapping[str, str | None],
    file_format: str = "auto",
    streaming: bool = False,
) -> dict[str, Any]:
    """The splits of a Hub dataset (`dataset_name`) or of local files (`files`: split name -> comma-separated
    paths, as `--train_file` / `--validation_file` / `--test_file` give them), as `datasets` splits."""
    import datasets

    if dataset_name is not None:
        raw = load_hub_dataset(
            dataset_name,
            dataset_config_name,
            streaming=streaming,
            offline_hint="offline, pass local files with --train_file/--validation_file.",
        )
        return named_splits(raw, dataset_name)
    return {
        name: datasets.Dataset.from_dict(read_local_files(paths, file_format))
        for name, paths in files.items()
        if paths
    }


def pick_column(columns: Sequence[str], requested: str | None, candidates: Sequence[str], what: str) -> str:
    """`requested` if it is a column, else the first of `candidates` that is; `what` names the flag
    (`--<what>_column`) in the error."""
    if requested is not None:
        if requested not in columns:
            raise ValueError(f"No {what} column {requested!r} among {list(columns)}; set --{what}_column.")
        return requested
    found = next((name for name in candidates if name in columns), None)
    if found is None:
        raise ValueError(f"No {what} column ({', '.join(candidates)}) among {list(columns)}; set --{what}_column.")
    return found


def truncate(splits: dict[str, Any], max_train_samples: int | None, max_eval_samples: int | None) -> dict[str, Any]:
    """The first `max_train_samples` training rows and `max_eval_samples` rows of validation and test (in place)."""
    for names, limit in ((("train",), max_train_samples), (("validation", "test"), max_eval_samples)):
        if limit is None:
            continue
        for name in names:
            if name in splits:
                splits[name] = splits[name].select(range(min(limit, len(splits[name]))))
    return splits


def materialise(stream, limit: int | None = None):
    """A streamed split as a `datasets.Dataset` (written to the datasets cache; images stay encoded on the way)."""
    import datasets

    if limit is not None:
        stream = stream.take(limit)

    def rows(stream):
        yield from stream

    return datasets.Dataset.from_generator(rows, features=stream.features, gen_kwargs={"stream": stream.decode(False)})


# ---------------------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------------------


def check_label_ids(split_name: str, label_ids: Sequence[Any] | None, labels: Sequence[str]) -> bool:
    """Whether a split is labelled: `False` when it has no label column (`label_ids` is None) or every label is
    -1 (an unlabelled test split, as GLUE and ImageNet-1K ship them); `True` when every label indexes `labels`.

    Raises:
        ValueError: some labels fall outside `0..len(labels) - 1` (including a mix of -1 and real labels), which
            would otherwise surface as an index error after training.
    """
    if label_ids is None:
        return False
    values = np.asarray(label_ids)
    if values.size and np.all(values == UNLABELLED):
        return False
    bad = sorted({int(v) for v in values[(values < 0) | (values >= len(labels))]})
    if bad:
        raise ValueError(
            f"The {split_name} split has label ids {bad[:10]} outside the training label set 0..{len(labels) - 1} "
            f"({list(labels)[:10]}{' ...' if len(labels) > 10 else ''}). A split is either fully labelled or fully "
            f"unlabelled (all {UNLABELLED}): fix the labels, or drop the split."
        )
    return True
