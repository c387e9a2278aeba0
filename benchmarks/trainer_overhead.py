"""Training-step cost of AtomTrainer over plain Trainer: same model, data and seed.

    python benchmarks/trainer_overhead.py                 # CPU: tiny ViT and tiny GPT-2
    python benchmarks/trainer_overhead.py --device cuda   # ViT-B/16 at batch 64 and GPT-2 small at 16 x 256, bf16

Each (model, trainer) measurement runs in a fresh process (clean peak memory), alternating Trainer and AtomTrainer
for --rounds rounds; the step time is the median over the steps after --warmup, then the median over rounds.
Prints a table with the overhead ratio and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def build(model_name: str, cuda: bool):
    import torch
    import transformers as T

    if model_name == "vit":
        config = (
            T.ViTConfig(num_labels=1000)
            if cuda
            else T.ViTConfig(
                image_size=32,
                patch_size=4,
                hidden_size=128,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=512,
                num_labels=10,
            )
        )
        batch = 64 if cuda else 32
        model = T.ViTForImageClassification(config)
        size = config.image_size

        def sample(i: int):
            generator = torch.Generator().manual_seed(i)
            return {"pixel_values": torch.randn(3, size, size, generator=generator), "labels": i % config.num_labels}

        return model, batch, sample
    config = (
        T.GPT2Config() if cuda else T.GPT2Config(n_embd=128, n_layer=4, n_head=4, vocab_size=5000, n_positions=128)
    )
    batch, length = (16, 256) if cuda else (8, 128)
    model = T.GPT2LMHeadModel(config)

    def sample(i: int):
        ids = torch.randint(0, config.vocab_size, (length,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long), "labels": ids.clone()}

    return model, batch, sample


def worker(model_name: str, trainer_name: str, steps: int, warmup: int, device: str, out: str) -> None:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from hf_atom import AtomTrainer, AtomTrainingArguments

    cuda = device == "cuda"
    torch.manual_seed(0)
    model, batch, sample = build(model_name, cuda)
    data = [sample(i) for i in range(batch * steps)]
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.start)

    common = dict(
        output_dir=os.path.join(out, "tmp"),
        per_device_train_batch_size=batch,
        max_steps=steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=10,
        seed=0,
        use_cpu=not cuda,
        bf16=cuda,
        dataloader_num_workers=2 if cuda else 0,
    )
    if trainer_name == "trainer":
        trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=data, callbacks=[StepTimer()])
    else:
        trainer = AtomTrainer(
            model=model,
            args=AtomTrainingArguments(**common, atom_weight=0.1),
            train_dataset=data,
            callbacks=[StepTimer()],
        )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    print(
        json.dumps(
            {"median_step_ms": statistics.median(times[warmup:]) * 1e3, "peak_mib": peak, "steps": len(times) - warmup}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None)
    parser.add_argument("--models", nargs="+", default=["vit", "gpt2"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "TRAINER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.worker:
        worker(*args.worker, args.steps, args.warmup, device, args.out)
        return
    rows = []
    for model_name in args.models:
        measured: dict[str, list[dict]] = {"trainer": [], "atom_trainer": []}
        for _ in range(args.rounds):
            for trainer_name in measured:
                command = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    model_name,
                    trainer_name,
                    "--device",
                    device,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--out",
                    args.out,
                ]
                result = subprocess.run(
                    command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
                )
                if result.returncode != 0:
                    raise SystemExit(result.stderr[-3000:])
                measured[trainer_name].append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(model_name, trainer_name, measured[trainer_name][-1], flush=True)
        summary = {
            name: {
                "median_step_ms": statistics.median(r["median_step_ms"] for r in runs),
                "peak_mib": max(r["peak_mib"] for r in runs),
            }
            for name, runs in measured.items()
        }
        rows.append(
            {
                "model": model_name,
                **{f"{n}_{k}": v for n, s in summary.items() for k, v in s.items()},
                "overhead": summary["atom_trainer"]["median_step_ms"] / summary["trainer"]["median_step_ms"] - 1,
                "rounds": measured,
            }
        )
    name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    print(f"\nTraining step, Trainer vs AtomTrainer (lambda = 0.1), {name}\n")
    print("| model | Trainer ms/step | AtomTrainer ms/step | overhead | Trainer peak MiB | AtomTrainer peak MiB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['model']} | {row['trainer_median_step_ms']:.1f} | {row['atom_trainer_median_step_ms']:.1f} | "
            f"{row['overhead'] * 100:+.1f}% | {row['trainer_peak_mib']:.0f} | {row['atom_trainer_peak_mib']:.0f} |"
        )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"trainer_overhead_{device}.json")
    with open(path, "w") as handle:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows}, handle, indent=2)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
