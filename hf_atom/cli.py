# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The `hf-atom` command line.

    hf-atom explain MODEL_DIR INPUT [INPUT ...] --out DIR [--method q|attention|rollout|ig|saliency|occlusion|all]
        [--batch_size N] [--device cpu] [--allow_output_in_input]

MODEL_DIR is any folder `AutoAtomModel` loads (a recipe's output, a checkpoint) with its image processor or
tokenizer. INPUTs: image files or folders for image models; `.txt` files (one text per line) or literal texts for
text models. Writes one PNG per image (and HTML + PNG per text) plus `index.html` into DIR. Runs on CPU, offline.
`--method` picks what is drawn: q (default), another attribution method of `hf_atom.attribution` (Captum's need
`pip install -e ".[interpret]"`), or `all`: one panel per method, DIR/<method>/, and DIR/index.html linking them.

Bad input (a missing model folder, an unreadable image named directly, an output folder that is a file or holds the
inputs, a batch size below 1, an unknown device) ends with one line naming it, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (argparse would print the usage first), exit code 2 as usual."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _method(name: str) -> str:
    from .attribution import ATTRIBUTION_METHODS

    choices = ["q", *(m for m in ATTRIBUTION_METHODS if m != "q"), "all"]
    if name not in choices:
        raise argparse.ArgumentTypeError(f"unknown method {name!r}; choose one of {', '.join(choices)}")
    return name


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps).") from None
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(device.type)
    if available is not None and not available():
        raise ValueError(f"--device {name!r}: no {device.type} device is available here; use --device cpu.")
    return device


def _explain(args: argparse.Namespace) -> int:
    from .attribution import ATTRIBUTION_METHODS, require_captum
    from .explain import ALL_METHODS, Explainer, check_output_folder
    from .explain_inputs import check_output_folder_free
    from .explain_pages import write_method_index

    # everything that needs no model is checked before the (slow) model load
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is an existing file; give a folder (it is created if missing).")
    missing = [item for item in args.inputs if item.endswith(".txt") and not os.path.isfile(item)]
    if missing:
        raise ValueError(f"inputs: {missing[0]!r} is no such file (.txt inputs are files with one text per line).")
    existing = [item for item in args.inputs if os.path.exists(item)]
    check_output_folder(
        args.out,
        [i for i in existing if os.path.isdir(i)],
        [i for i in existing if os.path.isfile(i)],
        args.allow_output_in_input,
    )
    check_output_folder_free(args.out, args.overwrite, existing)
    methods = list(ALL_METHODS) if args.method == "all" else [args.method]
    if any(ATTRIBUTION_METHODS.get(name) and ATTRIBUTION_METHODS[name].needs_captum for name in methods):
        try:
            require_captum()
        except ImportError as error:
            raise ValueError(str(error)) from None
    device = _device(args.device)
    explainer = Explainer.from_pretrained(args.model_dir, batch_size=args.batch_size, method=methods[0])
    explainer.model.to(device)
    if args.method != "all":
        _report(explainer.export(args.inputs, args.out, **_export_options(args)), args.out)
        return 0
    if not hasattr(explainer.model, "token_importance"):
        methods = [m for m in methods if m != "q"]  # a plain model has no charges
    os.makedirs(args.out, exist_ok=True)
    for name in methods:
        panel = Explainer(explainer.model, explainer.processor, batch_size=args.batch_size, method=name)
        _report(panel.export(args.inputs, os.path.join(args.out, name), **_export_options(args)), args.out, name)
    write_method_index(methods, args.out)
    print(f"{len(methods)} methods; open {os.path.join(args.out, 'index.html')}")
    return 0


def _export_options(args: argparse.Namespace) -> dict:
    return {"allow_output_in_input": args.allow_output_in_input, "overwrite": args.overwrite}


def _report(explanations: list, out: str, method: str | None = None) -> None:
    for explanation in explanations:
        label = f" -> {explanation.prediction}" if explanation.prediction else ""
        source = explanation.source if explanation.kind == "image" else explanation.source[:60]
        print(f"{source}{label}: {', '.join(explanation.files)}")
    where = os.path.join(out, method, "index.html") if method else os.path.join(out, "index.html")
    print(f"{method + ': ' if method else ''}{len(explanations)} explained; open {where}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hf-atom", description="hf_atom: atom modeling for transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="Render token importance of an atom model for images or texts.")
    explain.add_argument("model_dir", help="Folder of an atom model with its image processor or tokenizer.")
    explain.add_argument("inputs", nargs="+", help="Image files/folders, .txt files (one text per line) or texts.")
    explain.add_argument("--out", required=True, help="Output folder for the PNG/HTML files and index.html.")
    explain.add_argument(
        "--method",
        type=_method,
        default="q",
        help="What to draw: q (default), attention, rollout, ig, saliency, input_x_gradient, occlusion, abs_q, random, "
        "or all (one panel per method, in DIR/<method>/).",
    )
    explain.add_argument("--batch_size", type=_positive_int, default=16, help="Inputs per forward pass (>= 1).")
    explain.add_argument("--device", default="cpu", help="torch device to run the model on (cpu, cuda, ...).")
    explain.add_argument(
        "--allow_output_in_input",
        action="store_true",
        help="Allow --out to be an input folder or to contain an input (input files are never overwritten).",
    )
    explain.add_argument(
        "--overwrite",
        action="store_true",
        help="Write into an --out folder that already holds files (files of the same name are replaced).",
    )
    explain.set_defaults(handler=_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:  # bad input: say what and how to fix it, without a traceback
        print(f"hf-atom {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
