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


# The measurement of issue 19's table: tiny BERT classifier, batch 16, lambda 0.1, CPU, no logging step inside.
BATCH, LENGTH = 16, 12


def classification_rows(steps: int) -> list[dict]:
    """`BATCH * steps` tiny-BERT classification samples of `LENGTH` tokens (labels 0-2), the same every call."""
    import torch
    from tiny_models import VOCAB

    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(BATCH * steps):
        ids = torch.randint(3, VOCAB, (LENGTH,), generator=generator)
        rows.append({"input_ids": ids, "attention_mask": torch.ones(LENGTH, dtype=torch.long), "labels": i % 3})
    return rows


def bert_step_counts(atom: bool, steps: int, output_dir: str) -> StepCounter:
    """Counts of a `steps`-step run of Trainer or AtomTrainer (lambda 0.1) on the tiny BERT (tests/tiny_models.py)."""
    import torch
    from tiny_models import bert
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    data = classification_rows(steps)
    common = dict(output_dir=output_dir, per_device_train_batch_size=BATCH, max_steps=steps, save_strategy="no",
                  report_to="none", disable_tqdm=True, logging_steps=1000, seed=0, use_cpu=True)  # fmt: skip
    if atom:
        from hf_atom import AtomTrainer, AtomTrainingArguments

        args = AtomTrainingArguments(**common, atom_weight=0.1)
        return count_training_steps(AtomTrainer(model=bert(), args=args, train_dataset=data))
    return count_training_steps(Trainer(model=bert(), args=TrainingArguments(**common), train_dataset=data))


def _loss_alone_counts() -> dict[str, float]:
    """`AtomLoss` forward + backward alone, B 64, N 197, D 64 (the charge term and heads not included)."""
    import torch

    from hf_atom import AtomLoss

    generator = torch.Generator().manual_seed(0)
    q = (torch.rand(64, 197, generator=generator) * 2 - 1).requires_grad_()
    p = torch.randn(64, 197, 64, generator=generator).requires_grad_()
    loss_fn = AtomLoss()

    def step() -> None:
        out = loss_fn(q, p)
        (out if isinstance(out, torch.Tensor) else out.loss).backward()  # a tensor or the parts, by version

    step()  # first call outside: lazy set-up is not a per-step cost
    counter = StepCounter()
    with counter:
        step()
    return {"ops": counter.ops, "dispatched": counter.dispatched, "syncs": counter.syncs}


def measure_version(output_dir: str) -> dict[str, dict[str, float]]:
    """Per-step counts of Trainer, AtomTrainer (16-step minus 8-step runs, / 8) and of the loss alone, for the
    hf_atom that this process imports."""
    rows = {}
    for name, atom in (("Trainer", False), ("AtomTrainer", True)):
        rows[name] = per_step(bert_step_counts(atom, 8, output_dir), bert_step_counts(atom, 16, output_dir), 8)
    rows["AtomLoss alone"] = _loss_alone_counts()
    return rows


def main(argv=None) -> None:
    """Prints issue 19's table for one or more hf_atom source trees side by side, each in its own process:

    git archive 5b21f62 hf_atom | tar -x -C /tmp/before     # the tree before issue 19
    python benchmarks/step_counts.py --versions before=/tmp/before,after=.
    """
    import argparse
    import json
    import os
    import subprocess
    import sys
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--versions", default="this=.", help="Comma list of label=folder holding hf_atom/.")
    parser.add_argument("--out", default=None, help="Write the counts as JSON here.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    if args.worker:
        with tempfile.TemporaryDirectory() as folder:
            print("step_counts: " + json.dumps(measure_version(folder)))
        return
    tests = os.path.join(os.path.dirname(here), "tests")
    results = {}
    for item in args.versions.split(","):
        label, _, folder = item.partition("=")
        if not os.path.isdir(os.path.join(folder, "hf_atom")):
            parser.error(f"--versions: {folder!r} has no hf_atom/ folder (give label=folder, e.g. after=.).")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.abspath(folder), here, tests]),
               "HF_HUB_OFFLINE": "1"}  # fmt: skip
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker"], env=env, capture_output=True,
                              text=True, cwd=tempfile.gettempdir())  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{label}: {done.stderr[-3000:]}")
        line = next(x for x in done.stdout.splitlines() if x.startswith("step_counts: "))
        results[label] = json.loads(line[len("step_counts: ") :])
    print("| | " + " | ".join(f"{label}: kernel ops (all dispatched) per step | {label}: host syncs per step" for label in results)
          + " |")  # fmt: skip
    print("| --- |" + " --- | --- |" * len(results))
    for name in ("Trainer", "AtomTrainer", "AtomLoss alone"):
        cells = []
        for rows in results.values():
            added = "" if name != "AtomTrainer" else f" (+{rows[name]['ops'] - rows['Trainer']['ops']:.0f})"
            cells += [f"{rows[name]['ops']:.0f}{added} ({rows[name]['dispatched']:.0f})", f"{rows[name]['syncs']:.1f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
