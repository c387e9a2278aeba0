# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Pairs across processes (docs/DESIGN.md, D4): the atomic loss over the global micro-batch of all data-parallel ranks.

Only the per-sample summaries (mu, r, S+, S-: O(B*D) numbers) travel, through an autograd-aware all-gather. Each
process pairs its own samples (rows) with every sample of every process (columns). With the objective scaled as in
`cross_process_atom_loss`, the gradient that data parallelism averages over processes equals the gradient of the
single-process loss on the concatenated batch (tested with 2 gloo processes).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as differentiable_all_gather

from .loss import AtomLoss, AtomLossOutput, AtomSummaries

__all__ = ["cross_process_atom_loss", "gather_summaries", "is_distributed"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_summaries(
    local: AtomSummaries, group: dist.ProcessGroup | None = None
) -> tuple[AtomSummaries, torch.Tensor]:
    """Gathers every process's summaries, with gradient, into one global batch.

    Processes may hold different batch sizes (a last, shorter batch): rows are padded to the largest and the padding
    is marked invalid, so it never forms a pair.

    Returns:
        `tuple(AtomSummaries, torch.Tensor)`: the global summaries and the global row index of each local sample.
    """
    world_size = dist.get_world_size(group)
    rank = dist.get_rank(group)
    batch, dim = local.mu.shape
    device = local.mu.device
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size)]
    dist.all_gather(sizes, torch.tensor([batch], dtype=torch.long, device=device), group=group)
    padded = int(max(int(size) for size in sizes))

    differentiable = torch.cat([local.mu, local.r[:, None], local.s_plus[:, None], local.s_minus[:, None]], dim=1)
    bookkeeping = torch.stack([local.n_tokens, local.valid.to(local.n_tokens.dtype)], dim=1)
    if padded > batch:  # padding rows have n_tokens = 0 and valid = 0
        differentiable = torch.nn.functional.pad(differentiable, (0, 0, 0, padded - batch))
        bookkeeping = torch.nn.functional.pad(bookkeeping, (0, 0, 0, padded - batch))

    with warnings.catch_warnings():
        # Deprecated in favour of a private API (torch.distributed._functional_collectives); still the public one.
        warnings.simplefilter("ignore", FutureWarning)
        gathered = torch.cat(differentiable_all_gather(differentiable, group=group), dim=0)
    books = [torch.empty_like(bookkeeping) for _ in range(world_size)]
    dist.all_gather(books, bookkeeping.contiguous(), group=group)
    books = torch.cat(books, dim=0)
    global_summaries = AtomSummaries(
        mu=gathered[:, :dim],
        r=gathered[:, dim],
        s_plus=gathered[:, dim + 1],
        s_minus=gathered[:, dim + 2],
        n_tokens=books[:, 0],
        valid=books[:, 1] > 0,
    )
    local_index = rank * padded + torch.arange(batch, device=device)
    return global_summaries, local_index


def cross_process_atom_loss(
    loss_module: AtomLoss, local: AtomSummaries, group: dist.ProcessGroup | None = None
) -> tuple[torch.Tensor, AtomLossOutput]:
    """The atomic loss over all processes' samples.

    Returns:
        `tuple(torch.Tensor, AtomLossOutput)`:
        - the objective to add to this process's loss: `world_size * (sum of this process's row energies) /
          (number of ordered global pairs)`. Data parallelism averages gradients over processes and the all-gather's
          backward sums the column gradients, so the averaged gradient is exactly that of the global L_A.
        - the parts for logging, rows = local samples, columns = global samples; `loss` is the global L_A (detached,
          identical on every process) and `num_pairs` the global number of unordered pairs.
    """
    world_size = dist.get_world_size(group)
    global_summaries, local_index = gather_summaries(local, group)
    columns = torch.arange(global_summaries.mu.shape[0], device=local_index.device)
    energies, dbar, pair_mask = loss_module.pair_energies(
        local, global_summaries, local_index[:, None] == columns[None, :]
    )
    num_valid = global_summaries.valid.sum()
    num_ordered = (num_valid * (num_valid - 1)).clamp(min=1).to(energies.dtype)
    local_sum = energies.sum()
    objective = local_sum * world_size / num_ordered

    global_sum = local_sum.detach().clone()
    dist.all_reduce(global_sum, group=group)
    output = AtomLossOutput(
        loss=global_sum / num_ordered,
        pair_energies=energies,
        pair_distances=dbar,
        summaries=local,
        pair_mask=pair_mask,
        num_pairs=(num_valid * (num_valid - 1)) // 2,
    )
    return objective, output
