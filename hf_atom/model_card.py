# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""The model card (README.md) written with every AtomTrainer checkpoint."""

from __future__ import annotations

import os
from typing import Optional

from .configuration import AtomConfig

__all__ = ["atom_model_card", "write_model_card"]

PAPER = 'Tuan, Chiu & Wang, "Dynamic Latent Separation for Deep Learning", arXiv:2210.03728'
CITATION = """@article{tuan2022dynamic,
  title={Dynamic Latent Separation for Deep Learning},
  author={Tuan, Yi-Lin and Chiu, Zih-Yun and Wang, William Yang},
  journal={arXiv preprint arXiv:2210.03728},
  year={2022}
}"""


def atom_model_card(
    model_class: str,
    atom_config: AtomConfig,
    base_model: Optional[str] = None,
    warmup_steps: int = 0,
    gather_across_processes: bool = False,
) -> str:
    """Markdown model card naming hf_atom, the paper and every atom setting."""
    base_class = model_class[len("Atom") :] if model_class.startswith("Atom") else model_class
    header = ["---", "library_name: transformers", "tags:", "- hf_atom", "- atom-modeling"]
    if base_model and not os.path.isdir(base_model):
        header.append(f"base_model: {base_model}")
    header.append("---")
    settings = "\n".join(f"| `{key}` | `{value}` |" for key, value in sorted(atom_config.to_dict().items()))
    return f"""{chr(10).join(header)}

# {base_class} trained with atom modeling

This checkpoint was trained with **hf_atom**, an implementation of atom modeling ({PAPER}) for Hugging Face
Transformers: `loss = task_loss + lambda * L_A`, where L_A is the atomic loss between the samples of each batch,
computed from per-token importances q (charges) and positions p produced by small heads (`atom_head`) on the
model's hidden states.

## Atom settings

lambda = {atom_config.weight} (linear warm-up over {warmup_steps} steps); pairs formed
{"across all processes" if gather_across_processes else "within each process's micro-batch"}. The settings marked
"ours" in hf_atom's documentation (the sign inside step, softening, token reduction, position normalisation and the
charge constraint) are that project's decisions, not the paper's.

| setting | value |
| --- | --- |
{settings}

## Use

```python
import hf_atom
model = hf_atom.AutoAtomModel.from_pretrained("path/to/this/folder")  # {model_class}, with the atom heads
outputs = model(**inputs)  # the usual outputs plus atom_q (B, N), atom_p (B, N, D) and atom_mask (B, N)
importance = model.token_importance(**inputs)  # per-token q, aligned with the input
```

The folder also loads with the plain `AutoModelFor*` class (`{base_class}`); the atom head weights are then
reported as unexpected keys and ignored.

## Citation

```bibtex
{CITATION}
```
"""


def write_model_card(output_dir: str, model, args) -> str:
    """Writes README.md for an atom model into `output_dir` and returns its path."""
    config = getattr(model, "config", None)
    card = atom_model_card(
        model_class=type(model).__name__,
        atom_config=AtomConfig.from_dict(config.atom_config),
        base_model=getattr(config, "_name_or_path", None) or None,
        warmup_steps=getattr(args, "atom_weight_warmup_steps", 0),
        gather_across_processes=getattr(args, "atom_gather_across_processes", False),
    )
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "README.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(card)
    return path
