"""Checkpoints of the single-run GAN recipes (`gan_mixture.py`, `gan_stacked_mnist.py`): written whole or not at all,
found again, and resumed so that a run killed at any moment ends with the same networks as an uninterrupted one.

A checkpoint `checkpoint-<step>/` holds Accelerate's state (both networks, the atom head, both optimisers, every
process's global random states) and one `gan_state_<process>.pt` per process (step, learning-rate schedulers, the
run's own random streams, evaluation history, atom statistics, settings). It is written into
`checkpoint-<step>.tmp/` and renamed when complete, so a run killed while saving leaves no half-written folder under
a checkpoint's name. The policy for an output folder that already holds a run follows the transformers examples: an
error, unless `--resume_from_checkpoint` continues it or `--overwrite_output_dir` starts over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict
from typing import Any

import torch

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
PARTIAL = re.compile(r"^checkpoint-\d+\.tmp$")
RESULTS_FILE = "results.json"
RESUME_LAST = ("true", "last")
# Flags that change where or how fast a run goes, not what it computes: they may differ when a run is resumed.
OPERATIONAL = frozenset(
    {"output_dir", "resume_from_checkpoint", "overwrite_output_dir", "disable_tqdm", "num_threads", "save_steps"}
)


def _state_name(process_index: int) -> str:
    return f"gan_state_{process_index}.pt"


def complete_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the complete checkpoints in `output_dir`, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        match = CHECKPOINT.match(name)
        path = os.path.join(output_dir, name)
        if match and os.path.isfile(os.path.join(path, _state_name(0))):
            found.append((int(match.group(1)), path))
    return sorted(found)


def earlier_run_files(output_dir: str) -> list[str]:
    """Names of the files and folders an earlier run of a GAN recipe left in `output_dir`."""
    if not os.path.isdir(output_dir):
        return []
    names = os.listdir(output_dir)
    return sorted(n for n in names if CHECKPOINT.match(n) or PARTIAL.match(n) or n == RESULTS_FILE)


def check_output_dir(output_dir: str, resume_from_checkpoint: str | None, overwrite_output_dir: bool) -> None:
    """The output-folder checks made at parsing, before any data or network is built."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(
            f"--output_dir {output_dir!r} is a file, not a folder: choose a folder for the run's outputs."
        )
    if resume_from_checkpoint is not None and overwrite_output_dir:
        raise ValueError(
            "--resume_from_checkpoint continues the run in --output_dir and --overwrite_output_dir deletes it: "
            "pass one of them."
        )
    if resume_from_checkpoint is None:
        earlier = earlier_run_files(output_dir)
        if earlier and not overwrite_output_dir:
            shown = ", ".join(earlier[:4]) + (", ..." if len(earlier) > 4 else "")
            raise ValueError(
                f"--output_dir {output_dir!r} holds an earlier run ({shown}). Pass --resume_from_checkpoint true to "
                "continue it, --overwrite_output_dir true to start over (its checkpoints and results are deleted), "
                "or choose another --output_dir."
            )
    elif resume_from_checkpoint.lower() in RESUME_LAST:
        if not complete_checkpoints(output_dir) and not os.path.isfile(os.path.join(output_dir, RESULTS_FILE)):
            raise _nothing_to_resume(output_dir)
    else:
        if not os.path.isfile(os.path.join(resume_from_checkpoint, _state_name(0))):
            raise ValueError(
                f"--resume_from_checkpoint {resume_from_checkpoint!r} is not a complete GAN checkpoint (no "
                f"{_state_name(0)} in it): pass a checkpoint-<step> folder this recipe wrote, or `true` for the "
                "newest one in --output_dir."
            )


def clear_earlier_run(output_dir: str) -> None:
    """Deletes what `earlier_run_files` lists (`--overwrite_output_dir`); other files in the folder stay."""
    for name in earlier_run_files(output_dir):
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def checkpoint_to_resume(output_dir: str, resume_from_checkpoint: str | None) -> str | None:
    """The checkpoint folder `--resume_from_checkpoint` names (`true`: the newest complete one), or None."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint.lower() not in RESUME_LAST:
        return resume_from_checkpoint
    found = complete_checkpoints(output_dir)
    if not found:
        raise _nothing_to_resume(output_dir)
    return found[-1][1]


def _nothing_to_resume(output_dir: str) -> ValueError:
    return ValueError(
        f"--resume_from_checkpoint true: {output_dir!r} holds no complete checkpoint to continue (one is written "
        "every --save_steps steps). Run without --resume_from_checkpoint to start."
    )


def run_settings(args, atom_args, data_settings: dict[str, Any]) -> dict[str, Any]:
    """What a resumed or finished run must agree with: every setting but the `OPERATIONAL` ones."""
    train = {k: v for k, v in asdict(args).items() if k not in OPERATIONAL}
    atom = asdict(atom_args) if args.method == "atom" else None
    return json.loads(json.dumps({"train": train, "atom": atom, "data": data_settings}, default=str))


def check_same_settings(saved: dict[str, Any], current: dict[str, Any], source: str) -> None:
    """Refuses to continue `source` (a checkpoint or results file) with settings other than its own."""
    changed = [
        f"--{name} {saved.get(group, {}).get(name)!r} -> {value!r}"
        for group, values in current.items()
        for name, value in (values or {}).items()
        if (saved.get(group) or {}).get(name) != value
    ]
    if changed:
        raise ValueError(
            f"{source} was written with other settings ({', '.join(changed[:5])}): resume with the same flags, or "
            "start a new run with --overwrite_output_dir true or another --output_dir."
        )


def finished_results(args, settings: dict[str, Any]) -> dict | None:
    """With `--resume_from_checkpoint true`, the results of a run that already finished in `--output_dir` (a job
    scheduler re-launching a finished job must not train again), else None."""
    path = os.path.join(args.output_dir, RESULTS_FILE)
    resume = args.resume_from_checkpoint
    if resume is None or resume.lower() not in RESUME_LAST or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        results = json.load(handle)
    check_same_settings(results.get("settings", {}), settings, path)
    return results


def save_checkpoint(accelerator, output_dir: str, step: int, state: dict[str, Any]) -> str:
    """Writes `checkpoint-<step>/` whole or not at all (every process calls this). Returns its path."""
    final = os.path.join(output_dir, f"checkpoint-{step}")
    partial = final + ".tmp"
    if accelerator.is_main_process and os.path.exists(partial):
        shutil.rmtree(partial)  # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)
    torch.save(state, os.path.join(partial, _state_name(accelerator.process_index)))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(partial, final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Restores Accelerate's state from `path`, if it was written with `settings`, and returns this process's
    `gan_state` dict."""
    state_path = os.path.join(path, _state_name(accelerator.process_index))
    if not os.path.isfile(state_path):
        raise ValueError(
            f"{path} has no {os.path.basename(state_path)}: it was written by a run with fewer processes; resume "
            "with the same number of processes."
        )
    state = torch.load(state_path, weights_only=True)
    check_same_settings(state["settings"], settings, path)
    accelerator.load_state(path)
    return state
