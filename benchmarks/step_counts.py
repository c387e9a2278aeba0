"""Host synchronisations and dispatched ATen ops of training steps, counted with a `TorchDispatchMode` (issue 19).

Every dispatched op that is not a view becomes at least one kernel launch on a GPU (~5-10 us each, eager), and every
`aten::_local_scalar_dense` (`.item()`, `bool(t)`, `float(t)`) is a host synchronisation. These counts are the same
on any device, so they are measured (and tested: tests/test_gpu_cost.py) on CPU. `count_training_steps` counts between
a trainer's `on_step_begin` and `on_step_end` (forward, backward, optimizer step; logging and evaluation come after
`on_step_end`, so they are outside).
"""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OP = "aten::_local_scalar_dense"
# Ops that only make a new view (or wrap a Python number): dispatched, but no kernel is launched.
VIEW_OPS = frozenset(
    "aten::" + name
    for name in (
        "alias as_strided detach expand lift_fresh permute select.int slice.Tensor squeeze squeeze.dim "
        "squeeze.dims t transpose.int unsqueeze view _unsafe_view _reshape_alias unbind.int split.Tensor "
        "split_with_sizes"
    ).split()
)


class StepCounter(TorchDispatchMode):
    """Counts dispatched ATen ops by name while active. `ops` leaves views out; `syncs` counts host syncs."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.name()] += 1
        return func(*args, **(kwargs or {}))

    @property
    def dispatched(self) -> int:
        return sum(self.counts.values())

    @property
    def ops(self) -> int:
        return sum(n for name, n in self.counts.items() if name not in VIEW_OPS)

    @property
    def syncs(self) -> int:
        return self.counts[SYNC_OP]


def count_training_steps(trainer) -> StepCounter:
    """Trains `trainer` with a `StepCounter` active inside every training step only; returns the counter."""
    from transformers import TrainerCallback

    counter = StepCounter()

    class InsideSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            counter.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            counter.__exit__(None, None, None)

    trainer.add_callback(InsideSteps())
    trainer.train()
    return counter


def per_step(short: StepCounter, long: StepCounter, extra_steps: int) -> dict[str, float]:
    """Per-step counts from two runs that differ by `extra_steps` steps (start-up and the first step cancel)."""
    return {
        "ops": (long.ops - short.ops) / extra_steps,
        "dispatched": (long.dispatched - short.dispatched) / extra_steps,
        "syncs": (long.syncs - short.syncs) / extra_steps,
    }
