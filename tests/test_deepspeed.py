"""AtomTrainer under DeepSpeed ZeRO-2 and ZeRO-3: 2 CPU processes over gloo, launched with `accelerate launch` and the
CPU configs recipes/accelerate_configs/deepspeed_zero{2,3}_cpu.yaml (the script: scripts/train_deepspeed_cpu.py).

The first run on a machine also compiles DeepSpeed's CPU shared-memory communication op (a C++ build that its CPU
backend makes at start-up, cached under ~/.cache/torch_extensions): minutes once, then ~25 s per stage.
"""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_distributed import REPO, SCRIPTS, accelerate_command, run_in_own_session
from tiny_models import bert_no_dropout

import hf_atom

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("deepspeed") is None,
        reason="deepspeed is not installed: pip install -e '.[deepspeed]' (the dev extra includes it)",
    ),
    pytest.mark.skipif(
        shutil.which(os.environ.get("CXX", "c++")) is None,
        reason="no C++ compiler: DeepSpeed's CPU backend compiles its shared-memory op at start-up",
    ),
]

GLOBAL_PAIRS = 28  # 2 processes x 4 samples: C(8, 2) pairs per step, seen by both processes


def launch(stage: int, output_dir: Path) -> str:
    script = [str(SCRIPTS / "train_deepspeed_cpu.py"), "--output_dir", str(output_dir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(SCRIPTS.parent), str(SCRIPTS)])}
    command = [
        *accelerate_command(f"deepspeed_zero{stage}_cpu.yaml"),
        *script,
        "--atom_gather_across_processes",
        "true",
    ]
    output_dir.mkdir(parents=True, exist_ok=True)
    returncode, output = run_in_own_session(command, timeout=600, env=env, cwd=output_dir)
    assert returncode == 0 and output.count("finished") == 2, output[-6000:]
    return output


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_pairs_globally_saves_reloadable_heads_and_stops_non_finite_steps(tmp_path, stage):
    output = launch(stage, tmp_path)
    assert output.count(f"zero_stage={stage}") == 2 and output.count("engine=DeepSpeedEngine") == 2, output[-3000:]
    if stage == 3:  # from_config under zero3_init_flag: the backbone is partitioned at construction, as in a recipe
        assert "partitioned_at_init=0" not in output, output[-3000:]

    # Every step's atom loss paired the global batch on each process.
    history = [entry for entry in json.loads((tmp_path / "log_history.json").read_text()) if "atom_pairs" in entry]
    assert [entry["atom_pairs"] for entry in history] == [GLOBAL_PAIRS] * 4
    # Step 1 (before any update) equals one process on the concatenated batch, from the same initial weights.
    initial = torch.load(tmp_path / "initial.pt")
    config = hf_atom.AtomConfig(weight=0.5)
    model = hf_atom.with_atom(bert_no_dropout(), config)
    assert set(initial) == {name for name, _ in model.named_parameters()}
    model.load_state_dict(initial, strict=False)
    batches = [torch.load(tmp_path / f"batch_rank{rank}.pt") for rank in range(2)]
    batch = {key: torch.cat([part[key] for part in batches]) for key in batches[0]}
    assert batch["input_ids"].shape[0] == 8 and not torch.equal(batches[0]["input_ids"], batches[1]["input_ids"])
    with torch.no_grad():
        outputs = model(**batch)
        reference = hf_atom.AtomObjective(config)(outputs.atom_q, outputs.atom_p, outputs.atom_mask)
    assert int(reference.parts.num_pairs) == GLOBAL_PAIRS
    assert history[0]["atom_loss"] == pytest.approx(float(reference.loss), rel=1e-5)
    assert history[0]["task_loss"] == pytest.approx(float(outputs.loss), rel=1e-5)  # mean over two equal halves

    # trainer.save_model (ZeRO-3: the full weights gathered at saving) reloads with AutoAtomModel, heads included.
    trained = torch.load(tmp_path / "trained.pt")
    reloaded = hf_atom.AutoAtomModel.from_pretrained(tmp_path / "final")
    assert type(reloaded).__name__ == "AtomBertForSequenceClassification"
    assert reloaded.atom_config.weight == 0.5
    state = reloaded.state_dict()
    heads = [name for name in trained if name.startswith("atom_head.")]
    assert heads and all(torch.equal(state[name], trained[name]) for name in trained)
    assert any(not torch.equal(trained[name], initial[name]) for name in heads)  # the heads did train

    # A non-finite atom term raises before DeepSpeed's optimizer step, which runs inside the backward call.
    stopped = "raised='FloatingPointError: Non-finite loss at step 4: atomic loss L_A = nan'"
    assert output.count(f"{stopped} engine_steps=4->4 parameters_unchanged=True") == 2, output[-3000:]
