# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Explain predictions with token importance: per-image heat maps and per-text coloured tokens, in batches.

```python
>>> explainer = Explainer.from_pretrained("out/pets3-atom")  # any folder AutoAtomModel loads, with its processor
>>> explanations = explainer.export(["cat.jpg", "photos/"], "explained/")  # PNGs (+ HTML for text) and index.html
```
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from .attribution import get_attribution_method, require_captum
from .explain_inputs import (
    IMAGE_EXTENSIONS,
    check_output_folder,
    check_output_folder_free,
    check_tokenizer_files,
    image_sources,
    load_atom_model,
    read_image,
)
from .explain_pages import page, write_index
from .importance import TokenImportance
from .output_files import OutputFolderLock, atomic_write_text, check_inside
from .visualize import LABEL, render_image_importance, render_text_importance, text_importance_html

logger = logging.get_logger(__name__)

# what `hf-atom explain --method all` draws, one panel each (abs_q repeats q; random is a control, by name only)
ALL_METHODS = ("q", "attention", "rollout", "ig", "saliency", "input_x_gradient", "occlusion")

__all__ = [
    "ALL_METHODS",
    "IMAGE_EXTENSIONS",
    "Explainer",
    "Explanation",
    "check_output_folder",
    "text_pieces",
    "write_index",
]


@dataclass
class Explanation:
    """One explained input.

    Args:
        kind (`str`): `"image"` or `"text"`.
        source (`str`): the file path, or the text itself.
        prediction (`str`, *optional*): the predicted label.
        importance (`np.ndarray`): images: the (rows, cols) q grid; text: q per coloured piece, in order.
        pieces (`list`): text: (piece, q or None) in input order; joined, the non-special pieces give the text back.
        files (`list[str]`): what was written.
    """

    kind: str
    source: str
    prediction: str | None
    importance: np.ndarray
    pieces: list = field(default_factory=list)
    files: list = field(default_factory=list)


def text_pieces(text: str, importance: TokenImportance, index: int, tokenizer: Any) -> list[tuple[str, float | None]]:
    """Splits `text` into (piece, q) in input order: tokens with their q, the text between them with None.

    Tokens without a character span (special tokens such as [CLS]) are shown by name, separated by spaces.
    """
    pieces: list[tuple[str, float | None]] = []
    cursor = 0
    for row in importance.tokens(index, tokenizer, text=text):
        start, end = row.get("span", (0, 0))
        if end <= start:  # special token: shown by name, set off from the text by a space
            name = row.get("token") or str(row.get("token_id", "?"))
            pieces += [(name, row["q"]), (" ", None)] if cursor == 0 else [(" ", None), (name, row["q"])]
            continue
        if start < cursor:  # overlapping spans (rare byte-level merges): keep the first
            continue
        if start > cursor:
            pieces.append((text[cursor:start], None))
        pieces.append((text[start:end], row["q"]))
        cursor = end
    if cursor < len(text):
        pieces.append((text[cursor:], None))
    return pieces


