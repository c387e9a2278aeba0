"""A tiny AtomTrainer run for `accelerate launch` / `torchrun` tests: 2 processes, 4 steps, a checkpoint."""

import faulthandler
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from tiny_models import bert, text_dataset
from torch.distributed.tensor import DTensor
from transformers import HfArgumentParser

from hf_atom import AtomTrainer, AtomTrainingArguments


def main() -> None:
    # A hang anywhere must fail the test with every thread's stack, not hold the launcher until the test's timeout.
    faulthandler.dump_traceback_later(float(os.environ.get("HF_ATOM_HANG_SECONDS", "240")), exit=True)
    (args,) = HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(
        args=None,
        look_for_args_file=False,
    )
    torch.manual_seed(0)
    trainer = AtomTrainer(model=bert(), args=args, train_dataset=text_dataset(32))
    trainer.train()
    print(f"world_size={trainer.args.world_size}", flush=True)
    # Under FSDP2 every parameter is a DTensor sharded over the processes: shows the run really was sharded.
    sharded = sum(isinstance(param, DTensor) for param in trainer.model_wrapped.parameters())
    print(f"fsdp={trainer.is_fsdp_enabled} sharded_parameters={sharded}", flush=True)
    if dist.is_initialized():
        # Raises (naming the missing rank) instead of hanging if the ranks' collectives ever went out of step.
        dist.monitored_barrier(timeout=timedelta(seconds=120))
    print(f"rank {trainer.args.process_index} finished", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the gloo teardown: `destroy_process_group` / interpreter exit can hang at random after all work is done
    # (pytorch/pytorch#75097); one CI run of this test hung there. Everything the test checks is on disk by now.
    os._exit(0)


DEFAULTS = [
    "--per_device_train_batch_size",
    "4",
    "--max_steps",
    "4",
    "--save_steps",
    "4",
    "--logging_steps",
    "1",
    "--report_to",
    "none",
    "--use_cpu",
    "true",
    "--disable_tqdm",
    "true",
    "--atom_weight",
    "0.5",
    "--ddp_find_unused_parameters",
    "false",
]

if __name__ == "__main__":
    sys.argv = [sys.argv[0], *DEFAULTS, *sys.argv[1:]]
    main()
