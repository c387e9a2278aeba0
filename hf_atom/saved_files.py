# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Integrity of saved files: is a weight file whole, are a model folder's weights complete, do its atom heads have
the shapes its settings describe. Only file headers and sizes are read (never the tensors): milliseconds even for
large models. `hf_atom.checkpoints` builds the training-checkpoint checks on these.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from typing import Union

__all__ = ["check_saved_model", "json_problem", "safetensors_problem", "torch_file_problem", "weights_problems"]

PathLike = Union[str, "os.PathLike[str]"]


# -- single files ----------------------------------------------------------------------------------------------


def safetensors_problem(path: PathLike) -> str | None:
    """Why a `.safetensors` file cannot be loaded whole, or None if its header and size are consistent.

    A safetensors file is an 8-byte little-endian header length, a JSON header giving every tensor's byte range,
    then the data; a file cut short (an interrupted save or download) is shorter than its header promises.
    """
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return f"{name} is incomplete: {size} bytes, shorter than a safetensors header"
            (header_size,) = struct.unpack("<Q", prefix)
            if 8 + header_size > size:
                return f"{name} is incomplete: its header needs {8 + header_size} bytes, the file has {size}"
            header = json.loads(handle.read(header_size))
    except FileNotFoundError:
        return f"{name} is missing"
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"{name} is not a readable safetensors file ({error})"
    if not isinstance(header, dict):
        return f"{name} is not a readable safetensors file (its header is not a JSON object)"
    try:
        data_size = max(
            (int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"), default=0
        )
    except (TypeError, KeyError, IndexError, ValueError):
        return f"{name} is not a readable safetensors file (malformed tensor entries in its header)"
    expected = 8 + header_size + data_size
    if size < expected:
        return f"{name} is incomplete: {size} of {expected} bytes (the save or download was interrupted)"
    return None


def torch_file_problem(path: PathLike) -> str | None:
    """Why a `torch.save` file (`optimizer.pt`, `scheduler.pt`, `rng_state.pth`, ...) is not whole, or None.

    `torch.save` writes a zip archive whose directory comes last, so a file cut short has no readable directory;
    the check reads only the directory, not the tensors.
    """
    name = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as archive:
            size = os.path.getsize(path)
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"{name} is incomplete: the entry {info.filename} runs past the end of the file"
    except FileNotFoundError:
        return f"{name} is missing"
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{name} is incomplete or not a torch.save file (no readable archive directory)"
    return None


def json_problem(path: PathLike, required_key: str | None = None) -> str | None:
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except FileNotFoundError:
        return f"{name} is missing"
    except (OSError, ValueError, UnicodeDecodeError):
        return f"{name} is incomplete or not valid JSON"
    if required_key is not None and (not isinstance(value, dict) or required_key not in value):
        return f"{name} has no {required_key!r}"
    return None


# -- model weights -----------------------------------------------------------------------------------------------

# Weight formats in the order transformers prefers them: the first one present is the one that gets loaded.
_WEIGHT_FORMATS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ("adapter_model.safetensors", None),  # PEFT adapters
    ("adapter_model.bin", None),
)


def _file_problem(path: str) -> str | None:
    return safetensors_problem(path) if path.endswith(".safetensors") else torch_file_problem(path)


