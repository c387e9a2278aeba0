"""What an atom step costs over a plain `Trainer` step: time, throughput, peak memory, host syncs and launches.

    python benchmarks/trainer_overhead.py --device cuda   # ViT-B/16 (B 64, 224 px), GPT-2 small (16 x 256) and
                                                          # SmolLM2-135M (8 x 512), bf16, configs built locally
    python benchmarks/trainer_overhead.py --tiny          # the same three architectures at tiny sizes (CPU)

Per model, one fresh process trains `Trainer` and `AtomTrainer` (lambda = 0.1, default settings) in turn for
`--rounds` rounds, each from the same initial weights and the same batches: `--warmup` steps, then `--steps` timed
steps (synchronised on CUDA), then `--count_steps` steps under a `TorchDispatchMode` (`step_counts.StepCounter`) that
counts the kernel-launching ATen ops and the host synchronisations per step. No logging, evaluation or saving happens
inside the steps. Weights are random (no download): timing needs the shapes, not the values.
Prints a table with the overhead and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODELS = ("vit_b16", "gpt2_small", "smollm2_135m")
TRAINERS = ("trainer", "atom_trainer")
ATOM_WEIGHT = 0.1
RECORD = "trainer_overhead record: "  # marks the worker's result lines among Trainer's own prints


@dataclass
class Workload:
    """A model to time and the batches that feed it."""

    model: object
    batch: int
    make_sample: object  # (index) -> one sample dict
    unit: str  # "images" or "tokens"
    per_sample: int  # images or tokens per sample
    shape: str


def build(name: str, tiny: bool) -> Workload:
    """The model of `name` with random weights: full size, or the same architecture at tiny size (`tiny`)."""
    import torch
    import transformers as T

    if name == "vit_b16":
        config = (
            T.ViTConfig(
                image_size=32,
                patch_size=4,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                num_labels=10,
            )  # fmt: skip
            if tiny
            else T.ViTConfig(num_labels=1000)  # ViT-B/16: 224 px, patch 16, hidden 768, 12 layers
        )
        batch, size = (4 if tiny else 64), config.image_size

        def make_sample(i: int) -> dict:
            generator = torch.Generator().manual_seed(i)
            return {"pixel_values": torch.randn(3, size, size, generator=generator), "labels": i % config.num_labels}

        model = T.ViTForImageClassification(config)
        return Workload(model, batch, make_sample, "images", 1, f"B {batch}, {size} px")
    if name == "gpt2_small":
        config = (
            T.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=500, n_positions=64) if tiny else T.GPT2Config()
        )
        batch, length = (4, 16) if tiny else (16, 256)
        model = T.GPT2LMHeadModel(config)
    elif name == "smollm2_135m":
        config = (
            T.LlamaConfig(
                vocab_size=500,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                max_position_embeddings=64,
                tie_word_embeddings=True,
            )  # fmt: skip
            if tiny
            else T.LlamaConfig(  # HuggingFaceTB/SmolLM2-135M's config
                vocab_size=49152,
                hidden_size=576,
                intermediate_size=1536,
                num_hidden_layers=30,
                num_attention_heads=9,
                num_key_value_heads=3,
                head_dim=64,
                max_position_embeddings=8192,
                rms_norm_eps=1e-5,
                rope_theta=100000.0,
                tie_word_embeddings=True,
            )  # fmt: skip
        )
        batch, length = (4, 16) if tiny else (8, 512)
        model = T.LlamaForCausalLM(config)
    else:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")

    def make_sample(i: int) -> dict:
        ids = torch.randint(0, config.vocab_size, (length,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long), "labels": ids.clone()}

    return Workload(model, batch, make_sample, "tokens", length, f"{batch} x {length}")


class CycledSamples:
    """`length` samples drawn from a pool of four batches (no 38 MB-per-batch image set is kept or generated)."""

    def __init__(self, make_sample, batch: int, length: int):
        self.pool = [make_sample(i) for i in range(4 * batch)]
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.pool[index % len(self.pool)]


def _reset_peak(cuda: bool) -> None:
    import torch

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    else:  # Linux: "5" resets the process's peak resident set size (VmHWM)
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass


def _peak_mib(cuda: bool) -> float:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def measure(name: str, trainer_name: str, tiny: bool, cuda: bool, warmup: int, steps: int, count_steps: int,
            out: str) -> dict:  # fmt: skip
    """One training run: median step ms over the timed steps, per-step counts over the counted ones, peak MiB."""
    import torch
    from step_counts import StepCounter
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hf_atom import AtomTrainer, AtomTrainingArguments

    torch.manual_seed(0)
    work = build(name, tiny)
    total = warmup + steps + count_steps
    data = CycledSamples(work.make_sample, work.batch, work.batch * total)
    times: list[float] = []
    counter = StepCounter()

    class StepProbe(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step >= warmup + steps:
                counter.__enter__()
            elif cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step > warmup + steps:  # global_step already counts this step
                counter.__exit__(None, None, None)
                return
            if cuda:
                torch.cuda.synchronize()
            if state.global_step > warmup:
                times.append(time.perf_counter() - self.start)

    common = dict(output_dir=os.path.join(out, "tmp"), per_device_train_batch_size=work.batch, max_steps=total,
                  save_strategy="no", report_to="none", disable_tqdm=True, logging_steps=total + 1, seed=0,
                  use_cpu=not cuda, bf16=cuda, dataloader_num_workers=2 if cuda else 0)  # fmt: skip
    if trainer_name == "trainer":
        trainer = Trainer(model=work.model, args=TrainingArguments(**common), train_dataset=data)
    else:
        args = AtomTrainingArguments(**common, atom_weight=ATOM_WEIGHT)
        trainer = AtomTrainer(model=work.model, args=args, train_dataset=data)
    trainer.add_callback(StepProbe())
    _reset_peak(cuda)
    trainer.train()
    peak = _peak_mib(cuda)
    step_ms = statistics.median(times) * 1e3
    record = {
        "model": name,
        "trainer": trainer_name,
        "shape": work.shape,
        "median_step_ms": step_ms,
        "throughput": work.batch * work.per_sample / (step_ms / 1e3),
        "unit": f"{work.unit}/s",
        "peak_mib": peak,
        "timed_steps": len(times),
        "ops_per_step": counter.ops / count_steps,
        "dispatched_per_step": counter.dispatched / count_steps,
        "syncs_per_step": counter.syncs / count_steps,
    }
    del trainer, work, data
    return record


def worker(name: str, tiny: bool, device: str, rounds: int, warmup: int, steps: int, count_steps: int, out: str):
    """All rounds of one model in this process, Trainer and AtomTrainer alternating; prints one JSON line each."""
    for _ in range(rounds):
        for trainer_name in TRAINERS:
            record = measure(name, trainer_name, tiny, device == "cuda", warmup, steps, count_steps, out)
            print(RECORD + json.dumps(record), flush=True)


def summarize(name: str, records: list[dict]) -> dict:
    """Medians over rounds per trainer, then the overhead and the added syncs and ops of AtomTrainer."""
    by = {t: [r for r in records if r["trainer"] == t] for t in TRAINERS}
    row = {"model": name, "shape": records[0]["shape"], "unit": records[0]["unit"], "rounds": records}
    for trainer_name, runs in by.items():
        for key in ("median_step_ms", "throughput", "ops_per_step", "dispatched_per_step", "syncs_per_step"):
            row[f"{trainer_name}_{key}"] = statistics.median(r[key] for r in runs)
        row[f"{trainer_name}_peak_mib"] = max(r["peak_mib"] for r in runs)
    row["overhead"] = row["atom_trainer_median_step_ms"] / row["trainer_median_step_ms"] - 1
    row["added_ops_per_step"] = row["atom_trainer_ops_per_step"] - row["trainer_ops_per_step"]
    row["added_syncs_per_step"] = row["atom_trainer_syncs_per_step"] - row["trainer_syncs_per_step"]
    return row


def run(models, device: str, tiny: bool, rounds: int, warmup: int, steps: int, count_steps: int, out: str,
        log=print) -> list[dict]:  # fmt: skip
    """Measures every model in its own process (a clean peak memory and no state shared between models)."""
    rows = []
    for name in models:
        command = [sys.executable, os.path.abspath(__file__), "--worker", name, "--device", device, "--rounds",
                   str(rounds), "--warmup", str(warmup), "--steps", str(steps), "--count_steps", str(count_steps),
                   "--out", out, *(["--tiny"] if tiny else [])]  # fmt: skip
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        }
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"trainer_overhead worker {name} failed:\n{result.stderr[-4000:]}")
        records = [json.loads(line[len(RECORD) :]) for line in result.stdout.splitlines() if line.startswith(RECORD)]
        rows.append(summarize(name, records))
        log(f"{name}: {markdown_row(rows[-1])}")
    return rows


def markdown_row(row: dict) -> str:
    return (
        f"| {row['model']} | {row['shape']} | {row['trainer_median_step_ms']:.1f} | "
        f"{row['atom_trainer_median_step_ms']:.1f} | {row['overhead'] * 100:+.1f}% | "
        f"{row['trainer_throughput']:.0f} / {row['atom_trainer_throughput']:.0f} {row['unit']} | "
        f"{row['trainer_syncs_per_step']:.1f} / {row['atom_trainer_syncs_per_step']:.1f} | "
        f"{row['trainer_ops_per_step']:.0f} / {row['atom_trainer_ops_per_step']:.0f} "
        f"(+{row['added_ops_per_step']:.0f}) | {row['trainer_peak_mib']:.0f} / {row['atom_trainer_peak_mib']:.0f} |"
    )


def markdown_table(rows: list[dict], device_name: str) -> str:
    lines = [
        f"Training step, Trainer vs AtomTrainer (lambda = {ATOM_WEIGHT}), {device_name}",
        "",
        "| model | batch | Trainer ms/step | AtomTrainer ms/step | overhead | throughput (Trainer / Atom) | "
        "host syncs per step | kernel ops per step (added) | peak MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    return "\n".join(lines + [markdown_row(row) for row in rows]) + "\n"


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--models", default=",".join(MODELS), help=f"Comma list of {MODELS}.")
    parser.add_argument("--tiny", action="store_true", help="Tiny sizes of the same architectures (CPU).")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--count_steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.worker:
        worker(args.worker, args.tiny, device, args.rounds, args.warmup, args.steps, args.count_steps, args.out)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {MODELS}.")
    if min(args.steps, args.count_steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--steps, --count_steps and --rounds must be >= 1 and --warmup >= 0.")
    rows = run(models, device, args.tiny, args.rounds, args.warmup, args.steps, args.count_steps, args.out)
    name = device_name(device)
    print("\n" + markdown_table(rows, name))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"trainer_overhead_{device}{'_tiny' if args.tiny else ''}.json")
    with open(path, "w") as handle:
        json.dump({"device": name, "torch": torch.__version__, "tiny": args.tiny, "rows": rows}, handle, indent=2)
    print(f"written {path}")


if __name__ == "__main__":
    main()
