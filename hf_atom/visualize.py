# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Pictures of token importance: heat maps over images, coloured tokens for text (PNG and HTML).

Colours are diverging and fixed to q's range: q = +1 red, q = -1 blue, q = 0 white (neutral), so pictures from
different samples and models compare directly. Needs matplotlib (`pip install hf_atom[recipes]`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from .output_files import atomic_write

__all__ = ["CMAP", "charge_colors", "render_image_importance", "render_text_importance", "text_importance_html"]

CMAP = "RdBu_r"  # blue (-1) - white (0) - red (+1)
LABEL = "token importance q"


def _matplotlib():
    """matplotlib pieces that draw into files only: an Agg canvas per figure, never pyplot or `matplotlib.use`,
    so a user's backend (a notebook's, say) is left as it was."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    def new_figure(**kwargs) -> Figure:
        figure = Figure(**kwargs)
        FigureCanvasAgg(figure)
        return figure

    return matplotlib, new_figure, Normalize(vmin=-1.0, vmax=1.0)


def charge_colors(q: Sequence[float]) -> np.ndarray:
    """RGBA colours (N, 4) in [0, 1] for charges q in [-1, 1]: red for +, blue for -, white for 0."""
    matplotlib, _, norm = _matplotlib()
    return matplotlib.colormaps[CMAP](norm(np.clip(np.asarray(q, dtype=float), -1.0, 1.0)))


def _legend(fig, axis, mappable, label: str) -> None:
    bar = fig.colorbar(mappable, ax=axis, fraction=0.046, pad=0.04, ticks=[-1, 0, 1])
    bar.ax.set_yticklabels(["-1 (neg.)", "0 (neutral)", "+1 (pos.)"])
    bar.set_label(label, parse_math=False)


def render_image_importance(
    image: np.ndarray,
    grid: np.ndarray,
    path: str,
    *,
    title: str | None = None,
    alpha: float = 0.6,
    label: str = LABEL,
) -> str:
    """Saves a PNG: the image, and q as a heat map over it (each patch / feature-map cell one colour).

    Args:
        image (`np.ndarray` of shape `(H, W, 3)` or `(H, W)`): the picture as the model saw it, values in [0, 1].
        grid (`np.ndarray` of shape `(rows, cols)`): q per patch (NaN for cells outside the atom).
        path (`str`): where to write the PNG.
        label (`str`): what the colours show (another attribution method's name, scaled to [-1, 1]).
    """
    matplotlib, new_figure, norm = _matplotlib()
    image = np.clip(np.asarray(image, dtype=float), 0.0, 1.0)
    grid = np.asarray(grid, dtype=float)
    height, width = image.shape[:2]
    fig = new_figure(figsize=(8.4, 4.0), dpi=100)
    axes = fig.subplots(1, 2)
    for axis in axes:
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=(0, width, height, 0))
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0].set_title("input")
    # extent maps the grid onto the whole picture, cell by cell (nearest: no invented in-between values)
    mappable = axes[1].imshow(
        np.ma.masked_invalid(grid),
        cmap=CMAP,
        norm=norm,
        alpha=alpha,
        interpolation="nearest",
        extent=(0, width, height, 0),
    )
    axes[1].set_title(f"{label} over patches", parse_math=False)
    _legend(fig, axes[1], mappable, label)
    if title:
        fig.suptitle(title, parse_math=False)  # a file name or label is text, never mathtext
    fig.tight_layout()
    return atomic_write(path, fig.savefig)  # whole or absent, never through a link at `path`


def _hex(color: np.ndarray) -> str:
    r, g, b = (int(round(255 * c)) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def text_importance_html(
    pieces: Sequence[tuple[str, float | None]], title: str | None = None, *, label: str = LABEL
) -> str:
    """An HTML fragment with each piece of text on its importance colour (None: plain text, e.g. spaces).

    Each coloured piece carries its value in a tooltip and a `data-q` attribute.
    """
    values = [q for _, q in pieces if q is not None]
    colors = iter(charge_colors(values)) if values else iter(())
    spans = []
    for text, q in pieces:
        if q is None:
            spans.append(html.escape(text))
        else:
            spans.append(
                f'<span class="atom-token" data-q="{q:.4f}" title="q = {q:+.3f}" '
                f'style="background:{_hex(next(colors))};padding:1px 0;border-radius:2px">{html.escape(text)}</span>'
            )
    legend = "".join(
        f'<span style="background:{_hex(c)};padding:0 6px;margin-right:2px">{tick}</span>'
        for c, tick in zip(charge_colors([-1.0, -0.5, 0.0, 0.5, 1.0]), ["-1", "-0.5", "0", "+0.5", "+1"])
    )
    heading = f"<h3>{html.escape(title)}</h3>" if title else ""
    return (
        f'<div class="atom-importance">{heading}<p style="font-family:monospace;font-size:15px;line-height:1.9">'
        f'{"".join(spans)}</p><p style="font-size:12px">{html.escape(label)}: {legend}</p></div>'
    )


def render_text_importance(
    pieces: Sequence[tuple[str, float | None]],
    path: str,
    *,
    title: str | None = None,
    width: float = 9.0,
    label: str = LABEL,
) -> str:
    """Saves a PNG with the text laid out in order, each coloured piece on its importance colour, and a legend."""
    matplotlib, new_figure, norm = _matplotlib()
    fig = new_figure(figsize=(width, 2.0), dpi=100)
    renderer = fig.canvas.get_renderer()
    fig_width_px = fig.get_figwidth() * fig.dpi
    x, y, line_height = 10.0, 0.0, 26.0
    placed = []
    for text, q in pieces:
        for i, part in enumerate(text.split("\n")):
            if i > 0:
                x, y = 10.0, y + line_height
            if not part:
                continue
            probe = fig.text(0, 0, part, fontsize=13, family="monospace", parse_math=False)
            extent = probe.get_window_extent(renderer=renderer)
            probe.remove()
            if x + extent.width > fig_width_px - 10 and x > 10.0:
                x, y = 10.0, y + line_height
            placed.append((x, y, part, q))
            x += extent.width
    rows = int(y / line_height) + 1
    height_px = rows * line_height + (40 if title else 20) + 90
    fig.set_size_inches(width, height_px / fig.dpi)
    top = height_px - (40 if title else 20)
    values = [q for *_, q in placed if q is not None]
    colors = iter(charge_colors(values)) if values else iter(())
    for x, y, part, q in placed:
        box = None if q is None else {"facecolor": next(colors), "edgecolor": "none", "pad": 1.5}
        fig.text(
            x / fig_width_px,
            (top - y) / height_px,
            part,
            fontsize=13,
            family="monospace",
            parse_math=False,
            bbox=box,
            va="top",
            ha="left",
        )
    if title:
        fig.text(
            10 / fig_width_px,
            (height_px - 12) / height_px,
            title,
            fontsize=12,
            va="top",
            weight="bold",
            parse_math=False,
        )
    axis = fig.add_axes((0.25, 32 / height_px, 0.5, 12 / height_px))
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=CMAP)
    bar = fig.colorbar(mappable, cax=axis, orientation="horizontal", ticks=[-1, 0, 1])
    bar.ax.set_xticklabels(["-1", "0 (neutral)", "+1"])
    bar.ax.set_title(label, fontsize=9, parse_math=False)
    return atomic_write(path, fig.savefig)  # whole or absent, never through a link at `path`