class Explainer:
    """Runs an atom model on images or texts and renders its token importance.

    Args:
        model: an atom model (`AutoAtomModel.from_pretrained`, `with_atom`); any classifier for methods other than q.
        processor: its image processor (images) or tokenizer (text).
        method (`str`): `"q"` (the atom heads' charges, default) or any name in
            `hf_atom.attribution.ATTRIBUTION_METHODS` (`attention`, `rollout`, `ig`, `saliency`, `input_x_gradient`,
            `occlusion`, ...); other methods' scores are divided by each sample's largest |score| for the picture.
        method_settings: passed to the method (e.g. `n_steps=50` for `ig`).
    """

    def __init__(self, model, processor, *, batch_size: int = 16, method: str = "q", **method_settings: Any):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` (--batch_size) must be a positive integer, got {batch_size!r}.")
        self.method = method
        # q keeps its own path (special tokens shown with their charge); every method is built here, so an unknown
        # name or a missing Captum stops before any file is written
        self.attribution = None if method == "q" else get_attribution_method(method, **method_settings)
        if self.attribution is not None and self.attribution.needs_captum:
            require_captum()
        self.label = LABEL if method == "q" else f"{method} / max |{method}| per sample"
        self.model = model.eval()
        self.processor = processor
        self.batch_size = batch_size
        self.kind = "image" if getattr(model, "main_input_name", "input_ids") == "pixel_values" else "text"

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **kwargs) -> Explainer:
        """Loads the atom model and its processor (image processor or tokenizer) from one folder."""
        from transformers import AutoImageProcessor, AutoTokenizer

        model = load_atom_model(model_dir)
        loader = AutoImageProcessor if model.main_input_name == "pixel_values" else AutoTokenizer
        if loader is AutoTokenizer:
            check_tokenizer_files(os.fspath(model_dir))
        try:
            processor = loader.from_pretrained(model_dir)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{model_dir} has no {'image processor' if loader is AutoImageProcessor else 'tokenizer'}; save it "
                "next to the model (the recipes do), e.g. `processor.save_pretrained(model_dir)`."
            ) from error
        return cls(model, processor, **kwargs)

    def _label(self, logits: torch.Tensor | None) -> list[str | None]:
        if logits is None or logits.dim() != 2:
            return [None] * (0 if logits is None else logits.shape[0])
        id2label = getattr(self.model.config, "id2label", None) or {}
        return [str(id2label.get(int(i), int(i))) for i in logits.argmax(-1)]

    # -- images ---------------------------------------------------------------------------------------------

    def _displayable(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The picture the model saw (after resize/crop), un-normalised to [0, 1], (H, W, 3)."""
        image = pixel_values.float().cpu().numpy().transpose(1, 2, 0)
        mean = np.asarray(getattr(self.processor, "image_mean", None) or [0.0] * image.shape[-1], dtype=float)
        std = np.asarray(getattr(self.processor, "image_std", None) or [1.0] * image.shape[-1], dtype=float)
        if getattr(self.processor, "do_normalize", True):
            image = image * std + mean
        return np.clip(image, 0.0, 1.0)

    def explain_images(
        self,
        images: Sequence[Any],
        names: Sequence[str] | None = None,
        out_dir: str | None = None,
        *,
        out_names: Sequence[str] | None = None,
    ) -> list[Explanation]:
        """Heat maps of q for PIL images (one PNG each when `out_dir` is set).

        Args:
            images: PIL images.
            names (*optional*): a source name per image (shown in titles and `index.html`).
            out_dir (*optional*): where to write the PNGs.
            out_names (*optional*): each PNG's path relative to `out_dir`; defaults to the name's stem + `.png`.
                Two images never share a file: duplicate output names raise a `ValueError`.
        """
        names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f"Got {len(images)} images but {len(names)} names.")
        if out_dir is not None:
            out_names = list(out_names) if out_names is not None else [Path(n).stem + ".png" for n in names]
            duplicates = sorted(name for name, count in collections.Counter(out_names).items() if count > 1)
            if len(out_names) != len(images) or duplicates:
                raise ValueError(
                    f"Each image needs its own output file; these are shared: {duplicates}. Pass unique `names` "
                    "or `out_names`."
                    if duplicates
                    else f"Got {len(images)} images but {len(out_names)} out_names."
                )
        results = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixel_values = self.processor(batch, return_tensors="pt")["pixel_values"].to(self.model.device)
            if self.attribution is None:
                importance = self.model.token_importance(pixel_values=pixel_values)
                grids, logits = importance.grid().numpy(), importance.logits
            else:
                attribution = self.attribution(self.model, {"pixel_values": pixel_values})
                grids = attribution.normalized().reshape(-1, *attribution.grid_shape).numpy()
                logits = attribution.probabilities
            labels = self._label(logits)
            for offset, grid in enumerate(grids):
                name = names[start + offset]
                explanation = Explanation("image", name, labels[offset] if labels else None, grid)
                if out_dir is not None:
                    path = os.path.join(out_dir, out_names[start + offset])
                    check_inside(path, out_dir)  # before makedirs: not even a folder is made through a link
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                    title = (
                        f"{Path(name).name}: predicted {explanation.prediction}" if explanation.prediction else None
                    )
                    render_image_importance(
                        self._displayable(pixel_values[offset]), grid, path, title=title, label=self.label
                    )
                    explanation.files.append(path)
                results.append(explanation)
        return results

    # -- text ------------------------------------------------------------------------------------------------

    def _max_text_length(self) -> int | None:
        """Truncation length: the tokenizer's `model_max_length`, capped at the model's positions (a tokenizer
        without a real `model_max_length` reports about 1e30, and a long text would overflow the positions)."""
        lengths = [getattr(self.processor, "model_max_length", None)]
        lengths += [getattr(self.model.config, key, None) for key in ("max_position_embeddings", "n_positions")]
        lengths = [n for n in lengths if isinstance(n, int) and 0 < n < 1_000_000_000]
        return min(lengths) if lengths else None

    def explain_texts(self, texts: Sequence[str], out_dir: str | None = None) -> list[Explanation]:
        """Coloured tokens for texts (an HTML fragment and a PNG each when `out_dir` is set)."""
        results = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            encoded = self.processor(
                batch,
                padding=True,
                truncation=True,
                max_length=self._max_text_length(),
                return_tensors="pt",
                return_offsets_mapping=bool(getattr(self.processor, "is_fast", False)),
                return_special_tokens_mask=self.attribution is not None,
            )
            inputs = {k: v.to(self.model.device) for k, v in encoded.items() if k != "offset_mapping"}
            if self.attribution is None:
                importance = self.model.token_importance(**inputs, offset_mapping=encoded.get("offset_mapping"))
            else:
                importance = self._text_attribution(inputs, encoded.get("offset_mapping"))
            labels = self._label(importance.logits)
            for offset, text in enumerate(batch):
                index = start + offset
                pieces = text_pieces(text, importance, offset, self.processor)
                values = np.asarray([q for _, q in pieces if q is not None], dtype=float)
                explanation = Explanation("text", text, labels[offset] if labels else None, values, pieces)
                if out_dir is not None:
                    title = f"predicted {explanation.prediction}" if explanation.prediction else None
                    html_path = os.path.join(out_dir, f"text_{index:04d}.html")
                    atomic_write_text(html_path, page(text_importance_html(pieces, title, label=self.label)))
                    png_path = render_text_importance(
                        pieces, os.path.join(out_dir, f"text_{index:04d}.png"), title=title, label=self.label
                    )
                    explanation.files += [html_path, png_path]
                results.append(explanation)
        return results

    def _text_attribution(self, inputs: dict, offsets: torch.Tensor | None) -> TokenImportance:
        """Another method's scores in the layout q uses (scaled to [-1, 1]); special tokens and padding unscored."""
        tokenizer = self.processor
        baseline = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
        attribution = self.attribution(self.model, inputs, baseline_token_id=baseline)
        return TokenImportance(
            q=attribution.normalized().nan_to_num(0.0),
            mask=attribution.mask,
            input_ids=inputs["input_ids"].cpu(),
            offsets=None if offsets is None else torch.as_tensor(offsets).cpu(),
            logits=attribution.probabilities,
        )

    # -- batch export -------------------------------------------------------------------------------------------

    def export(
        self, inputs: Iterable[str], out_dir: str, *, allow_output_in_input: bool = False, overwrite: bool = False
    ) -> list[Explanation]:
        """Explains every input and writes pictures plus an `index.html` into `out_dir`.

        Inputs: image files, folders (searched recursively for images), `.txt` files (one text per line, for text
        models) or literal texts (text models).

        What you can rely on (tested):

        - Input files are never written to. An `out_dir` that is an input folder or contains an input is refused
          unless `allow_output_in_input=True`; even then no output replaces an input file. An `out_dir` inside an
          input folder is fine: it is not searched for images.
        - One output per input, never shared: an image's picture keeps its path relative to the deepest folder
          common to all inputs, with `.png` appended (`x/a.png` and `y/a.png` give `x/a.png.png` and `y/a.png.png`);
          the same file given twice is explained once.
        - Nothing already in `out_dir` is replaced unless `overwrite=True`: a folder that is not empty is refused
          (another run's pictures would be replaced). One run at a time writes into a folder (a lock file); every
          file appears whole (written under a temporary name, then renamed), and a link planted in `out_dir` is
          replaced, never followed: what it points at is never written.
        - Images larger than `MAX_IMAGE_SIDE` pixels on a side are reduced when read, one at a time, so memory stays
          bounded whatever the input (the processor resizes them to the model's size anyway).
        - A file with an image extension that is not a readable image is skipped with a warning when found in a
          folder, and stops the export with an error naming it when named directly (checked before anything is
          written, except for damage that shows only when the whole picture is decoded).

        Raises:
            `ValueError`: naming the input or `out_dir` that is wrong and what to do instead.
        """
        inputs = [os.fspath(item) for item in inputs]
        if not inputs:
            raise ValueError("Nothing to explain: give image files, folders, .txt files or texts.")
        out_dir = os.fspath(out_dir)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ValueError(
                f"The output folder (--out) {out_dir!r} is an existing file; give a folder (created if missing)."
            )
        if self.kind == "image":
            sources = image_sources(inputs, out_dir, allow_output_in_input)
            check_output_folder_free(out_dir, overwrite, [source.path for source in sources])
            os.makedirs(out_dir, exist_ok=True)
            with OutputFolderLock(out_dir):
                return self._export_images(inputs, sources, out_dir)
        texts = self._read_texts(inputs)
        check_output_folder(out_dir, [], [item for item in inputs if item.endswith(".txt")], allow_output_in_input)
        if not texts:
            raise ValueError(f"No texts in {inputs}: the .txt files hold only empty lines.")
        check_output_folder_free(out_dir, overwrite, [item for item in inputs if os.path.isfile(item)])
        os.makedirs(out_dir, exist_ok=True)
        with OutputFolderLock(out_dir):
            explanations = self.explain_texts(texts, out_dir)
            write_index(explanations, out_dir)
        return explanations

    def _export_images(self, inputs: list[str], sources: list, out_dir: str) -> list[Explanation]:
        """Explains the image sources batch by batch (each image read, and reduced, one at a time) and writes the
        index; a named file that is not an image stops the run, one found in a folder is skipped."""
        explanations, skipped = [], []
        for start in range(0, len(sources), self.batch_size):
            images, names, out_names = [], [], []
            for source in sources[start : start + self.batch_size]:
                try:
                    images.append(read_image(source.path))
                except ValueError as error:
                    if source.named:
                        raise
                    logger.warning(f"Skipping {source.path}: {error}")
                    skipped.append((str(source.path), str(error)))
                    continue
                names.append(str(source.path))
                out_names.append(source.out_name)
            if images:
                explanations += self.explain_images(images, names, out_dir, out_names=out_names)
        if not explanations:
            raise ValueError(f"None of the {len(sources)} image files in {inputs} could be read as an image.")
        write_index(explanations, out_dir, skipped=skipped)
        return explanations

    @staticmethod
    def _read_texts(inputs: list[str]) -> list[str]:
        """The texts of literal inputs and of `.txt` files (one text per non-empty line)."""
        texts = []
        for item in inputs:
            if item.endswith(".txt") or os.path.isdir(item):
                if not os.path.isfile(item):
                    kind = "a folder" if os.path.isdir(item) else "no such file"
                    raise ValueError(
                        f"{item!r} is {kind}: a text model takes .txt files (one text per line) or texts. To explain "
                        "this string as a text, add a space or drop the .txt ending."
                    )
                try:
                    with open(item, encoding="utf-8") as handle:
                        texts += [line.rstrip("\n") for line in handle if line.strip()]
                except UnicodeDecodeError as error:
                    raise ValueError(f"{item!r} is not UTF-8 text ({error.reason} at byte {error.start}).") from None
            else:
                texts.append(item)
        return texts
