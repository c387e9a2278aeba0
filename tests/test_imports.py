"""The library imports and runs where `datasets` is missing (as on the GPU machine)."""

import os
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


TORCH_ONLY = """
import sys
import torch, hf_atom
q, p = torch.rand(3, 4), torch.randn(3, 4, 2)
value = float(hf_atom.atom_loss(q, p))
regularizer = hf_atom.AtomRegularizer(hidden_size=8)
tokens = hf_atom.mlp_tokens(torch.randn(3, 8), 4)
loaded = sorted(name for name in ("transformers", "accelerate", "datasets") if name in sys.modules)
print(value == value, loaded)
"""


def test_loss_and_regularizer_import_only_torch():
    # The top-level import is lazy: the loss and the torch-module regularizer must not pull in the Trainer side.
    result = subprocess.run([sys.executable, "-c", TORCH_ONLY], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "True []"


def test_lazy_names_resolve_like_an_eager_package():
    code = (
        "import hf_atom, hf_atom.modeling as m; "
        "assert hf_atom.AutoAtomModel is m.AutoAtomModel is hf_atom.auto.AutoAtomModel; "
        "from hf_atom.loss import charge_target_penalty, check_atom_inputs; "  # where they were before the split
        "from hf_atom.explain import IMAGE_EXTENSIONS, check_output_folder, write_index; "
        "assert set(hf_atom.__all__) <= set(dir(hf_atom)); "
        "assert all(getattr(hf_atom, n) is not None for n in hf_atom.__all__); "
        "from hf_atom import AtomTrainer, atom_loss; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    missing = subprocess.run(
        [sys.executable, "-c", "import hf_atom; hf_atom.no_such_name"], capture_output=True, text=True, timeout=300
    )
    assert "module 'hf_atom' has no attribute 'no_such_name'" in missing.stderr


GAN_WITHOUT_TRANSFORMERS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "transformers":
            raise ImportError("transformers is blocked in this test")
sys.meta_path.insert(0, Block())
sys.path.insert(0, "recipes")
import gan_ensemble, gan_mixture, gan_stacked_mnist
results = gan_mixture.main(["--dataset", "ring", "--method", "atom", "--output_dir", sys.argv[1], "--max_steps", "2",
    "--batch_size", "8", "--hidden_size", "16", "--disc_units", "8", "--num_train", "100", "--num_eval_samples", "20",
    "--num_threads", "1", "--disable_tqdm", "--atom_tokens", "4", "--no_plot"])
print("modes" in results["final"] and "ran", "transformers" in sys.modules)
"""


def test_gan_recipes_run_without_transformers(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", GAN_WITHOUT_TRANSFORMERS, str(tmp_path / "run")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ran False"
    assert not (tmp_path / "run" / "samples.png").exists()  # --no_plot, as HfArgumentParser spells it
