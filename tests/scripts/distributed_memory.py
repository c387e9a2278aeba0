"""Run by test_distributed.py in 2 gloo processes: the cross-batch memory with cross-process pairs (D9)."""

import faulthandler
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

import hf_atom
from hf_atom.memory import AtomMemory, memory_atom_loss

STEPS, MEMORY_SIZE = 4, 7


def make_problem():
    """Per step a global batch of 6 samples, 3 per process (sample 3 fully padded at step 0), and a Linear -> AtomHead model."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(STEPS, 6, 6, 8, generator=generator, dtype=torch.float64)
    mask = torch.rand(STEPS, 6, 6, generator=generator) > 0.3
    mask[:, :, 0] = True
    mask[0, 3] = False
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), hf_atom.AtomHead(8, 4, "sphere")).double()
    return hidden, mask, model


def run(model, hidden, mask, rows=slice(None), gather=False):
    """STEPS steps of memory_atom_loss; returns the memory and the gradient of the last step's objective."""
    loss_fn = hf_atom.AtomLoss(softening=0.2)
    memory = AtomMemory(MEMORY_SIZE, warmup_steps=1)
    for step in range(STEPS):
        model.zero_grad()
        q, p = model(hidden[step, rows])
        objective, parts, pairs = memory_atom_loss(
            loss_fn, loss_fn.summaries(q, p, mask[step, rows]), memory, gather_across_processes=gather, step=step
        )
        objective.backward()
    return memory, [param.grad.clone() for param in model.parameters()], parts.loss.detach(), pairs


def main(rank: int, world_size: int, out_dir: str) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    faulthandler.dump_traceback_later(120, exit=True)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    hidden, mask, model = make_problem()
    memory, grads, loss, pairs = run(model, hidden, mask, [slice(0, 3), slice(3, 6)][rank], gather=True)
    for grad in grads:  # what DDP does: average over processes
        dist.all_reduce(grad)
        grad /= world_size
    state = {"memory": memory.state_dict(), "grads": grads, "loss": loss, "pairs": pairs}
    torch.save(state, f"{out_dir}/memory_rank{rank}.pt")
    dist.monitored_barrier(timeout=timedelta(seconds=60))
    sys.stdout.flush()
    os._exit(0)  # skip the gloo teardown, which can hang (pytorch/pytorch#75097)


if __name__ == "__main__":
    main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1])
