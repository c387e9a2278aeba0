# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The HTML that `Explainer.export` writes: one page per text and `index.html` over every explained input."""

from __future__ import annotations

import html
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .output_files import atomic_write_text

if TYPE_CHECKING:
    from .explain import Explanation

__all__ = ["page", "write_index", "write_method_index"]


def page(body: str) -> str:
    """A whole HTML document around `body` (UTF-8)."""
    return f'<!doctype html><html><head><meta charset="utf-8"><title>hf_atom token importance</title></head><body>{body}</body></html>'


def write_index(explanations: list[Explanation], out_dir: str, *, skipped: Sequence[tuple[str, str]] = ()) -> None:
    """Writes `index.html` in `out_dir`: every explanation's picture with its source and prediction, one entry per
    input, and the inputs that were skipped with the reason."""
    items = []
    for explanation in explanations:
        png = next((f for f in explanation.files if f.endswith(".png")), None)
        caption = html.escape(explanation.source if explanation.kind == "image" else explanation.source[:120])
        prediction = f" &rarr; {html.escape(explanation.prediction)}" if explanation.prediction else ""
        image = ""
        if png:
            link = urllib.parse.quote(Path(os.path.relpath(png, out_dir)).as_posix())
            image = f'<img src="{html.escape(link)}" style="max-width:100%">'
        items.append(f"<figure>{image}<figcaption>{caption}{prediction}</figcaption></figure>")
    for source, reason in skipped:
        items.append(f"<p>skipped {html.escape(source)}: {html.escape(reason)}</p>")
    body = "<h2>Token importance (q: red +, blue -, white 0)</h2>" + "\n".join(items)
    atomic_write_text(os.path.join(out_dir, "index.html"), page(body))


def write_method_index(methods: Sequence[str], out_dir: str) -> None:
    """Writes `index.html` in `out_dir` over the per-method panels of `hf-atom explain --method all`: each method's
    pictures in a row, linked to its own index."""
    rows = []
    for method in methods:
        pngs = sorted(str(p.relative_to(out_dir)) for p in Path(out_dir, method).rglob("*.png"))
        images = "".join(
            f'<img src="{html.escape(urllib.parse.quote(Path(png).as_posix()))}" style="max-width:32%">'
            for png in pngs
        )
        link = html.escape(urllib.parse.quote(f"{method}/index.html"))
        rows.append(f'<h3><a href="{link}">{html.escape(method)}</a></h3><div>{images}</div>')
    body = "<h2>Token importance by method (each scaled to its own largest value)</h2>" + "\n".join(rows)
    atomic_write_text(os.path.join(out_dir, "index.html"), page(body))
