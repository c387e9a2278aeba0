# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The atom section of a model card (README.md): written into every checkpoint, and added to the parent trainer's
own card (base model, results, hyper-parameters, datasets) by `create_model_card`."""

from __future__ import annotations

import os

from .configuration import AtomConfig

__all__ = ["ATOM_TAGS", "add_atom_section", "atom_card_section"]

ATOM_TAGS = ("hf_atom", "atom-modeling")
_BEGIN, _END = "<!-- hf_atom: begin -->", "<!-- hf_atom: end -->"

PAPER = 'Tuan, Chiu & Wang, "Dynamic Latent Separation for Deep Learning", arXiv:2210.03728'
CITATION = """@article{tuan2022dynamic,
  title={Dynamic Latent Separation for Deep Learning},
  author={Tuan, Yi-Lin and Chiu, Zih-Yun and Wang, William Yang},
  journal={arXiv preprint arXiv:2210.03728},
  year={2022}
}"""


def atom_card_section(model_class: str, atom_config: AtomConfig) -> str:
    """Markdown naming hf_atom, the paper, every atom setting and how to load the checkpoint (between markers)."""
    base_class = model_class[len("Atom") :] if model_class.startswith("Atom") else model_class
    settings = "\n".join(f"| `{key}` | `{value}` |" for key, value in sorted(atom_config.to_dict().items()))
    pairs = "across all processes" if atom_config.gather_across_processes else "within each process's micro-batch"
    return f"""{_BEGIN}
## Atom modeling

This model was trained with **hf_atom**, an implementation of atom modeling ({PAPER}) for Hugging Face
Transformers: `loss = task_loss + lambda * (L_A + charge term)`, where L_A is the atomic loss between the samples of
each batch, computed from per-token importances q (charges) and positions p produced by small heads (`atom_head`) on
the model's hidden states.

lambda = {atom_config.weight} (linear warm-up over {atom_config.weight_warmup_steps} steps); pairs formed {pairs}.
The settings marked "ours" in hf_atom's documentation (the sign inside step, softening, token reduction, position
normalisation and the charge constraint) are that project's decisions, not the paper's.

| setting | value |
| --- | --- |
{settings}

### Use

```python
import hf_atom
model = hf_atom.AutoAtomModel.from_pretrained("path/to/this/folder")  # {model_class}, with the atom heads
outputs = model(**inputs)  # the usual outputs plus atom_q (B, N), atom_p (B, N, D) and atom_mask (B, N)
importance = model.token_importance(**inputs)  # per-token q, aligned with the input
```

The folder also loads with the plain `AutoModelFor*` class (`{base_class}`); the atom head weights are then
reported as unexpected keys and ignored.

### Citation

```bibtex
{CITATION}
```
{_END}
"""


def _with_tags(card: str) -> str:
    """Adds hf_atom's tags to the card's YAML front matter (creating it if there is none)."""
    lines = card.split("\n")
    if not lines or lines[0].strip() != "---" or "---" not in [line.strip() for line in lines[1:]]:
        front = ["---", "library_name: transformers", "tags:", *[f"- {tag}" for tag in ATOM_TAGS], "---", ""]
        return "\n".join(front + lines)
    end = 1 + [line.strip() for line in lines[1:]].index("---")
    front = lines[1:end]
    missing = [tag for tag in ATOM_TAGS if f"- {tag}" not in [line.strip() for line in front]]
    if missing:
        if "tags:" in [line.strip() for line in front]:
            at = [line.strip() for line in front].index("tags:") + 1
            front[at:at] = [f"- {tag}" for tag in missing]
        else:
            front += ["tags:", *[f"- {tag}" for tag in missing]]
    return "\n".join(["---", *front, *lines[end:]])


def add_atom_section(output_dir: str, model, args=None) -> str:
    """Adds (or refreshes) the atom section and tags in `output_dir/README.md`, keeping whatever card is there.

    Without a card yet (e.g. a checkpoint folder), writes a short one: a title, the atom section and the tags.
    Returns the card's path.
    """
    config = getattr(model, "config", None)
    section = atom_card_section(type(model).__name__, AtomConfig.from_dict(config.atom_config))
    path = os.path.join(output_dir, "README.md")
    card = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            card = handle.read()
    if _BEGIN in card and _END in card:
        start, stop = card.index(_BEGIN), card.index(_END) + len(_END)
        card = card[:start] + section.strip() + card[stop:]
    elif card.strip():
        card = card.rstrip() + "\n\n" + section
    else:
        base_model = getattr(config, "_name_or_path", None) or ""
        title = f"# {type(model).__name__.removeprefix('Atom')} trained with atom modeling\n\n"
        card = "---\n---\n" + title + section
        if base_model and not os.path.isdir(base_model):
            card = f"---\nbase_model: {base_model}\n---\n" + title + section
    os.makedirs(output_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(_with_tags(card))
    return path
