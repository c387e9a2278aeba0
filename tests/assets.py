"""Real offline assets (../shared): pretrained checkpoints prepared by shared/tools/offline_models.py, and data."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HF_ATOM_SHARED", REPO.parent / "shared"))
MODELS_DIR = Path(os.environ.get("HF_ATOM_OFFLINE_MODELS", REPO / ".assets" / "models"))


def shared_data(*parts: str) -> Path:
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"{path} not found (set HF_ATOM_SHARED to the shared/ folder)")
    return path


@functools.cache
def offline_model(name: str) -> Path:
    """Folder of a real pretrained model (minilm, smollm2, dinov2), prepared once and cached."""
    tool = SHARED / "tools" / "offline_models.py"
    if not tool.exists():
        pytest.skip(f"{tool} not found (set HF_ATOM_SHARED to the shared/ folder)")
    result = subprocess.run(
        [sys.executable, str(tool), name, "--out", str(MODELS_DIR)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"offline_models.py {name} failed:\n{result.stderr[-3000:]}")
    for line in result.stdout.splitlines():
        if line.startswith(name + "\t"):
            return Path(line.split("\t", 1)[1])
    raise RuntimeError(f"offline_models.py printed no folder for {name}:\n{result.stdout}")
