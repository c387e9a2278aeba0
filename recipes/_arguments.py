"""Command-line flags from dataclasses for the plain-PyTorch recipes (the GAN recipes), without transformers.

Reads the same command lines as `transformers.HfArgumentParser` for the field types these recipes use (`int`,
`float`, `str`, `bool`, `Literal[...]` choices, `Optional[...]` of those; `choices` in a field's metadata too):
`--name value`, a bare `--flag` for `True`, `--flag false`,
`--no_<flag>` for booleans that default to `True`, or a single JSON / YAML file with the same keys. The Trainer
recipes keep `HfArgumentParser` (their `TrainingArguments` has types this module does not read); the GAN recipes
use this one so that they import only torch and hf_atom's torch side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

_SCALARS = (int, float, str)


def _string_to_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"Truthy value expected: got {value!r}, expected one of true/false, yes/no, 1/0.")


def _scalar_type(owner: type, name: str, annotation: Any) -> tuple[type, tuple | None]:
    """`(int, None)` for `int` or `Optional[int]`, `(str, choices)` for a `Literal` of strings; a clear error for the
    types this parser does not read."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(arguments) == 1:  # Optional[X]
            annotation = arguments[0]
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        kinds = {type(choice) for choice in choices}
        if len(kinds) == 1 and kinds <= set(_SCALARS):
            return kinds.pop(), choices
    elif annotation is bool or annotation in _SCALARS:
        return annotation, None
    raise TypeError(
        f"{owner.__name__}.{name}: type {annotation!r} cannot be read from the command line by recipes/_arguments.py "
        "(it reads int, float, str, bool, Literal and Optional of those); use transformers.HfArgumentParser for this "
        "dataclass."
    )


def build_parser(dataclass_types: Sequence[type]) -> argparse.ArgumentParser:
    """An `argparse` parser with one flag per field of `dataclass_types` (help from the field's `metadata`)."""
    parser = argparse.ArgumentParser()
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        group = parser.add_argument_group(dataclass_type.__name__, (dataclass_type.__doc__ or "").strip() or None)
        for field in dataclasses.fields(dataclass_type):
            if not field.init:
                continue
            kind, choices = _scalar_type(dataclass_type, field.name, hints[field.name])
            options: dict[str, Any] = {"help": field.metadata.get("help")}
            choices = field.metadata.get("choices", choices)
            if choices is not None:
                options["choices"] = list(choices)
            if field.default is not dataclasses.MISSING:
                options["default"] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                options["default"] = field.default_factory()
            else:
                options["required"] = True
            if kind is bool:
                # `--flag`, `--flag true`, `--flag false`, as HfArgumentParser reads them.
                options.update(type=_string_to_bool, nargs="?", const=True)
            else:
                options["type"] = kind
            group.add_argument(f"--{field.name}", **options)
            if kind is bool and field.default is True:
                group.add_argument(f"--no_{field.name}", action="store_false", dest=field.name)
    return parser


def parse_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple:
    """One instance per dataclass, from flags or from a single `.json` / `.yaml` file with the fields as keys."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        return _from_file(dataclass_types, os.path.abspath(argv[0]))
    return _instances(dataclass_types, vars(build_parser(dataclass_types).parse_args(argv)))


def _instances(dataclass_types: Sequence[type], values: dict[str, Any]) -> tuple:
    """Each dataclass built from its own fields' entries of `values` (absent fields keep their defaults)."""
    return tuple(
        dataclass_type(
            **{f.name: values[f.name] for f in dataclasses.fields(dataclass_type) if f.init and f.name in values}
        )
        for dataclass_type in dataclass_types
    )


def _from_file(dataclass_types: Sequence[type], path: str) -> tuple:
    with open(path, encoding="utf-8") as handle:
        if path.endswith(".json"):
            values = json.load(handle)
        else:
            import yaml

            values = yaml.safe_load(handle)
    known = {f.name for t in dataclass_types for f in dataclasses.fields(t) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; the recipe reads {sorted(known)}.")
    return _instances(dataclass_types, values)
