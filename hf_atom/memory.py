# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""A cross-batch memory of sample summaries (docs/DESIGN.md, D9): many more pairs per step at O(M*D) memory.

The pair energy of two samples depends on each one only through its O(D) summary (mu, r, S+, S-, N: D2), so the
summaries of earlier micro-batches can stand in for the samples themselves, as the embeddings of Cross-Batch Memory
(XBM, Wang et al., CVPR 2020) and MoCo's queue of keys (He et al., CVPR 2020) do. `AtomMemory` is a FIFO queue of
the last M detached summaries; `memory_atom_loss` pairs the current batch with itself (as without memory) and with
every valid sample of the queue, each unordered pair once, with gradients through the current batch only:

    L_A = (sum_{A<B in batch} L_AB + sum_{A in batch, K in memory} L_AK) / (n(n-1)/2 + n*m)

over the n valid samples of the batch (of every process with `gather_across_processes`) and the m valid samples of
the queue. Cost O(B*M*D) time and O(M*D) memory: the (B, M) energies are formed in chunks of the queue, each
recomputed in the backward (activation checkpointing), so no (B, M, D) tensor of the whole queue is kept, and no
(B, M, N) tensor is ever built; L2 distances to the queue come from one matmul per chunk (no (B, chunk, D) tensor
either). `atom_memory_size = 0` (the default) never reaches this module.

An ensemble of independent runs under `torch.func.vmap` (recipes/gan_ensemble.py) keeps one queue per member:
`AtomMemory(size, groups=S)` stacks S queues, `held_memory_atom_loss` is the side-effect-free loss (vmap-safe) and
`AtomMemory.push` takes the stacked summaries after the vmap.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

from .configuration import AtomConfig
from .distributed import gather_summaries, is_distributed
from .loss import AtomLoss, AtomLossOutput, AtomSummaries
from .loss_contract import _under_vmap

__all__ = [
    "MEMORY_STATE_NAME",
    "AtomMemory",
    "check_memory_processes",
    "held_memory_atom_loss",
    "load_memory",
    "memory_atom_loss",
    "memory_row_energies",
    "save_memory",
]

# The queue's file in a training checkpoint (written before trainer_state.json, so a complete checkpoint has it).
MEMORY_STATE_NAME = "atom_memory.safetensors"
# Largest block of current-vs-memory pair terms formed at once, (rows x chunk x D), or (rows x chunk) for L2
# distances by matmul: 2^21 floats, 8 MiB in float32.
_CHUNK_ELEMENTS = 2**21
_FIELDS = ("mu", "r", "s_plus", "s_minus", "n_tokens", "valid")