def weights_problems(folder: PathLike) -> list[str] | None:
    """Problems of the model weights in `folder` (single file or shards with their index), `[]` if they are whole,
    or None if `folder` holds no weights in a format checked here (plain, sharded or PEFT; not FSDP/DeepSpeed)."""
    for single, index in _WEIGHT_FORMATS:
        single_path = os.path.join(folder, single)
        if os.path.isfile(single_path):
            problem = _file_problem(single_path)
            return [problem] if problem else []
        if index is not None and os.path.isfile(os.path.join(folder, index)):
            index_path = os.path.join(folder, index)
            problem = json_problem(index_path, "weight_map")
            if problem:
                return [problem]
            with open(index_path, encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
            return [p for p in (_file_problem(os.path.join(folder, shard)) for shard in shards) if p]
    return None


def _safetensors_shapes(path: str) -> dict[str, tuple[int, ...]]:
    with open(path, "rb") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
    return {key: tuple(entry["shape"]) for key, entry in header.items() if key != "__metadata__"}


def _saved_shapes(folder: str, wanted: list[str]) -> tuple[dict[str, tuple[int, ...]], str]:
    """Shapes of the saved tensors whose names end with one of `wanted` (safetensors only: read from headers)."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            weight_map = json.load(handle)["weight_map"]
        files = sorted({os.path.join(folder, f) for k, f in weight_map.items() if k.endswith(tuple(wanted))})
    else:
        return {}, ""
    shapes = {}
    for path in files:
        for key, shape in _safetensors_shapes(path).items():
            match = next((w for w in wanted if key == w or key.endswith("." + w)), None)
            if match is not None:
                shapes[match] = shape
    return shapes, os.path.basename(files[0]) if len(files) == 1 else "the weight shards"


def check_saved_model(
    folder: PathLike,
    expected_head_shapes: dict[str, tuple[int, ...]] | None = None,
    *,
    settings: str = "",
    head_class: type | None = None,
    heads_required: bool = True,
) -> None:
    """Checks a saved model folder before loading it, so that a broken save fails with a message, not a traceback.

    Raises:
        `OSError`: a weight file is cut short or unreadable (named, with its size).
        `ValueError`: the saved atom-head weights have other shapes than `expected_head_shapes` (the shapes the atom
            settings `settings` describe), i.e. the settings and the weights disagree. `head_class` (a
            `BaseAtomHead`) reads the settings the saved shapes were built with, for the message. Or some head
            tensors are missing (all of them, when `heads_required`: the folder's own config declares heads), which
            would load as random heads.
    """
    folder = os.fspath(folder)
    problems = weights_problems(folder)
    if problems:
        raise OSError(
            f"Cannot load the model in {folder}: {'; '.join(problems)}. Save it again (or download it again); if it "
            "is a training checkpoint, use an earlier complete one (`hf_atom.checkpoints.newest_complete_checkpoint`)."
        )
    if not expected_head_shapes:
        return
    saved, source = _saved_shapes(folder, list(expected_head_shapes))
    missing = [name for name in expected_head_shapes if name not in saved]
    if source and missing and (saved or heads_required):  # source: safetensors headers were read
        raise ValueError(
            f"The atom heads in {folder} are incomplete: {source} has no {', '.join(missing)}, although "
            f"{settings or 'the atom settings'} declare them. Loading would give these heads random weights (and "
            "random token importance). Save the atom model again, or load the plain model with its `AutoModelFor*` "
            "class and attach fresh heads with `hf_atom.with_atom(model)`."
        )
    wrong = {
        name: (saved[name], shape) for name, shape in expected_head_shapes.items() if saved.get(name, shape) != shape
    }
    if wrong:
        details = ", ".join(
            f"{name} is {tuple(s)} in {source} but {tuple(e)} by these settings" for name, (s, e) in wrong.items()
        )
        prefix = "atom_head."
        built_with = (
            {}
            if head_class is None
            else head_class.settings_from_shapes(
                {name[len(prefix) :]: tuple(shape) for name, shape in saved.items() if name.startswith(prefix)}
            )
        )
        fix = (
            " The saved heads were built with "
            + ", ".join(f"{key}={value}" for key, value in built_with.items())
            + "."
            if built_with
            else ""
        )
        raise ValueError(
            f"{settings or 'The atom settings'} and the saved atom head weights in {folder} disagree: {details}.{fix} "
            "Make the settings match the weights (edit `atom_config` in config.json, or pass a matching "
            "`atom_config=AtomConfig(...)`), or pass `ignore_mismatched_sizes=True` to load the model with freshly "
            "initialised atom heads."
        )
