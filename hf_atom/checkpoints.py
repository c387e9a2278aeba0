# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Integrity of saved models and training checkpoints: is a file whole, is a checkpoint complete, which one to resume.

`Trainer` writes a checkpoint file by file, in place: the model (config, weights), then the optimizer, scheduler,
scaler and RNG states, and `trainer_state.json` last. A process killed while saving (SIGKILL, out of memory, a
pre-empted node) leaves a `checkpoint-N` folder with some files missing or cut short, and
`resume_from_checkpoint=True` then crashes on it (`FileNotFoundError`, or a torch/safetensors error deep in
loading). `newest_complete_checkpoint` skips such folders; `resolve_resume_checkpoint` is what `AtomTrainer.train`
uses. The checks only read file headers and sizes (never the tensors), so they cost milliseconds even for large
models.

```python
>>> from hf_atom.checkpoints import checkpoint_problems, newest_complete_checkpoint
>>> checkpoint_problems("out/checkpoint-40")
['trainer_state.json is missing']
>>> newest_complete_checkpoint("out")
('out/checkpoint-30', [('out/checkpoint-40', ['trainer_state.json is missing'])])
```
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
from typing import Union

__all__ = [
    "check_saved_model",
    "checkpoint_problems",
    "is_complete_checkpoint",
    "list_checkpoints",
    "newest_complete_checkpoint",
    "resolve_resume_checkpoint",
    "safetensors_problem",
    "torch_file_problem",
    "weights_problems",
]

TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_RNG_RE = re.compile(r"^rng_state(?:_(\d+))?\.pth$")

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


def _json_problem(path: PathLike, required_key: str | None = None) -> str | None:
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
            problem = _json_problem(index_path, "weight_map")
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
) -> None:
    """Checks a saved model folder before loading it, so that a broken save fails with a message, not a traceback.

    Raises:
        `OSError`: a weight file is cut short or unreadable (named, with its size).
        `ValueError`: the saved atom-head weights have other shapes than `expected_head_shapes` (the shapes the atom
            settings `settings` describe), i.e. the settings and the weights disagree. `head_class` (a
            `BaseAtomHead`) reads the settings the saved shapes were built with, for the message.
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


# -- training checkpoints ------------------------------------------------------------------------------------------


def _rng_problems(folder: str, names: list[str], world_size: int) -> list[str]:
    ranks = {m.group(1) for m in map(_RNG_RE.match, names) if m}
    problems = [p for p in (torch_file_problem(os.path.join(folder, n)) for n in names if _RNG_RE.match(n)) if p]
    if world_size <= 1:
        expected = [] if ranks - {None} else ["rng_state.pth"]  # a distributed checkpoint resumed on one process
    else:
        expected = [] if ranks == {None} else [f"rng_state_{rank}.pth" for rank in range(world_size)]
    problems += [f"{name} is missing" for name in expected if name not in names]
    return problems


def checkpoint_problems(folder: PathLike, *, require_optimizer: bool = True, world_size: int = 1) -> list[str]:
    """Everything that keeps `Trainer` from resuming exactly from `folder`; `[]` for a complete checkpoint.

    A checkpoint is complete (our definition, matching what `Trainer` writes and reads back) when:

    - `trainer_state.json` is valid JSON with a `global_step` (Trainer writes it last);
    - `config.json`, if present, is valid JSON;
    - the model weights are whole: `model.safetensors` (or every shard of its index), `pytorch_model.bin`, or PEFT's
      `adapter_model.*`; FSDP and DeepSpeed checkpoints are only checked for presence (a `pytorch_model_fsdp*` entry,
      or a `global_step*` folder with DeepSpeed's `latest` file);
    - unless `require_optimizer=False` (checkpoints saved with `save_only_model=True`): `optimizer.pt` (or FSDP's
      `optimizer_0`/`optimizer.bin`) and `scheduler.pt` are whole torch files, and so is every RNG state: one
      `rng_state.pth` for a single process, `rng_state_{rank}.pth` for each of `world_size` processes (a checkpoint
      saved with another number of processes is accepted: Trainer then resumes without the RNG states it lacks);
    - `scaler.pt`, if present, is whole.

    Args:
        folder (`str` or `os.PathLike`): a `checkpoint-N` folder.
        require_optimizer (`bool`, defaults to `True`): whether optimizer, scheduler and RNG states are needed.
        world_size (`int`, defaults to 1): the number of processes that will resume.

    Returns:
        `list[str]`: one short sentence per problem, naming the file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return [f"{folder} is not a folder"]
    names = os.listdir(folder)
    problems = [p for p in [_json_problem(os.path.join(folder, TRAINER_STATE_NAME), "global_step")] if p]
    if "config.json" in names:
        problems += [p for p in [_json_problem(os.path.join(folder, "config.json"))] if p]

    deepspeed = any(n.startswith("global_step") and os.path.isdir(os.path.join(folder, n)) for n in names)
    fsdp = any(n.startswith("pytorch_model_fsdp") for n in names)
    if deepspeed:
        if "latest" not in names:
            problems.append("the DeepSpeed checkpoint has no 'latest' file (its save did not finish)")
    elif fsdp:
        if require_optimizer and not any(n in names for n in ("optimizer_0", "optimizer.bin", "optimizer.pt")):
            problems.append("the FSDP optimizer state (optimizer_0 or optimizer.bin) is missing")
    else:
        weights = weights_problems(folder)
        problems += (
            ["the model weights (model.safetensors or pytorch_model.bin) are missing"] if weights is None else weights
        )
        if require_optimizer:
            problems += [p for p in (torch_file_problem(os.path.join(folder, n)) for n in ("optimizer.pt",)) if p]
    if require_optimizer:
        if not deepspeed:
            problems += [p for p in [torch_file_problem(os.path.join(folder, "scheduler.pt"))] if p]
        problems += _rng_problems(folder, names, world_size)
    if "scaler.pt" in names:
        problems += [p for p in [torch_file_problem(os.path.join(folder, "scaler.pt"))] if p]
    return problems


def is_complete_checkpoint(folder: PathLike, *, require_optimizer: bool = True, world_size: int = 1) -> bool:
    """Whether `Trainer` can resume exactly from `folder` (see `checkpoint_problems` for the definition)."""
    return not checkpoint_problems(folder, require_optimizer=require_optimizer, world_size=world_size)


def list_checkpoints(output_dir: PathLike) -> list[str]:
    """The `checkpoint-N` folders of `output_dir`, oldest (smallest N) first."""
    output_dir = os.fspath(output_dir)
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := _CHECKPOINT_RE.match(name))]
    return [
        os.path.join(output_dir, name) for _, name in sorted(found) if os.path.isdir(os.path.join(output_dir, name))
    ]


