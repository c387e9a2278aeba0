"""One source of truth for the atom settings: AtomConfig fields <-> --atom_* flags, validation once, old configs
and checkpoints still load, no side effects on import (issues #13, #14)."""

import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import torch
import transformers as T
from tiny_models import FAMILIES

import hf_atom
from hf_atom import AtomConfig, AtomConfigError, AtomTrainingArguments, atom_arguments_class

# The flags of the released 0.1.0 (before the flags were generated): every one must still parse.
RELEASED_FLAGS = {
    "atom_weight": "0.2",
    "atom_weight_warmup_steps": "3",
    "atom_softening": "0.2",
    "atom_step": "literal",
    "atom_token_reduction": "sum",
    "atom_norm_ord": "1",
    "atom_charge_constraint": "none",
    "atom_charge_target": "0.4",
    "atom_charge_weight": "2",
    "atom_position_dim": "8",
    "atom_position_norm": "layernorm",
    "atom_hidden_layer": "-2",
    "atom_exclude_special_tokens": "true",
    "atom_include_cls_token": "true",
    "atom_gather_across_processes": "true",
    "atom_stats_threshold": "0.3",
}


def parser_actions(cls=AtomTrainingArguments):
    parser = T.HfArgumentParser(cls)
    return {action.dest: action for action in parser._actions if action.dest.startswith("atom_")}


def test_every_field_is_a_flag_with_the_same_help_and_choices():
    actions = parser_actions()
    hints = typing.get_type_hints(AtomConfig)
    fields = [spec for spec in dataclasses.fields(AtomConfig) if spec.name != "input_dim"]
    assert sorted(actions) == sorted("atom_" + spec.name for spec in fields)
    for spec in fields:
        action = actions["atom_" + spec.name]
        assert action.help.startswith(spec.metadata["help"]), spec.name
        kind = hints[spec.name]
        if typing.get_origin(kind) is typing.Union:
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if typing.get_origin(kind) is typing.Literal:
            assert tuple(action.choices) == typing.get_args(kind), spec.name
        if spec.metadata["group"] != "head":
            assert action.default == spec.default, spec.name


def test_released_flags_still_parse_to_the_same_config(tmp_path):
    argv = ["--output_dir", str(tmp_path), "--report_to", "none"]
    for flag, value in RELEASED_FLAGS.items():
        argv += [f"--{flag}", value]
    (args,) = T.HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(argv)
    assert args.atom_config == AtomConfig(
        weight=0.2,
        weight_warmup_steps=3,
        softening=0.2,
        step="literal",
        token_reduction="sum",
        norm_ord=1.0,
        charge_constraint="none",
        charge_target=0.4,
        charge_weight=2.0,
        position_dim=8,
        position_norm="layernorm",
        hidden_layer=-2,
        exclude_special_tokens=True,
        include_cls_token=True,
        gather_across_processes=True,
        stats_threshold=0.3,
    )
    (tmp_path / "old.json").write_text(json.dumps({"output_dir": str(tmp_path), "atom_step": "literal"}))
    (from_json,) = T.HfArgumentParser(AtomTrainingArguments).parse_json_file(str(tmp_path / "old.json"))
    assert from_json.atom_config.step == "literal"


@pytest.mark.parametrize(
    "flag, value",
    [
        ("atom_weight", float("inf")),
        ("atom_weight", float("nan")),
        ("atom_softening", float("inf")),
        ("atom_charge_weight", float("inf")),
        ("atom_charge_target", float("nan")),
        ("atom_norm_ord", float("nan")),
        ("atom_norm_ord", float("-inf")),
        ("atom_stats_threshold", 1.0),
        ("atom_position_dim", 0),
    ],
)
def test_every_numeric_setting_is_finite_and_in_range_at_parsing(flag, value):
    with pytest.raises(ValueError, match=f"--{flag}"):
        AtomTrainingArguments(output_dir="unused", report_to="none", **{flag: value})


def test_inf_weight_is_refused_on_the_command_line(tmp_path):
    with pytest.raises(ValueError, match="`--atom_weight` must be a finite number, got inf"):
        T.HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(
            ["--output_dir", str(tmp_path), "--atom_weight", "inf"]
        )
    assert AtomTrainingArguments(output_dir="unused", atom_norm_ord=float("inf")).atom_config.norm_ord == float("inf")


@pytest.mark.parametrize(
    "value, match",
    [
        (5, "`atom_config` must be a JSON object.*int 5"),
        ("abc", "`atom_config` must be a JSON object.*str 'abc'"),
        ({"softening": "soft"}, "`softening` must be a number, got the string 'soft'"),
        ({"step": 1}, "`step` must be one of"),
        ({"exclude_special_tokens": "yes"}, "`exclude_special_tokens` must be true or false"),
        ({"position_dim": 2.5}, "`position_dim` must be an integer"),
    ],
)
def test_bad_saved_atom_config_names_the_field(value, match):
    with pytest.raises(AtomConfigError, match=match):
        AtomConfig.from_dict(value)


def test_config_json_with_a_bad_atom_config_names_it_on_load(tmp_path):
    model = hf_atom.with_atom(FAMILIES["bert"].build())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["atom_config"] = 5
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="atom_config` must be a JSON object"):
        hf_atom.AutoAtomModel.from_pretrained(tmp_path)


def test_checkpoint_saved_before_the_new_fields_loads_to_identical_outputs(tmp_path):
    family = FAMILIES["bert"]
    torch.manual_seed(0)
    model = hf_atom.with_atom(family.build(), AtomConfig(position_dim=6, softening=0.3)).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    # 0.1.0 stored these 14 fields only
    released = {
        "weight", "input_dim", "position_dim", "softening", "step", "token_reduction", "norm_ord", "position_norm",
        "charge_constraint", "charge_target", "charge_weight", "hidden_layer", "exclude_special_tokens",
        "include_cls_token",
    }  # fmt: skip
    config["atom_config"] = {key: value for key, value in config["atom_config"].items() if key in released}
    (tmp_path / "config.json").write_text(json.dumps(config))
    reloaded = hf_atom.AutoAtomModel.from_pretrained(tmp_path).eval()
    inputs = family.inputs()
    with torch.no_grad():
        before, after = model(**inputs), reloaded(**inputs)
    assert torch.equal(before.logits, after.logits) and torch.equal(before.atom_q, after.atom_q)
    assert reloaded.atom_config.softening == 0.3 and reloaded.atom_config.stats_threshold == 0.5


def test_arguments_class_for_another_trainer_config():
    @dataclasses.dataclass
    class MyConfig(T.TrainingArguments):
        my_setting: int = 3

    AtomMyConfig = atom_arguments_class(MyConfig)
    args = AtomMyConfig(output_dir="unused", report_to="none", my_setting=4, atom_weight=0.2)
    assert args.my_setting == 4 and args.atom_config.weight == 0.2 and isinstance(args, MyConfig)
    assert atom_arguments_class(AtomMyConfig) is AtomMyConfig
    with pytest.raises(ValueError, match="TrainingArguments subclass"):
        atom_arguments_class(dict)


def test_import_leaves_the_matplotlib_backend_alone(tmp_path):
    script = f"""
import matplotlib
matplotlib.use("svg")
import torch
import hf_atom
import numpy as np
from hf_atom.visualize import render_image_importance
render_image_importance(np.random.rand(8, 8, 3), np.random.rand(2, 2) * 2 - 1, r"{tmp_path / "map.png"}")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "map.png").stat().st_size > 1000
