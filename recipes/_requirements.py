"""The recipes' start-up check: the `hf_atom` package is installed.

Every shared helper imports this module before anything of hf_atom, so a recipe run without the package fails at
once, naming the fix, instead of with a bare `ModuleNotFoundError` deep in its imports. The recipes never edit
`sys.path`: an installed `hf_atom` is never shadowed by whatever checkout a script sits in.
"""

from __future__ import annotations

import importlib.util

HF_ATOM_MISSING = (
    "The recipes need the hf_atom package: run `pip install -e '.[recipes]'` (or `make setup`) in the repository "
    "root, or put the repository root on PYTHONPATH."
)

if importlib.util.find_spec("hf_atom") is None:
    raise ImportError(HF_ATOM_MISSING)
