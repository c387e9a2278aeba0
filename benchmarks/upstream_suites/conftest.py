"""Harness for running upstream transformers/trl trainer tests against hf_atom's drop-ins.

HF_ATOM_SWAP=none   upstream classes (control)
HF_ATOM_SWAP=zero   Trainer/TrainingArguments -> AtomTrainer/AtomTrainingArguments, SFTTrainer/SFTConfig ->
                    AtomSFTTrainer/AtomSFTConfig, atom_weight default 0
HF_ATOM_SWAP=tenth  the same with atom_weight default 0.1

The swap happens twice: (1) `transformers.Trainer`, `transformers.TrainingArguments`, `trl.SFTTrainer`, `trl.SFTConfig`
are replaced on the package objects before the test modules are imported, so `from transformers import Trainer` in a
test module (and the subclasses it defines at import, e.g. RegressionTrainingArguments(TrainingArguments)) binds ours,
exactly as a user swapping the import would; (2) after collection, any test-module global still bound to an upstream
class is rebound to ours. trl's own modules are imported first, so trl's classes keep subclassing upstream Trainer.

Hub ids: the process works in assets/ (os.chdir), where trl-internal-testing/<name> folders hold tiny stand-ins
(build_assets.py), so from_pretrained/load_dataset resolve those ids to local folders with HF_HUB_OFFLINE=1.
"""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "site"))  # parameterized (installed with pip --target)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HOME", str(HERE / "hf_home"))
os.environ.setdefault("WANDB_DISABLED", "true")
os.chdir(HERE / "assets")

MODE = os.environ.get("HF_ATOM_SWAP", "none")

import transformers  # noqa: E402
import trl  # noqa: E402
import trl.trainer.sft_trainer  # noqa: E402,F401  (trl's classes subclass the upstream Trainer)

# Importing trl's trainer re-registers the lazy `transformers` module in sys.modules: patch the live one, which is the
# one `from transformers import ...` in a test module reads.
transformers = sys.modules["transformers"]  # noqa: F811

# The stored trl test file (main, 1.10.0.dev0) imports helpers that the installed trl (1.16.0) does not have; only
# the non-trainer test classes (TestDFTLoss, TestChunkedCrossEntropyLoss, TestPatchChunkedCELMHead) use them and those
# are not selected. Placeholders let the module import.
for _missing in ("_chunked_cross_entropy_loss", "_patch_chunked_ce_lm_head", "dft_loss"):
    if not hasattr(trl.trainer.sft_trainer, _missing):
        setattr(trl.trainer.sft_trainer, _missing, None)
# Likewise the availability checks that tests/testing_utils.py imports: a missing one reports "not available".
import importlib  # noqa: E402

_import_utils = importlib.import_module("trl.import_utils")

for _missing in (
    "is_harbor_available",
    "is_jmespath_available",
    "is_joblib_available",
    "is_liger_kernel_available",
    "is_math_verify_available",
    "is_mergekit_available",
    "is_openreward_available",
    "is_vllm_available",
):
    if not hasattr(_import_utils, _missing):
        setattr(_import_utils, _missing, lambda: False)

# The transformers test file (a 5.2.0.dev0 snapshot) imports GlueDataset/GlueDataTrainingArguments, which the
# installed transformers (5.25) removed; only the slow GLUE-evaluation test uses them, and it fails as upstream's would.
for _missing in ("GlueDataset", "GlueDataTrainingArguments"):
    if not hasattr(transformers, _missing):
        setattr(transformers, _missing, None)

UPSTREAM = {
    "Trainer": transformers.Trainer,
    "TrainingArguments": transformers.TrainingArguments,
    "SFTTrainer": trl.SFTTrainer,
    "SFTConfig": trl.SFTConfig,
}
OURS = {}
if MODE != "none":
    import atom_swap  # noqa: E402

    OURS = {
        "Trainer": atom_swap.AtomTrainer,
        "TrainingArguments": atom_swap.AtomTrainingArguments,
        "SFTTrainer": atom_swap.AtomSFTTrainer,
        "SFTConfig": atom_swap.AtomSFTConfig,
    }
    for _name in ("Trainer", "TrainingArguments"):
        setattr(transformers, _name, OURS[_name])
    for _name in ("SFTTrainer", "SFTConfig"):
        setattr(trl, _name, OURS[_name])


def pytest_report_header(config):
    return f"HF_ATOM_SWAP={MODE} swapped={ {k: v.__module__ + '.' + v.__qualname__ for k, v in OURS.items()} }"


def pytest_collection_modifyitems(session, config, items):
    if not OURS:
        return
    modules = {item.module for item in items if getattr(item, "module", None) is not None}
    for module in modules:
        for name, upstream in UPSTREAM.items():
            if module.__dict__.get(name) is upstream:
                setattr(module, name, OURS[name])


@pytest.fixture
def lazy_shared_datadir():
    """pytest-datadir's fixture (not installed): the `data/` folder next to the tests."""
    return HERE / "trl" / "tests" / "data"
