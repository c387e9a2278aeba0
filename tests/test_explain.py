"""Token-importance pictures: real PNG/HTML files for a tiny image model and a tiny text model, and the CLI."""

import re

import numpy as np
import pytest
import torch
import transformers as T
from PIL import Image
from tiny_models import bert, tiny_tokenizer, vit

from hf_atom import with_atom
from hf_atom.cli import main as cli
from hf_atom.explain import Explainer
from hf_atom.visualize import charge_colors, render_image_importance, text_importance_html


@pytest.fixture(scope="module")
def image_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    with_atom(vit()).save_pretrained(folder)
    T.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def text_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    with_atom(bert()).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_colours_follow_the_sign_of_q():
    colors = charge_colors([-1.0, -0.5, 0.0, 0.5, 1.0])
    red, blue = colors[:, 0], colors[:, 2]
    assert blue[0] > red[0] and blue[1] > red[1]  # negative: blue
    assert red[3] > blue[3] and red[4] > blue[4]  # positive: red
    assert colors[2, :3].min() > 0.9  # neutral: white
    assert red[4] < red[3] or colors[4, 1] < colors[3, 1]  # stronger charge, deeper colour


def test_heat_map_puts_colours_where_q_is(tmp_path):
    grid = np.full((4, 4), -1.0)
    grid[:, :2] = 1.0  # left half positive, right half negative
    path = render_image_importance(np.zeros((16, 16, 3)), grid, str(tmp_path / "map.png"), alpha=1.0)
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    height, width, _ = pixels.shape
    assert (width, height) == (840, 400)
    heat = pixels[:, int(0.45 * width) : int(0.8 * width)]  # the heat-map panel, left of the colour bar
    r, g, b = heat[..., 0], heat[..., 1], heat[..., 2]
    red_columns = np.nonzero((r - b > 40) & (r - g > 40))[1]
    blue_columns = np.nonzero(b - r > 40)[1]
    assert red_columns.size > 500 and blue_columns.size > 500
    assert red_columns.mean() < blue_columns.mean()


def test_image_export_writes_pngs_and_index(image_model_dir, image_files, tmp_path):
    explainer = Explainer.from_pretrained(image_model_dir)
    explanations = explainer.export([str(image_files)], str(tmp_path))
    assert [e.source.split("/")[-1] for e in explanations] == ["a.png", "b.jpg"]
    for explanation in explanations:
        assert explanation.importance.shape == (4, 4)  # 16 px / patch 4
        assert np.all(np.abs(explanation.importance) <= 1)
        assert explanation.prediction in {"LABEL_0", "LABEL_1", "LABEL_2"}
        with Image.open(explanation.files[0]) as picture:
            assert picture.size == (840, 400)
    index = (tmp_path / "index.html").read_text()
    assert "a.png" in index and "b.png" in index  # b.jpg's picture is b.png


def test_text_html_keeps_order_text_and_sign_colours(text_model_dir, tmp_path):
    explainer = Explainer.from_pretrained(text_model_dir)
    texts = ["The cat sat on the mat.", "green ideas sleep"]
    explanations = explainer.export(texts, str(tmp_path))
    for text, explanation in zip(texts, explanations):
        joined = "".join(piece for piece, _ in explanation.pieces)
        assert joined == f"[CLS] {text} [SEP]"  # the text and its order, with the special tokens by name
        html_path, png_path = explanation.files
        page = open(html_path, encoding="utf-8").read()
        tokens = re.findall(r'data-q="([-0-9.]+)"[^>]*background:#([0-9a-f]{6})[^>]*>([^<]*)</span>', page)
        words = [t for _, _, t in tokens]
        assert words == ["[CLS]", *re.findall(r"\w+|\.", text), "[SEP]"]
        for q, color, _ in tokens:
            red, blue = int(color[0:2], 16), int(color[4:6], 16)
            if float(q) > 0.05:
                assert red > blue
            elif float(q) < -0.05:
                assert blue > red
        with Image.open(png_path) as picture:
            assert picture.size[0] == 900 and picture.size[1] > 100
    html = text_importance_html([("a", 0.9), (" ", None), ("b", -0.9)])
    assert html.index(">a<") < html.index(">b<")


def test_cli_explain(image_model_dir, image_files, text_model_dir, tmp_path, capsys):
    assert cli(["explain", str(image_model_dir), str(image_files / "a.png"), "--out", str(tmp_path / "img")]) == 0
    assert (tmp_path / "img" / "a.png").is_file()
    assert cli(["explain", str(text_model_dir), "a dog ran far away", "--out", str(tmp_path / "txt")]) == 0
    assert (tmp_path / "txt" / "text_0000.html").is_file()
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat\n\nthe dog\n")
    assert cli(["explain", str(text_model_dir), str(lines), "--out", str(tmp_path / "lines")]) == 0
    assert (tmp_path / "lines" / "text_0001.png").is_file() and not (tmp_path / "lines" / "text_0002.png").exists()
    assert cli(["explain", str(image_model_dir), str(tmp_path / "missing.png"), "--out", str(tmp_path / "x")]) == 2
    assert "not an image file" in capsys.readouterr().err
