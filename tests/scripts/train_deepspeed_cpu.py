"""AtomTrainer under DeepSpeed ZeRO-2 / ZeRO-3 with 2 CPU processes (gloo), run by tests/test_deepspeed.py with
`accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero{2,3}_cpu.yaml`.

The model is built with `from_config`, which under ZeRO-3 (zero3_init_flag) partitions the backbone's parameters at
construction, as `from_pretrained` does in a recipe; the atom heads are attached afterwards by AtomTrainer. Written
to `<out>` for the test:

- `initial.pt` (full parameters before training, heads included), `batch_rank{r}.pt` (each process's first micro-batch)
  and `log_history.json`: the test recomputes the first step's atom loss on one process on the concatenated batch;
- `trained.pt` (full parameters after training) and `final/` (`trainer.save_model`): the test reloads it with
  `AutoAtomModel`;
- then a NaN is put into the heads and one more training step is taken: it must raise before DeepSpeed's optimizer
  step (the engine's step count and every parameter unchanged), printed as `non-finite check: ...`.
"""

import faulthandler
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from tiny_models import bert_no_dropout, text_dataset
from train_tiny import DEFAULTS
from transformers import AutoModelForSequenceClassification, HfArgumentParser

from hf_atom import AtomTrainer, AtomTrainingArguments


class RecordingAtomTrainer(AtomTrainer):
    """Saves each process's first training micro-batch (what its atom loss paired at step 1)."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and self.state.global_step == 0 and not getattr(self, "_recorded", False):
            self._recorded = True
            batch = {key: value.detach().cpu() for key, value in inputs.items()}
            torch.save(batch, Path(self.args.output_dir) / f"batch_rank{self.args.process_index}.pt")
        return super().compute_loss(model, inputs, *args, **kwargs)


def full_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter in full on every process (ZeRO-3 holds only a shard of each; a no-op gather under ZeRO-2)."""
    params = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=None):
        return {name: param.detach().clone().cpu() for name, param in params.items()}


def main() -> None:
    faulthandler.dump_traceback_later(float(os.environ.get("HF_ATOM_HANG_SECONDS", "240")), exit=True)
    (args,) = HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(
        args=[*DEFAULTS, "--save_strategy", "no", *sys.argv[1:]], look_for_args_file=False
    )
    out = Path(args.output_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(bert_no_dropout().config)
    trainer = RecordingAtomTrainer(model=model, args=args, train_dataset=text_dataset(32))
    rank = trainer.args.process_index
    stage = trainer.accelerator.state.deepspeed_plugin.zero_stage
    partitioned = sum(hasattr(param, "ds_id") for param in trainer.model.parameters())
    print(f"rank {rank}: deepspeed zero_stage={stage} partitioned_at_init={partitioned}", flush=True)
    initial = full_parameters(trainer.model)
    if rank == 0:
        torch.save(initial, out / "initial.pt")

    trainer.train()
    engine = trainer.model_wrapped
    print(f"rank {rank}: world_size={trainer.args.world_size} engine={type(engine).__name__}", flush=True)
    trained = full_parameters(trainer.model)
    trainer.save_model(str(out / "final"))
    if rank == 0:
        torch.save(trained, out / "trained.pt")
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))

    # A non-finite atom term must stop the step before DeepSpeed's optimizer step, which accelerate runs inside
    # `accelerator.backward` (unlike DDP, where the Trainer steps after `training_step` returns).
    head = trainer.model.atom_head.position.weight
    with deepspeed.zero.GatheredParameters([head], modifier_rank=0):
        head.data.fill_(float("inf"))  # p becomes NaN after the sphere normalisation
    before, steps_before = full_parameters(trainer.model), engine.global_steps
    batch = next(iter(trainer.get_train_dataloader()))
    try:
        trainer.training_step(engine, batch)
        raised = "nothing"
    except FloatingPointError as error:
        raised = type(error).__name__ + ": " + str(error).split(".")[0]
    after = full_parameters(trainer.model)
    unchanged = all(torch.allclose(before[name], after[name], rtol=0, atol=0, equal_nan=True) for name in before)
    print(
        f"rank {rank}: non-finite check: raised={raised!r} engine_steps={steps_before}->{engine.global_steps} "
        f"parameters_unchanged={unchanged}",
        flush=True,
    )

    dist.monitored_barrier(timeout=timedelta(seconds=120))
    print(f"rank {rank} finished", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the gloo teardown, which can hang after all work is done (pytorch/pytorch#75097)


if __name__ == "__main__":
    main()
