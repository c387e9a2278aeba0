# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The `hf-atom` command line.

    hf-atom explain MODEL_DIR INPUT [INPUT ...] --out DIR

MODEL_DIR is any folder `AutoAtomModel` loads (a recipe's output, a checkpoint) with its image processor or
tokenizer. INPUTs: image files or folders for image models; `.txt` files (one text per line) or literal texts for
text models. Writes one PNG per image (and HTML + PNG per text) plus `index.html` into DIR. Runs on CPU, offline.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _explain(args: argparse.Namespace) -> int:
    import torch

    from .explain import Explainer

    explainer = Explainer.from_pretrained(args.model_dir, batch_size=args.batch_size)
    explainer.model.to(torch.device(args.device))
    explanations = explainer.export(args.inputs, args.out)
    for explanation in explanations:
        label = f" -> {explanation.prediction}" if explanation.prediction else ""
        source = explanation.source if explanation.kind == "image" else explanation.source[:60]
        print(f"{source}{label}: {', '.join(explanation.files)}")
    print(f"{len(explanations)} explained; open {args.out}/index.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-atom", description="hf_atom: atom modeling for transformers.")
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="Render token importance of an atom model for images or texts.")
    explain.add_argument("model_dir", help="Folder of an atom model with its image processor or tokenizer.")
    explain.add_argument("inputs", nargs="+", help="Image files/folders, .txt files (one text per line) or texts.")
    explain.add_argument("--out", required=True, help="Output folder for the PNG/HTML files and index.html.")
    explain.add_argument("--batch_size", type=int, default=16)
    explain.add_argument("--device", default="cpu")
    explain.set_defaults(handler=_explain)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:  # bad input: say what and how to fix it, without a traceback
        print(f"hf-atom {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
