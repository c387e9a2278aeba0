"""What a GPU pays for an atom step, counted on CPU (issue 19): host synchronisations and dispatched ATen ops.

Every dispatched op that is not a view is at least one kernel launch on a GPU, and every
`aten::_local_scalar_dense` is a host synchronisation. Counted with a `TorchDispatchMode` between `on_step_begin`
and `on_step_end` (the training step itself, no logging inside), per step = (16-step count - 8-step count) / 8.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from tiny_models import VOCAB, bert, llama_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from step_counts import (  # noqa: E402
    VIEW_OPS,
    StepCounter,
    bert_step_counts,
    classification_rows,
    count_training_steps,
    per_step,
)

from hf_atom import AtomTrainer, AtomTrainingArguments  # noqa: E402


@pytest.fixture(scope="module")
def bert_per_step(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cost")
    return {atom: per_step(bert_step_counts(atom, 8, str(folder)), bert_step_counts(atom, 16, str(folder)), 8)
            for atom in (False, True)}  # fmt: skip


def test_atom_trainer_adds_no_host_synchronisation(bert_per_step):
    trainer, atom = bert_per_step[False], bert_per_step[True]
    assert trainer["syncs"] > 0  # the counter sees Trainer's own (its nan/inf filter reads the loss)
    # The non-finite check is folded into the read Trainer makes anyway (one read where Trainer makes two).
    assert atom["syncs"] - trainer["syncs"] <= 0


def test_atom_trainer_adds_at_most_150_kernel_ops(bert_per_step):
    """Tiny BERT, batch 16, lambda 0.1: heads + loss + charge term + statistics, forward and backward."""
    added = bert_per_step[True]["ops"] - bert_per_step[False]["ops"]
    assert added <= 150, f"{added} kernel-launching ops added per step"
    assert bert_per_step[True]["ops"] > bert_per_step[False]["ops"]  # the counter sees the atom work


def test_the_nan_filter_is_the_users_after_training(tmp_path):
    """The filter is lifted only between the step's own check and Trainer's read of it; saved arguments keep it."""
    args = AtomTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                                 save_strategy="steps", save_steps=1, report_to="none", disable_tqdm=True,
                                 use_cpu=True, atom_weight=0.1)  # fmt: skip
    trainer = AtomTrainer(model=bert(), args=args, train_dataset=classification_rows(1)[:8])
    seen = []
    original = trainer.floating_point_ops

    def spy(inputs):
        seen.append(trainer.args.logging_nan_inf_filter)
        return original(inputs)

    trainer.floating_point_ops = spy
    trainer.train()
    assert seen == [False, False]  # lifted at Trainer's read of each step (the step's own check replaced it)
    assert trainer.args.logging_nan_inf_filter is True
    saved = torch.load(tmp_path / "checkpoint-1" / "training_args.bin", weights_only=False)
    assert saved.logging_nan_inf_filter is True


def test_atom_sft_trainer_adds_no_host_synchronisation(tmp_path):
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from test_trl import tokenizer
    from trl import SFTConfig, SFTTrainer

    from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer

    def counts(trainer_class, config_class, steps, **atom):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(0)
        rows = [{"input_ids": torch.randint(3, VOCAB, (8,), generator=generator).tolist()} for _ in range(4 * steps)]
        args = config_class(output_dir=str(tmp_path / trainer_class.__name__), per_device_train_batch_size=4,
                            max_steps=steps, logging_steps=1000, save_strategy="no", report_to="none", use_cpu=True,
                            disable_tqdm=True, seed=0, **atom)  # fmt: skip
        trainer = trainer_class(model=llama_lm(), args=args, train_dataset=datasets.Dataset.from_list(rows),
                                processing_class=tokenizer())  # fmt: skip
        return count_training_steps(trainer)

    plain = per_step(counts(SFTTrainer, SFTConfig, 2), counts(SFTTrainer, SFTConfig, 4), 2)
    atom = per_step(
        counts(AtomSFTTrainer, AtomSFTConfig, 2, atom_weight=0.1),
        counts(AtomSFTTrainer, AtomSFTConfig, 4, atom_weight=0.1),
        2,
    )
    assert atom["syncs"] - plain["syncs"] <= 0


def test_the_counter_counts_syncs_and_leaves_views_out():
    counter = StepCounter()
    with counter:
        x = torch.ones(3)
        x[:, None].t()  # views: dispatched, no kernel
        float((x * 2).sum())  # one sync
    assert counter.syncs == 1 and counter.ops == 4  # ones, mul, sum, _local_scalar_dense
    assert "aten::t" in VIEW_OPS and counter.dispatched > counter.ops
