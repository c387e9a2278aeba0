# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Explain predictions with token importance: per-image heat maps and per-text coloured tokens, in batches.

```python
>>> explainer = Explainer.from_pretrained("out/pets3-atom")  # any folder AutoAtomModel loads, with its processor
>>> explanations = explainer.export(["cat.jpg", "photos/"], "explained/")  # PNGs (+ HTML for text) and index.html
```
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import torch

from .importance import TokenImportance
from .modeling import AutoAtomModel
from .visualize import render_image_importance, render_text_importance, text_importance_html

__all__ = ["Explanation", "Explainer", "IMAGE_EXTENSIONS", "text_pieces", "write_index"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


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
    prediction: Optional[str]
    importance: np.ndarray
    pieces: list = field(default_factory=list)
    files: list = field(default_factory=list)


def text_pieces(
    text: str, importance: TokenImportance, index: int, tokenizer: Any
) -> list[tuple[str, Optional[float]]]:
    """Splits `text` into (piece, q) in input order: tokens with their q, the text between them with None.

    Tokens without a character span (special tokens such as [CLS]) are shown by name, separated by spaces.
    """
    pieces: list[tuple[str, Optional[float]]] = []
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
        model: an atom model (`AutoAtomModel.from_pretrained`, `with_atom`).
        processor: its image processor (images) or tokenizer (text).
    """

    def __init__(self, model, processor, *, batch_size: int = 16):
        self.model = model.eval()
        self.processor = processor
        self.batch_size = batch_size
        self.kind = "image" if getattr(model, "main_input_name", "input_ids") == "pixel_values" else "text"

    @classmethod
    def from_pretrained(cls, model_dir: Union[str, os.PathLike], **kwargs) -> "Explainer":
        """Loads the atom model and its processor (image processor or tokenizer) from one folder."""
        from transformers import AutoImageProcessor, AutoTokenizer

        model = AutoAtomModel.from_pretrained(model_dir)
        loader = AutoImageProcessor if model.main_input_name == "pixel_values" else AutoTokenizer
        try:
            processor = loader.from_pretrained(model_dir)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{model_dir} has no {'image processor' if loader is AutoImageProcessor else 'tokenizer'}; save it "
                "next to the model (the recipes do), e.g. `processor.save_pretrained(model_dir)`."
            ) from error
        return cls(model, processor, **kwargs)

    def _label(self, logits: Optional[torch.Tensor]) -> list[Optional[str]]:
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
        self, images: Sequence[Any], names: Optional[Sequence[str]] = None, out_dir: Optional[str] = None
    ) -> list[Explanation]:
        """Heat maps of q for PIL images (one PNG each when `out_dir` is set)."""
        names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
        results = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixel_values = self.processor(batch, return_tensors="pt")["pixel_values"].to(self.model.device)
            importance = self.model.token_importance(pixel_values=pixel_values)
            grids = importance.grid().numpy()
            labels = self._label(importance.logits)
            for offset, grid in enumerate(grids):
                name = names[start + offset]
                explanation = Explanation("image", name, labels[offset] if labels else None, grid)
                if out_dir is not None:
                    path = os.path.join(out_dir, Path(name).stem + ".png")
                    title = (
                        f"{Path(name).name}: predicted {explanation.prediction}" if explanation.prediction else None
                    )
                    render_image_importance(self._displayable(pixel_values[offset]), grid, path, title=title)
                    explanation.files.append(path)
                results.append(explanation)
        return results

    # -- text ------------------------------------------------------------------------------------------------

    def explain_texts(self, texts: Sequence[str], out_dir: Optional[str] = None) -> list[Explanation]:
        """Coloured tokens for texts (an HTML fragment and a PNG each when `out_dir` is set)."""
        results = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            encoded = self.processor(
                batch,
                padding=True,
                truncation=True,
                return_tensors="pt",
                return_offsets_mapping=bool(getattr(self.processor, "is_fast", False)),
            )
            inputs = {k: v.to(self.model.device) for k, v in encoded.items() if k != "offset_mapping"}
            importance = self.model.token_importance(**inputs, offset_mapping=encoded.get("offset_mapping"))
            labels = self._label(importance.logits)
            for offset, text in enumerate(batch):
                index = start + offset
                pieces = text_pieces(text, importance, offset, self.processor)
                values = np.asarray([q for _, q in pieces if q is not None], dtype=float)
                explanation = Explanation("text", text, labels[offset] if labels else None, values, pieces)
                if out_dir is not None:
                    title = f"predicted {explanation.prediction}" if explanation.prediction else None
                    html_path = os.path.join(out_dir, f"text_{index:04d}.html")
                    with open(html_path, "w", encoding="utf-8") as handle:
                        handle.write(_page(text_importance_html(pieces, title)))
                    png_path = render_text_importance(
                        pieces, os.path.join(out_dir, f"text_{index:04d}.png"), title=title
                    )
                    explanation.files += [html_path, png_path]
                results.append(explanation)
        return results

    # -- batch export -------------------------------------------------------------------------------------------

    def export(self, inputs: Iterable[str], out_dir: str) -> list[Explanation]:
        """Explains every input and writes pictures plus an `index.html` into `out_dir`.

        Inputs: image files, folders (searched recursively for images), `.txt` files (one text per line, for text
        models) or literal texts (text models).
        """
        os.makedirs(out_dir, exist_ok=True)
        inputs = list(inputs)
        if not inputs:
            raise ValueError("Nothing to explain: give image files, folders, .txt files or texts.")
        if self.kind == "image":
            from PIL import Image

            paths = []
            for item in inputs:
                path = Path(item)
                if path.is_dir():
                    paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
                elif path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                    paths.append(path)
                else:
                    raise ValueError(
                        f"{item!r} is not an image file or a folder of images ({', '.join(IMAGE_EXTENSIONS)})."
                    )
            if not paths:
                raise ValueError(f"No images found in {inputs}.")
            explanations = self.explain_images([Image.open(p) for p in paths], [str(p) for p in paths], out_dir)
        else:
            texts = []
            for item in inputs:
                if item.endswith(".txt") and os.path.isfile(item):
                    with open(item, encoding="utf-8") as handle:
                        texts += [line.rstrip("\n") for line in handle if line.strip()]
                else:
                    texts.append(item)
            explanations = self.explain_texts(texts, out_dir)
        write_index(explanations, out_dir)
        return explanations


def _page(body: str) -> str:
    return f'<!doctype html><html><head><meta charset="utf-8"><title>hf_atom token importance</title></head><body>{body}</body></html>'


def write_index(explanations: list[Explanation], out_dir: str) -> None:
    """Writes `index.html` in `out_dir`, showing every explanation's picture with its source and prediction."""
    items = []
    for explanation in explanations:
        png = next((f for f in explanation.files if f.endswith(".png")), None)
        caption = html.escape(explanation.source if explanation.kind == "image" else explanation.source[:120])
        prediction = f" &rarr; {html.escape(explanation.prediction)}" if explanation.prediction else ""
        image = f'<img src="{html.escape(os.path.basename(png))}" style="max-width:100%">' if png else ""
        items.append(f"<figure>{image}<figcaption>{caption}{prediction}</figcaption></figure>")
    with open(os.path.join(out_dir, "index.html"), "w", encoding="utf-8") as handle:
        handle.write(_page("<h2>Token importance (q: red +, blue -, white 0)</h2>" + "\n".join(items)))