def newest_complete_checkpoint(
    output_dir: PathLike, *, require_optimizer: bool = True, world_size: int = 1
) -> tuple[str | None, list[tuple[str, list[str]]]]:
    """The newest complete `checkpoint-N` of `output_dir` (None if there is none), and every newer folder that was
    skipped, with its problems (newest first)."""
    skipped = []
    for folder in reversed(list_checkpoints(output_dir)):
        problems = checkpoint_problems(folder, require_optimizer=require_optimizer, world_size=world_size)
        if not problems:
            return folder, skipped
        skipped.append((folder, problems))
    return None, skipped


def resolve_resume_checkpoint(
    resume_from_checkpoint: bool | str | os.PathLike[str],
    output_dir: PathLike,
    *,
    require_optimizer: bool = True,
    world_size: int = 1,
    logger=None,
) -> str:
    """The checkpoint to resume from, as `Trainer.train(resume_from_checkpoint=...)` should see it.

    `True`: the newest complete checkpoint of `output_dir`, with a warning naming every newer, incomplete one that
    is skipped. A path: that checkpoint, if it is complete. Raises a `ValueError` naming the folder, what is wrong
    with it and what to do, where `Trainer` would crash with a traceback deep in loading.
    """
    if resume_from_checkpoint is True:
        found, skipped = newest_complete_checkpoint(
            output_dir, require_optimizer=require_optimizer, world_size=world_size
        )
        details = "; ".join(f"{os.path.basename(f)}: {', '.join(p)}" for f, p in skipped)
        if found is None:
            if skipped:
                raise ValueError(
                    f"No valid checkpoint found in output directory ({output_dir}): resume_from_checkpoint=True found no "
                    f"complete checkpoint in it ({details}). Start without "
                    "resume_from_checkpoint, or pass a complete checkpoint folder."
                )
            raise ValueError(
                f"No valid checkpoint found in output directory ({output_dir}): resume_from_checkpoint=True, but it "
                "holds no checkpoint-N folder. Check --output_dir, or start "
                "without resume_from_checkpoint."
            )
        if skipped and logger is not None:
            logger.warning(
                f"Resuming from {found}, the newest complete checkpoint; skipped newer incomplete checkpoint(s) "
                f"(probably a save that was interrupted): {details}. They will be overwritten as training reaches "
                "their steps again."
            )
        return found
    path = os.fspath(resume_from_checkpoint)
    problems = checkpoint_problems(path, require_optimizer=require_optimizer, world_size=world_size)
    if problems:
        newest, _ = newest_complete_checkpoint(
            os.path.dirname(os.path.abspath(path)), require_optimizer=require_optimizer, world_size=world_size
        )
        hint = f" The newest complete checkpoint next to it is {newest}." if newest else ""
        raise ValueError(
            # Trainer's own wording first, so code that matches on it keeps working.
            f"Can't find a valid checkpoint at {path}: resume_from_checkpoint={path!r} cannot be resumed from: "
            f"{', '.join(problems)}.{hint} Pass a complete "
            "checkpoint, or resume_from_checkpoint=True to pick the newest complete one in --output_dir."
        )
    return path
