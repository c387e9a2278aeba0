"""A tiny AtomTrainer run for `accelerate launch` / `torchrun` tests: 2 processes, 4 steps, a checkpoint."""

import torch
import torch.distributed as dist
from tiny_models import bert, text_dataset
from transformers import HfArgumentParser

from hf_atom import AtomTrainer, AtomTrainingArguments


def main() -> None:
    (args,) = HfArgumentParser(AtomTrainingArguments).parse_args_into_dataclasses(
        args=None,
        look_for_args_file=False,
    )
    torch.manual_seed(0)
    trainer = AtomTrainer(model=bert(), args=args, train_dataset=text_dataset(32))
    trainer.train()
    print(f"world_size={trainer.args.world_size}", flush=True)
    if dist.is_initialized():
        dist.barrier()  # every rank is done with its collectives before the group goes away
        dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    defaults = [
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
    sys.argv = [sys.argv[0], *defaults, *sys.argv[1:]]
    main()
