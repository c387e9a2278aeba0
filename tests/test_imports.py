"""The library imports and runs where `datasets` is missing (as on the GPU machine)."""

import subprocess
import sys

BLOCK_DATASETS = """
import importlib.abc, importlib.util, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "datasets" or name.startswith("datasets."):
            raise ImportError("datasets is not installed here")
sys.meta_path.insert(0, Block())
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda n, *a, **k: None if n.split(".")[0] == "datasets" else find_spec(n, *a, **k)
import torch, hf_atom, hf_atom.explain, hf_atom.cli
assert "datasets" not in sys.modules
print(float(hf_atom.atom_loss(torch.rand(3, 4), torch.randn(3, 4, 2))) > -1e9)
"""


def test_import_without_datasets():
    result = subprocess.run([sys.executable, "-c", BLOCK_DATASETS], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("True")
