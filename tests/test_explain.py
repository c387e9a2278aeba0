"""Token-importance pictures: real PNG/HTML files for a tiny image model and a tiny text model, and the CLI."""

import re
from pathlib import Path

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
        assert np.isfinite(explanation.importance).all() and np.abs(explanation.importance).max() < 1
        assert explanation.prediction in {"LABEL_0", "LABEL_1", "LABEL_2"}
        with Image.open(explanation.files[0]) as picture:
            assert picture.size == (840, 400)
    assert not np.allclose(explanations[0].importance, explanations[1].importance)  # two images, two maps
    index = (tmp_path / "index.html").read_text()
    assert 'src="a.png.png"' in index and 'src="b.jpg.png"' in index  # the input's name, then .png


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
    assert (tmp_path / "img" / "a.png.png").is_file()
    assert cli(["explain", str(text_model_dir), "a dog ran far away", "--out", str(tmp_path / "txt")]) == 0
    assert (tmp_path / "txt" / "text_0000.html").is_file()
    lines = tmp_path / "lines.txt"
    lines.write_text("the cat\n\nthe dog\n")
    assert cli(["explain", str(text_model_dir), str(lines), "--out", str(tmp_path / "lines")]) == 0
    assert (tmp_path / "lines" / "text_0001.png").is_file() and not (tmp_path / "lines" / "text_0002.png").exists()
    assert cli(["explain", str(image_model_dir), str(tmp_path / "missing.png"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.png" in capsys.readouterr().err


# -- nothing lost, every bad input named (issue 13) ------------------------------------------------------------------


def _snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _pictures(folder, seed=0, names=("a.png", "b.jpg")):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_output_folder_that_is_or_holds_the_input_is_refused_and_inputs_stay_unchanged(image_model_dir, tmp_path):
    images = _pictures(tmp_path / "in")
    before = _snapshot(images)
    explainer = Explainer.from_pretrained(image_model_dir)
    with pytest.raises(ValueError, match="is the input.*--allow_output_in_input"):
        explainer.export([str(images)], str(images))
    with pytest.raises(ValueError, match="contains the input"):
        explainer.export([str(images)], str(tmp_path))
    with pytest.raises(ValueError, match="contains the input"):
        explainer.export([str(images / "a.png")], str(images))
    assert _snapshot(images) == before  # nothing written at all
    # asked for explicitly: the pictures go next to the inputs, which keep their bytes
    explanations = explainer.export([str(images)], str(images), allow_output_in_input=True)
    assert len(explanations) == 2
    after = _snapshot(images)
    assert {k: after[k] for k in before} == before
    assert {"a.png.png", "b.jpg.png", "index.html"} <= set(after)


def test_output_folder_inside_the_input_is_not_searched(image_model_dir, tmp_path):
    images = _pictures(tmp_path / "in")
    explainer = Explainer.from_pretrained(image_model_dir)
    out = images / "explained"
    explainer.export([str(images)], str(out))
    with pytest.raises(ValueError, match="is not empty .* pass --overwrite"):  # the first run's pictures stay
        explainer.export([str(images)], str(out))
    for _ in range(2):  # a run with overwrite must not explain the earlier run's pictures
        explanations = explainer.export([str(images)], str(out), overwrite=True)
        assert sorted(e.source.split("/")[-1] for e in explanations) == ["a.png", "b.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png.png", "b.jpg.png", "index.html"]


def test_same_names_in_two_folders_give_two_traceable_outputs(image_model_dir, tmp_path):
    first, second = (
        _pictures(tmp_path / "x", seed=1, names=("a.png",)),
        _pictures(tmp_path / "y", seed=2, names=("a.png",)),
    )
    _pictures(second / "deep", seed=3, names=("a.png",))
    out = tmp_path / "out"
    explainer = Explainer.from_pretrained(image_model_dir)
    # the same file twice (folder + file) is explained once
    explanations = explainer.export([str(first), str(second), str(first / "a.png")], str(out))
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert files == ["x/a.png.png", "y/a.png.png", "y/deep/a.png.png"]
    assert len(explanations) == 3 and len({e.files[0] for e in explanations}) == 3
    pictures = [np.asarray(Image.open(out / f)) for f in files]
    assert not np.array_equal(pictures[0], pictures[1])  # different inputs, different pictures
    index = (out / "index.html").read_text()
    assert [src for src in re.findall(r'src="([^"]+)"', index)] == ["x/a.png.png", "y/a.png.png", "y/deep/a.png.png"]
    for explanation in explanations:  # each picture is traceable to its input
        assert explanation.files[0] == str(out / (str(Path(explanation.source).relative_to(tmp_path)) + ".png"))
    with pytest.raises(ValueError, match="shared"):
        explainer.explain_images([Image.new("RGB", (8, 8))] * 2, ["x/a.png", "y/a.png"], str(out))


def test_unreadable_image_in_a_folder_is_skipped_named_file_stops(image_model_dir, tmp_path, caplog):
    images = _pictures(tmp_path / "in")
    (images / "broken.png").write_bytes(b"this is not a picture")
    explainer = Explainer.from_pretrained(image_model_dir)
    with caplog.at_level("WARNING"):
        explanations = explainer.export([str(images)], str(tmp_path / "out"))
    assert len(explanations) == 2
    assert "broken.png" in caplog.text and "not a readable image" in caplog.text
    assert "skipped" in (tmp_path / "out" / "index.html").read_text()
    with pytest.raises(ValueError, match="broken.png.*not a readable image"):
        explainer.export([str(images / "a.png"), str(images / "broken.png")], str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists()  # stopped before writing anything


def test_cli_bad_inputs_one_line_exit_2(image_model_dir, image_files, text_model_dir, tmp_path, capsys):
    def run(*argv):
        code = cli(["explain", *map(str, argv)])
        return code, capsys.readouterr().err

    def run_parser(*argv):
        with pytest.raises(SystemExit) as exit_info:
            cli(["explain", *map(str, argv)])
        return exit_info.value.code, capsys.readouterr().err

    out = tmp_path / "out"
    cases = {
        "model_dir": run(tmp_path / "no_such_model", image_files, "--out", out),
        "model_no_config": run(tmp_path, image_files, "--out", out),
        "out_file": run(image_model_dir, image_files, "--out", image_model_dir / "config.json"),
        "out_is_input": run(image_model_dir, image_files, "--out", image_files),
        "device": run(image_model_dir, image_files, "--out", out, "--device", "warp9"),
        "txt_missing": run(text_model_dir, tmp_path / "notes.txt", "--out", out),
        "batch_size": run_parser(image_model_dir, image_files, "--out", out, "--batch_size", "0"),
        "batch_size_text": run_parser(image_model_dir, image_files, "--out", out, "--batch_size", "two"),
    }
    expected = {
        "model_dir": "no_such_model': no such folder",
        "model_no_config": "has no config.json",
        "out_file": "--out",
        "out_is_input": "--allow_output_in_input",
        "device": "--device 'warp9'",
        "txt_missing": "inputs: '" + str(tmp_path / "notes.txt") + "' is no such file",
        "batch_size": "argument --batch_size: must be a positive integer, got 0",
        "batch_size_text": "argument --batch_size: must be a positive integer, got 'two'",
    }
    for name, (code, err) in cases.items():
        assert code == 2, (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert expected[name] in err, (name, err)
    assert not out.exists()
    assert cli(["explain", str(image_model_dir), str(image_files), "--out", str(out), "--batch_size", "1"]) == 0
    assert len(list(out.glob("*.png"))) == 2


# -- nothing lost in the output folder (links, concurrent runs, odd names, large images) -------------------------


def test_links_planted_in_the_output_folder_are_never_followed(image_model_dir, tmp_path):
    images = _pictures(tmp_path / "in")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(images / "a.png")  # an input
    (out / "a.png.png").symlink_to(outside / "keep.txt")  # a file outside
    before = _snapshot(images), _snapshot(outside)
    Explainer.from_pretrained(image_model_dir).export([str(images)], str(out), overwrite=True)
    assert (_snapshot(images), _snapshot(outside)) == before
    assert not (out / "index.html").is_symlink() and (out / "index.html").read_text().startswith("<!doctype html>")
    assert not (out / "a.png.png").is_symlink() and (out / "a.png.png").read_bytes()[:4] == b"\x89PNG"
    # a linked subfolder would lead the pictures outside: refused
    nested = _pictures(tmp_path / "nested" / "x", names=("c.png",))
    linked_out = tmp_path / "linked_out"
    linked_out.mkdir()
    (linked_out / "nested").symlink_to(outside, target_is_directory=True)  # where nested/x/c.png's picture goes
    with pytest.raises(ValueError, match="outside the output folder"):
        Explainer.from_pretrained(image_model_dir).export(
            [str(nested / "c.png"), str(images / "a.png")], str(linked_out), overwrite=True
        )
    assert _snapshot(outside) == before[1] and sorted(p.name for p in outside.iterdir()) == ["keep.txt"]


def test_a_second_run_into_a_folder_being_written_is_refused(image_model_dir, tmp_path):
    images = _pictures(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".hf_atom-explain.lock").touch()  # what a running export holds
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="Another run is writing into"):
            Explainer.from_pretrained(image_model_dir).export([str(images)], str(out), overwrite=overwrite)
    (out / ".hf_atom-explain.lock").unlink()
    Explainer.from_pretrained(image_model_dir).export([str(images)], str(out))
    assert not (out / ".hf_atom-explain.lock").exists()  # released at the end
    assert sorted(p.name for p in out.iterdir()) == ["a.png.png", "b.jpg.png", "index.html"]


def test_mathtext_in_names_and_texts_is_drawn_as_plain_text(image_model_dir, text_model_dir, tmp_path):
    images = _pictures(tmp_path / "in", names=("$\\undefined$.png",))
    out = Explainer.from_pretrained(image_model_dir).export([str(images)], str(tmp_path / "out"))
    assert Path(out[0].files[0]).is_file()
    texts = Explainer.from_pretrained(text_model_dir).export(["a $\\undefined$ poem"], str(tmp_path / "text"))
    assert all(Path(f).is_file() for f in texts[0].files)


def test_a_text_model_without_tokenizer_files_is_refused(tmp_path):
    with_atom(bert()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="has no tokenizer.*tokenizer.json.*save_pretrained"):
        Explainer.from_pretrained(tmp_path)


def test_a_long_text_is_cut_at_the_models_positions(text_model_dir, tmp_path):
    explainer = Explainer.from_pretrained(text_model_dir)
    explainer.processor.model_max_length = int(1e30)  # a tokenizer saved without a real limit
    explanation = explainer.explain_texts([" ".join(["poem"] * 20000)])[0]
    assert len(explanation.importance) == explainer.model.config.max_position_embeddings


def test_large_images_are_reduced_when_read(tmp_path):
    from hf_atom.explain_inputs import MAX_IMAGE_SIDE, read_image

    path = tmp_path / "big.png"
    Image.new("L", (3 * MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)).save(path)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (MAX_IMAGE_SIDE, round(MAX_IMAGE_SIDE / 3))


# -- other attribution methods (--method) -------------------------------------------------------------------------


def test_method_all_writes_one_panel_per_method(image_model_dir, image_files, text_model_dir, tmp_path, capsys):
    from hf_atom.explain import ALL_METHODS

    out = tmp_path / "all"
    assert cli(["explain", str(text_model_dir), "the cat sat", "a dog", "--out", str(out), "--method", "all"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(ALL_METHODS)
    for method in ALL_METHODS:
        assert sorted(p.name for p in (out / method).glob("*.png")) == ["text_0000.png", "text_0001.png"]
        page = (out / method / "text_0000.html").read_text()
        # the scaled scores are drawn: special tokens are unscored for every method but q, which shows them by name
        assert ("[CLS]" in page) == (method == "q") and page.count('class="atom-token"') >= 3
    index = (out / "index.html").read_text()
    assert all(f'href="{method}/index.html"' in index for method in ALL_METHODS) and index.count("<img") == 14
    images = tmp_path / "all_images"
    assert cli(["explain", str(image_model_dir), str(image_files), "--out", str(images), "--method", "all"]) == 0
    for method in ALL_METHODS:
        assert sorted(p.name for p in (images / method).glob("*.png")) == ["a.png.png", "b.jpg.png"]
    assert "7 methods" in capsys.readouterr().out


def test_a_method_other_than_q_scales_its_scores(text_model_dir, tmp_path):
    explainer = Explainer.from_pretrained(text_model_dir, method="occlusion")
    (explanation,) = explainer.explain_texts(["the cat sat on the mat"], str(tmp_path))
    assert explanation.importance.shape == (6,)  # the six words; [CLS] and [SEP] unscored
    assert np.abs(explanation.importance).max() == pytest.approx(1.0)
    assert "occlusion / max |occlusion| per sample" in Path(explanation.files[0]).read_text()


def test_unknown_method_and_missing_captum_are_one_line_errors(text_model_dir, tmp_path, capsys, monkeypatch):
    import sys

    with pytest.raises(SystemExit) as exit_info:
        cli(["explain", str(text_model_dir), "a dog", "--out", str(tmp_path / "x"), "--method", "gradcam"])
    assert exit_info.value.code == 2
    assert "unknown method 'gradcam'; choose one of q, abs_q, attention" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    assert cli(["explain", str(text_model_dir), "a dog", "--out", str(tmp_path / "y"), "--method", "ig"]) == 2
    error = capsys.readouterr().err
    assert 'needs Captum, which is not installed: `pip install -e ".[interpret]"`' in error
    assert len(error.strip().splitlines()) == 1 and not (tmp_path / "y").exists()
    assert cli(["explain", str(text_model_dir), "a dog", "--out", str(tmp_path / "z"), "--method", "rollout"]) == 0
