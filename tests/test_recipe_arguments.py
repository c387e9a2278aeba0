"""recipes/_arguments.py reads the command lines HfArgumentParser reads, for the GAN recipes' field types."""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from transformers import HfArgumentParser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipes"))

from _arguments import parse_arguments  # noqa: E402


@dataclass
class Example:
    output_dir: str = field(metadata={"help": "Where results go."})
    steps: int = 10
    rate: float = 1e-3
    name: str = "gan"
    threads: int | None = None
    quiet: bool = False
    plot: bool = True
    mode: Literal["fast", "exact"] = "fast"
    size: str = field(default="s", metadata={"choices": ["s", "m"]})


COMMAND_LINES = [
    ["--output_dir", "o"],
    ["--output_dir", "o", "--steps", "3", "--rate", "0.5", "--name", "atom", "--threads", "2"],
    ["--output_dir", "o", "--quiet", "--no_plot"],
    ["--output_dir", "o", "--quiet", "false", "--plot", "false"],
    ["--output_dir", "o", "--quiet", "true", "--plot", "yes"],
    ["--output_dir", "o", "--mode", "exact", "--size", "m"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES)
def test_same_values_as_hf_argument_parser(argv):
    (ours,) = parse_arguments((Example,), argv)
    (theirs,) = HfArgumentParser(Example).parse_args_into_dataclasses(args=argv)
    assert ours == theirs


def test_config_files_and_errors(tmp_path, capsys):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"output_dir": "o", "steps": 4, "quiet": True}))
    assert parse_arguments((Example,), [str(config)]) == (Example(output_dir="o", steps=4, quiet=True),)
    config.write_text(json.dumps({"output_dir": "o", "step": 4}))
    with pytest.raises(ValueError, match=r"unknown keys \['step'\]"):
        parse_arguments((Example,), [str(config)])
    with pytest.raises(SystemExit):
        parse_arguments((Example,), ["--steps", "3"])  # --output_dir is required
    assert "--output_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_arguments((Example,), ["--output_dir", "o", "--quiet", "maybe"])
    assert "Truthy value expected" in capsys.readouterr().err
    for flag, value in (("--mode", "quick"), ("--size", "xl")):  # Literal and metadata choices, as HfArgumentParser
        with pytest.raises(SystemExit):
            parse_arguments((Example,), ["--output_dir", "o", flag, value])
        assert f"{flag}: invalid choice: '{value}'" in capsys.readouterr().err

    @dataclass
    class Unreadable:
        sizes: list = field(default_factory=list)

    with pytest.raises(TypeError, match="Unreadable.sizes: type .* use transformers.HfArgumentParser"):
        parse_arguments((Unreadable,), [])
