"""Run by test_distributed.py in 2 gloo processes: cross-process pairs give the single-process gradient."""

import faulthandler
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import hf_atom
from hf_atom.distributed import cross_process_atom_loss


def make_problem():
    """Global batch of 5 samples (sample 3 fully padded) and a model: Linear -> AtomHead, in float64."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 6, 8, generator=generator, dtype=torch.float64)
    mask = torch.rand(5, 6, generator=generator) > 0.3
    mask[:, 0] = True
    mask[3] = False
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), hf_atom.AtomHead(8, 4, "sphere")).double()
    return hidden, mask, model


def main(rank: int, world_size: int, out_dir: str) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails with every thread's stack
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    hidden, mask, model = make_problem()
    loss_fn = hf_atom.AtomLoss(softening=0.2, step="opposite", token_reduction="mean")
    rows = [slice(0, 3), slice(3, 5)][rank]  # unequal shards: 3 and 2 samples
    q, p = model(hidden[rows])
    objective, parts = cross_process_atom_loss(loss_fn, loss_fn.summaries(q, p, mask[rows]))
    objective.backward()
    grads = [param.grad.clone() for param in model.parameters()]
    for grad in grads:  # what DDP does: average over processes
        dist.all_reduce(grad)
        grad /= world_size
    torch.save({"grads": grads, "loss": parts.loss, "num_pairs": parts.num_pairs}, f"{out_dir}/rank{rank}.pt")
    dist.monitored_barrier(timeout=timedelta(seconds=60))
    sys.stdout.flush()
    # Skip the gloo teardown, which can hang at random after all work is done (pytorch/pytorch#75097).
    os._exit(0)


if __name__ == "__main__":
    main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1])
