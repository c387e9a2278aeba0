# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""What `Explainer.export` and `hf-atom explain` read: the output-folder policy, the image inputs, the model folder.

Every check here runs before anything is written, so a wrong input or output folder stops with a message naming it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_SIDE",
    "TOKENIZER_FILES",
    "ImageSource",
    "check_output_folder",
    "check_output_folder_free",
    "check_tokenizer_files",
    "image_sources",
    "load_atom_model",
    "read_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Larger images are reduced when read: the processor resizes to the model's few hundred pixels anyway, and a
# 12000 x 12000 image at full size costs gigabytes in the processor's float copy.
MAX_IMAGE_SIDE = 2048
# What a saved tokenizer leaves in its folder; one of them must be there (else transformers falls back silently).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)


@dataclass
class ImageSource:
    """One image to explain and where its picture goes."""

    path: Path  # as given (absolute if the input was)
    out_name: str  # relative to the output folder
    named: bool  # given directly (True) or found in a folder


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(out_dir: str, folders: list[str], files: list[str], allow: bool) -> None:
    """Refuses an output folder that is an input folder or holds an input, unless allowed (why: outputs would sit
    among, and could be taken for, the user's files)."""
    out = Path(out_dir).resolve()
    for item in folders + files:
        resolved = Path(item).resolve()
        if _inside(resolved, out) and not allow:
            relation = "is" if resolved == out else "contains"
            raise ValueError(
                f"The output folder (--out) {out_dir!r} {relation} the input {item!r}: the pictures would be written "
                "among your inputs. Choose another output folder, or pass --allow_output_in_input "
                "(`allow_output_in_input=True`) to write there anyway (input files are never overwritten)."
            )


def check_output_folder_free(out_dir: str, overwrite: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Refuses an output folder that already holds files unless `overwrite` (another run's pictures and index
    would be replaced); a folder another run is writing into is refused in any case. `inputs` in the folder (with
    `allow_output_in_input`) do not count: they are never written."""
    from .output_files import LOCK_NAME

    if not os.path.isdir(out_dir):
        return
    entries = os.listdir(out_dir)
    if LOCK_NAME in entries:
        raise ValueError(
            f"Another run is writing into the output folder (--out) {out_dir!r} (lock file {LOCK_NAME}). Wait for it "
            "to finish, choose another folder, or delete the lock file if no run is active."
        )
    given = [Path(item).resolve() for item in inputs]
    entries = [e for e in entries if not any(_inside(path, (Path(out_dir) / e).resolve()) for path in given)]
    if entries and not overwrite:
        raise ValueError(
            f"The output folder (--out) {out_dir!r} is not empty ({len(entries)} entries, e.g. {sorted(entries)[0]!r}): "
            "its files could be replaced. Choose a new folder, or pass --overwrite (`overwrite=True`) to write there."
        )


def check_tokenizer_files(model_dir: str) -> None:
    """Refuses a local text-model folder without tokenizer files (transformers would tokenize every word to [UNK])."""
    if os.path.isdir(model_dir) and not any(os.path.isfile(os.path.join(model_dir, f)) for f in TOKENIZER_FILES):
        raise ValueError(
            f"{model_dir} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save it next to the model (the "
            "recipes do), e.g. `tokenizer.save_pretrained(model_dir)`."
        )


def image_sources(inputs: list[str], out_dir: str, allow: bool) -> list[ImageSource]:
    """Every image to explain, once, with a unique output name that keeps its path relative to the inputs."""
    folders, files = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            folders.append(item)
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(item)
        else:
            reason = "no such file or folder" if not path.exists() else "not an image file or a folder of images"
            raise ValueError(f"{item!r}: {reason} (image extensions: {', '.join(IMAGE_EXTENSIONS)}).")
    check_output_folder(out_dir, folders, files, allow)
    out = Path(out_dir).resolve()
    found: list[tuple[Path, bool]] = [(Path(f), True) for f in files]
    for folder in folders:
        # an output folder inside an input folder is never searched: earlier pictures are not inputs
        skip_out = out != Path(folder).resolve()
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                if not (skip_out and _inside(path.resolve(), out)):
                    found.append((path, False))
    seen, unique = set(), []
    for path, named in found:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((path, named))
    if not unique:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {inputs}.")
    absolute = [Path(os.path.abspath(p)) for p, _ in unique]
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    sources = [
        ImageSource(path, str(a.relative_to(root)) + ".png", named) for (path, named), a in zip(unique, absolute)
    ]
    inputs_resolved = {p.resolve() for p, _ in unique}
    for source in sources:
        target = (out / source.out_name).resolve()
        if target in inputs_resolved:  # possible only with allow_output_in_input: never overwrite an input
            raise ValueError(
                f"The picture for {str(source.path)!r} would be written to {str(target)!r}, which is one of the "
                "inputs. Choose an output folder outside the inputs."
            )
    for source in sources:
        if source.named:
            _probe_image(source.path)
    return sources


def _unreadable_image_errors() -> tuple[type, ...]:
    from PIL import Image

    # what PIL raises for files that are not (whole) images; anything else is a real error and propagates
    return (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def _probe_image(path: Path) -> None:
    """Reads only the header: a named file that is not an image stops the export before anything is written."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except _unreadable_image_errors() as error:
        raise ValueError(f"{str(path)!r} is not a readable image ({type(error).__name__}: {error}).") from None


def read_image(path: Path):
    """The image at `path` in RGB, fully decoded (so that a truncated file fails here, naming it), reduced to at
    most `MAX_IMAGE_SIDE` pixels on a side."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if max(image.size) > MAX_IMAGE_SIDE:
                image.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # JPEG: decode at a reduced scale
                image.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), reducing_gap=2.0)
            return image.convert("RGB")
    except _unreadable_image_errors() as error:
        raise ValueError(f"{str(path)!r} is not a readable image ({type(error).__name__}: {error}).") from None


def load_atom_model(model_dir: str | os.PathLike):
    """`AutoAtomModel.from_pretrained`, with every way it can fail on a user's path turned into one `ValueError`."""
    path = os.fspath(model_dir)
    if os.path.isfile(path):
        raise ValueError(f"The model (MODEL_DIR) {path!r} is a file; give the folder that holds config.json.")
    if not os.path.isdir(path):
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(path)
        except HFValidationError:
            raise ValueError(f"The model (MODEL_DIR) {path!r}: no such folder.") from None
    elif not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(
            f"The model (MODEL_DIR) {path!r} has no config.json: give the folder of a saved atom model (a recipe's "
            "output, a checkpoint-N folder, or `model.save_pretrained(folder)`)."
        )
    from .auto import AutoAtomModel  # the Trainer-free part of the package stays importable without transformers

    try:
        return AutoAtomModel.from_pretrained(path)
    except (OSError, ValueError) as error:
        where = "" if os.path.isdir(path) else " It is no local folder, and the Hub did not serve it either."
        message = " ".join(str(error).split())
        raise ValueError(f"Cannot load an atom model from {path!r}:{where} {message}") from error
