# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Integrity of training checkpoints: is a checkpoint complete, which one to resume (the file checks: `saved_files`).

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

# check_saved_model and the file checks stay importable from here, their home before saved_files.py.
from .saved_files import (
    PathLike,
    check_saved_model,
    json_problem,
    safetensors_problem,
    torch_file_problem,
    weights_problems,
)

__all__ = [
    "check_saved_model",
    "checkpoint_problems",
    "final_train_metrics",
    "is_complete_checkpoint",
    "is_finished_run",
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
    problems = [p for p in [json_problem(os.path.join(folder, TRAINER_STATE_NAME), "global_step")] if p]
    if "config.json" in names:
        problems += [p for p in [json_problem(os.path.join(folder, "config.json"))] if p]

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


def is_finished_run(checkpoint: PathLike, max_steps: int, num_train_epochs: float) -> bool:
    """Whether `checkpoint` is the last step of a run with this budget (`max_steps`, or epochs when it is <= 0)."""
    with open(os.path.join(checkpoint, TRAINER_STATE_NAME), encoding="utf-8") as handle:
        state = json.load(handle)
    saved_steps = state.get("max_steps") or 0
    same_budget = max_steps == saved_steps if max_steps > 0 else num_train_epochs == state.get("num_train_epochs")
    return same_budget and 0 < saved_steps <= state.get("global_step", 0)


def final_train_metrics(log_history: list[dict], global_step: int, output_dir: PathLike) -> dict[str, float]:
    """A finished run's `train_*` metrics (the entry Trainer logs at the end), from a checkpoint's log or from the
    state `save_state()` wrote in `output_dir` at the same step; empty where neither has them."""
    histories = [log_history]
    final_state = os.path.join(output_dir, TRAINER_STATE_NAME)
    if os.path.isfile(final_state) and json_problem(final_state, "global_step") is None:
        with open(final_state, encoding="utf-8") as handle:
            saved = json.load(handle)
        if saved["global_step"] == global_step:
            histories.append(saved.get("log_history", []))
    for history in histories:
        entry = next((entry for entry in reversed(history) if "train_runtime" in entry), None)
        if entry is not None:
            return {key: value for key, value in entry.items() if key != "step"}
    return {}