class AtomMemory(nn.Module):
    """FIFO queue of the last `size` per-sample summaries (detached), the training state of the cross-batch memory.

    Buffers (in `state_dict`, so a regularizer's checkpoint carries them): `mu` (size, D), `r`, `s_plus`, `s_minus`,
    `n_tokens` (size,), `valid` (size,) bool (slots never filled are invalid and never pair) and `counts` =
    (samples pushed, pushes). They are allocated on the first push (D and the device come from the summaries) or
    from a loaded state. With `groups=S` every buffer but `counts` has a leading axis of S: S queues filled in step
    (one per member of a vmapped ensemble), pushed with summaries of shape (S, batch, ...).

    Args:
        size (`int`): M, the number of samples the queue holds (>= 1).
        warmup_steps (`int`, defaults to 0): memory pairs start at this step; the queue fills before (D9).
        groups (`int`, *optional*): S stacked queues; None (the default) for one.
    """

    def __init__(self, size: int, warmup_steps: int = 0, groups: int | None = None):
        super().__init__()
        for name, value, low in (("size", size, 1), ("warmup_steps", warmup_steps, 0), ("groups", groups, 1)):
            if name == "groups" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"AtomMemory `{name}` must be an integer >= {low}, got {value!r}.")
        self.size = size
        self.warmup_steps = warmup_steps
        self.groups = groups
        self._axis = 0 if groups is None else 1  # the queue's slot axis
        for name in _FIELDS:
            self.register_buffer(name, None)
        self.register_buffer("counts", torch.zeros(2, dtype=torch.long))
        self._pushed = 0  # host copies of `counts`: the ring position and warm-up never need a device sync
        self._pushes = 0

    @classmethod
    def from_config(cls, config: AtomConfig) -> AtomMemory | None:
        """The memory an `AtomConfig` asks for, or None when `memory_size` is 0."""
        if config.memory_size == 0:
            return None
        return cls(config.memory_size, config.memory_warmup_steps)

    def extra_repr(self) -> str:
        groups = "" if self.groups is None else f"groups={self.groups}, "
        return f"size={self.size}, {groups}dim={self.dim}, warmup_steps={self.warmup_steps}, pushed={self._pushed}"

    @property
    def dim(self) -> int | None:
        return None if self.mu is None else int(self.mu.shape[-1])

    def is_active(self, step: int | None = None) -> bool:
        """Whether memory pairs count at this step (optimizer steps; by default the number of earlier pushes)."""
        return (self._pushes if step is None else step) >= self.warmup_steps

    def _allocate(self, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        slots = (self.size,) if self.groups is None else (self.groups, self.size)
        self.mu = torch.zeros(*slots, dim, dtype=dtype, device=device)
        for name in ("r", "s_plus", "s_minus", "n_tokens"):
            setattr(self, name, torch.zeros(slots, dtype=dtype, device=device))
        self.valid = torch.zeros(slots, dtype=torch.bool, device=device)
        self.counts = self.counts.to(device)

    def summaries(self, device: torch.device) -> AtomSummaries:
        """The queue as (detached) `AtomSummaries` on `device`; never-filled slots are invalid."""
        if self.mu.device != device:
            self.to(device)
        return AtomSummaries(*(getattr(self, name) for name in _FIELDS))

    @torch.no_grad()
    def push(self, summaries: AtomSummaries) -> None:
        """Adds a batch's summaries (detached), overwriting the oldest; a batch larger than the queue keeps its last
        `size` samples. Invalid samples take a slot too (marked invalid), so pushing needs no device sync. With
        `groups=S` the summaries are stacked, (S, batch, ...), one batch per queue."""
        expected = 2 if self.groups is None else 3
        if summaries.mu.dim() != expected or (self.groups is not None and summaries.mu.shape[0] != self.groups):
            layout = "(batch, D)" if self.groups is None else f"({self.groups}, batch, D), one batch per queue"
            raise ValueError(
                f"AtomMemory.push needs summaries with mu of shape {layout}, got {tuple(summaries.mu.shape)}."
            )
        batch, dim = summaries.mu.shape[-2:]
        if self.mu is None:
            self._allocate(dim, summaries.mu.dtype, summaries.mu.device)
        elif dim != self.mu.shape[-1]:
            raise ValueError(
                f"The atom memory holds positions of width D={self.mu.shape[-1]} but this batch has D={dim}: the "
                "memory was restored from a run with other heads. Resume with the same --atom_position_dim, or start "
                "without the checkpoint's atom_memory state."
            )
        device, axis = self.mu.device, self._axis
        keep = min(batch, self.size)
        index = (torch.arange(keep, device=device) + (self._pushed + batch - keep)) % self.size
        for name in _FIELDS:
            # Out of place (an O(M*D) copy, cheap beside the O(B*M*D) pairs): this step's pairs read the old queue,
            # and their backward, which comes after this push, needs it unchanged.
            buffer = getattr(self, name)
            values = getattr(summaries, name).narrow(axis, batch - keep, keep).detach().to(device, buffer.dtype)
            setattr(self, name, buffer.index_copy(axis, index, values))
        self._pushed += batch
        self._pushes += 1
        self.counts[0] += batch  # on the device: no host-to-device copy
        self.counts[1] += 1

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        mu = state_dict.get(prefix + "mu")
        if mu is not None:
            expected = 2 if self.groups is None else 3
            if mu.dim() != expected or (self.groups is not None and mu.shape[0] != self.groups):
                raise ValueError(
                    f"The saved atom memory has queues of shape {tuple(mu.shape)}, this one "
                    f"{'(size, D)' if self.groups is None else f'({self.groups}, size, D)'}: resume with the run's "
                    "settings (the same members), or start without the checkpoint's atom memory."
                )
            if mu.shape[-2] != self.size:
                raise ValueError(
                    f"The saved atom memory holds {mu.shape[-2]} samples but atom_memory_size is {self.size}: resume "
                    f"with --atom_memory_size {mu.shape[-2]}, or start without the checkpoint's atom memory (delete "
                    "its atom_memory state)."
                )
            if self.mu is not None and mu.shape[-1] != self.mu.shape[-1]:
                raise ValueError(
                    f"The saved atom memory has positions of width D={mu.shape[-1]}, this one D={self.mu.shape[-1]}: "
                    "resume with the heads that wrote it (the same --atom_position_dim)."
                )
            if self.mu is None:
                self._allocate(mu.shape[-1], mu.dtype, mu.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)
        self._pushed, self._pushes = (int(value) for value in self.counts.tolist())


_NEEDS_GATHER = (
    "atom_memory_size > 0 under data parallelism needs --atom_gather_across_processes true: the queue holds every "
    "process's samples, so all processes hold the same queue and one checkpoint restores it."
)


def check_memory_processes(config: AtomConfig, num_processes: int) -> None:
    """Refuses a memory with several processes but pairs within each one (a trainer's check, at set-up)."""
    if config.memory_size > 0 and num_processes > 1 and not config.gather_across_processes:
        raise ValueError(_NEEDS_GATHER)


def _row_sums(rows: AtomSummaries, cols: AtomSummaries, loss_fn: AtomLoss) -> torch.Tensor:
    """Sum over the columns of each row's pair energies (invalid pairs 0); L2 distances by matmul."""
    unpaired = torch.zeros(rows.mu.shape[0], cols.mu.shape[0], dtype=torch.bool, device=rows.mu.device)
    return loss_fn.pair_energies(rows, cols, unpaired, gram=True)[0].sum(dim=1)


def _checkpointed_row_sums(mu, r, s_plus, s_minus, n_tokens, valid, cols, loss_fn):
    return _row_sums(AtomSummaries(mu, r, s_plus, s_minus, n_tokens, valid), cols, loss_fn)


def memory_row_energies(loss_fn: AtomLoss, rows: AtomSummaries, memory: AtomSummaries) -> torch.Tensor:
    """`(R,)`: each row's summed pair energy with every valid memory sample, in chunks of the memory.

    With gradients, each chunk is recomputed in the backward instead of keeping its (R, chunk[, D]) intermediates,
    so peak memory stays O(R * chunk * D) for any memory size. Under `torch.func.vmap` (which checkpointing does not
    support) the chunks' intermediates are kept: O(R * M) per group with L2 distances.
    """
    batch, dim = rows.mu.shape
    width = 1 if loss_fn.norm_ord == 2.0 else dim  # L2 distances by matmul build no (R, chunk, D) tensor
    chunk = max(1, _CHUNK_ELEMENTS // max(1, batch * width))
    size = memory.mu.shape[0]
    needs_graph = torch.is_grad_enabled() and any(t.requires_grad for t in (rows.mu, rows.r, rows.s_plus))
    needs_graph = needs_graph and not _under_vmap(rows.mu)
    total = rows.mu.new_zeros(batch)
    for start in range(0, size, chunk):
        cols = AtomSummaries(*(field[start : start + chunk] for field in memory.as_tuple()))
        if needs_graph and size > chunk:
            part = checkpoint(
                _checkpointed_row_sums, *rows.as_tuple(), cols, loss_fn, use_reentrant=False, preserve_rng_state=False
            )
        else:
            part = _row_sums(rows, cols, loss_fn)
        total = total + part
    return total


def memory_atom_loss(
    loss_fn: AtomLoss,
    local: AtomSummaries,
    memory: AtomMemory,
    *,
    gather_across_processes: bool = False,
    step: int | None = None,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, AtomLossOutput, torch.Tensor]:
    """L_A over the pairs of the current batch and its pairs with the memory (module docstring), then the push.

    Args:
        loss_fn (`AtomLoss`): the loss settings.
        local (`AtomSummaries`): this process's summaries, with gradient.
        memory (`AtomMemory`): the queue; it is read first, then this step's (global) summaries are pushed.
        gather_across_processes (`bool`): pair with every process's samples (the gathered batch is pushed, so every
            process holds the same queue). Under data parallelism it is required: a per-process queue would differ
            between processes and could not be restored from one checkpoint.
        step (`int`, *optional*): the optimizer step, for the warm-up; by default the number of earlier pushes.

    Returns:
        `tuple(torch.Tensor, AtomLossOutput, torch.Tensor)`: the objective to add (scaled, under gathering, so that
        data parallelism's averaged gradient is that of the global loss, as in `cross_process_atom_loss`); the parts
        (`loss` the global L_A with memory pairs, detached under gathering; `num_pairs` the batch's own pairs); and
        the number of batch-memory pairs.
    """
    if _under_vmap(local.mu):
        raise ValueError(
            "atom_memory_size > 0 does not run under torch.func.vmap (the queue is state shared by the groups). For "
            "an ensemble, keep one queue per group in AtomMemory(size, groups=S), pass each group's summaries as "
            "memory_summaries= to a regularizer built with memory_size=0, and push after the vmap (as "
            "recipes/gan_ensemble.py does)."
        )
    if memory.groups is not None:
        raise ValueError(
            f"This AtomMemory stacks {memory.groups} queues (groups): pair each group with its own queue under "
            "torch.func.vmap through `held_memory_atom_loss`, then push the stacked summaries."
        )
    gather = gather_across_processes and is_distributed()
    if is_distributed() and not gather:
        raise ValueError(_NEEDS_GATHER)
    if gather:
        world_size = dist.get_world_size(group)
        batch, local_index = gather_summaries(local, group)
        columns = torch.arange(batch.mu.shape[0], device=local_index.device)
        same_sample = local_index[:, None] == columns[None, :]
    else:
        world_size, batch = 1, local
        same_sample = torch.eye(local.mu.shape[0], dtype=torch.bool, device=local.mu.device)
    active = memory.mu is not None and memory.is_active(step)
    stored = memory.summaries(local.mu.device) if active else None
    local_sum, parts, memory_pairs = _batch_and_memory_sums(loss_fn, local, batch, same_sample, stored)
    num_pairs = (parts.num_pairs + memory_pairs).clamp(min=1).to(local_sum.dtype)
    objective = local_sum * world_size / num_pairs
    if gather:
        global_sum = local_sum.detach().clone()
        dist.all_reduce(global_sum, group=group)
        parts.loss = global_sum / num_pairs
    else:
        parts.loss = objective
    memory.push(batch)
    return objective, parts, memory_pairs


def _batch_and_memory_sums(
    loss_fn: AtomLoss,
    local: AtomSummaries,
    batch: AtomSummaries,
    same_sample: torch.Tensor,
    stored: AtomSummaries | None,
) -> tuple[torch.Tensor, AtomLossOutput, torch.Tensor]:
    """(the sum of the pair energies of `local`'s rows: each unordered batch pair once and every pair with a valid
    stored sample; the parts, whose `loss` is that sum until the caller divides it; the number of memory pairs).
    No side effect."""
    energies, dbar, pair_mask = loss_fn.pair_energies(local, batch, same_sample)
    num_valid = batch.valid.sum()
    batch_pairs = (num_valid * (num_valid - 1)) // 2
    local_sum = energies.sum() / 2  # ordered pairs: each unordered batch pair twice
    memory_pairs = torch.zeros_like(batch_pairs)
    if stored is not None:
        local_sum = local_sum + memory_row_energies(loss_fn, local, stored).sum()
        memory_pairs = num_valid * stored.valid.sum()
    parts = AtomLossOutput(
        loss=local_sum,
        pair_energies=energies,
        pair_distances=dbar,
        summaries=local,
        pair_mask=pair_mask,
        num_pairs=batch_pairs,
    )
    return local_sum, parts, memory_pairs


def held_memory_atom_loss(
    loss_fn: AtomLoss, summaries: AtomSummaries, stored: AtomSummaries | None
) -> tuple[torch.Tensor, AtomLossOutput, torch.Tensor]:
    """`memory_atom_loss` of one process with the queue's summaries `stored` held fixed, and no push: a pure
    function, so it runs under `torch.func.vmap` (one queue per group of an ensemble, `AtomMemory(groups=S)`).

    Args:
        loss_fn (`AtomLoss`): the loss settings.
        summaries (`AtomSummaries`): the batch's summaries, with gradient.
        stored (`AtomSummaries`, *optional*): the memory's summaries (detached; invalid slots never pair); None
            during the warm-up or before the first push: then this is the plain L_A of the batch.

    Returns:
        `tuple(torch.Tensor, AtomLossOutput, torch.Tensor)`: L_A over batch and memory pairs (D9), its parts
        (`num_pairs` the batch's own pairs) and the number of batch-memory pairs. Push `summaries` afterwards.
    """
    same_sample = torch.eye(summaries.mu.shape[0], dtype=torch.bool, device=summaries.mu.device)
    local_sum, parts, memory_pairs = _batch_and_memory_sums(loss_fn, summaries, summaries, same_sample, stored)
    parts.loss = local_sum / (parts.num_pairs + memory_pairs).clamp(min=1).to(local_sum.dtype)
    return parts.loss, parts, memory_pairs


def save_memory(memory: AtomMemory, folder: str) -> str:
    """Writes the queue to `folder/atom_memory.safetensors` (a training checkpoint) and returns the path."""
    import os

    from safetensors.torch import save_file

    path = os.path.join(folder, MEMORY_STATE_NAME)
    save_file({name: value.detach().contiguous().cpu() for name, value in memory.state_dict().items()}, path)
    return path


def load_memory(memory: AtomMemory | None, folder: str) -> None:
    """Restores the queue from a training checkpoint; errors name the fix when the checkpoint and the run disagree."""
    import os

    from safetensors.torch import load_file

    path = os.path.join(folder, MEMORY_STATE_NAME)
    if memory is None:
        if os.path.exists(path):
            raise ValueError(
                f"{folder} holds an atom memory ({MEMORY_STATE_NAME}) but this run has atom_memory_size=0: resume "
                "with the run's --atom_memory_size, or delete that file to resume without its memory."
            )
        return
    if not os.path.exists(path):
        raise ValueError(
            f"{folder} has no atom memory ({MEMORY_STATE_NAME}) but this run has atom_memory_size={memory.size}: "
            "the checkpoint comes from a run without memory. Resume with --atom_memory_size 0, or start a new run."
        )
    memory.load_state_dict(load_file(path))
