"""Peak memory of `hf-atom explain` on large images: reduced when read (the default) vs decoded at full size.

    python benchmarks/explain_memory.py [--side 12000] [--images 4] [--json benchmarks/results/explain_memory.json]

Each variant runs `Explainer.export` over the same all-black PNGs in a fresh process (a tiny ViT atom model built
locally, batch 16, so every image is in one batch) and reports that process's peak resident memory
(`ru_maxrss`). "full size" sets `hf_atom.explain_inputs.MAX_IMAGE_SIDE` out of reach: what explain did before
images were reduced when read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import os, resource, sys, torch, transformers as T
import hf_atom.explain_inputs as inputs
from hf_atom import with_atom
from hf_atom.explain import Explainer

folder, out, full_size = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if full_size:
    inputs.MAX_IMAGE_SIDE = 10**9
torch.manual_seed(0)
config = T.ViTConfig(image_size=16, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
model = with_atom(T.ViTForImageClassification(config))
processor = T.ViTImageProcessorPil(size={"height": 16, "width": 16})
Explainer(model, processor, batch_size=16).export([folder], out)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12000, help="Width and height of each image in pixels.")
    parser.add_argument("--images", type=int, default=4, help="How many images.")
    parser.add_argument("--json", default=None, help="Also write the table as JSON here.")
    args = parser.parse_args(argv)
    from PIL import Image

    rows = []
    with tempfile.TemporaryDirectory() as work:
        folder = os.path.join(work, "images")
        os.makedirs(folder)
        for i in range(args.images):
            Image.new("L", (args.side, args.side)).save(os.path.join(folder, f"black_{i}.png"))
        size_kb = os.path.getsize(os.path.join(folder, "black_0.png")) / 1024
        for label, full_size in (("reduced when read (default)", False), ("full size", True)):
            out = os.path.join(work, f"out_{int(full_size)}")
            result = subprocess.run(
                [sys.executable, "-c", CHILD, folder, out, "1" if full_size else "0"],
                capture_output=True,
                text=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
            if result.returncode != 0:
                raise SystemExit(result.stderr[-2000:])
            rows.append({"variant": label, "peak_rss_gib": int(result.stdout.split()[-1]) / 2**30})
    print(f"{args.images} all-black PNGs of {args.side} x {args.side} ({size_kb:.0f} KB each), one batch\n")
    print("| variant | peak RSS (GiB) |\n| --- | --- |")
    for row in rows:
        print(f"| {row['variant']} | {row['peak_rss_gib']:.2f} |")
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump({"side": args.side, "images": args.images, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
