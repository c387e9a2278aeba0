"""Every GPU measurement of the project in one program, part by part (`benchmarks/gpu_suite.sh` runs it).

Parts:
- `loss`: the atomic loss alone, forward + backward, B 64, N 197, D 768 (`benchmarks/loss_speed.py`): eager
  (`hf_atom.atom_loss`), compiled (`torch.compile` of the same factorised loss, its input checks outside) and the
  trainer's objective (`AtomObjective`, the fused one-node path, charge term off so that it is L_A alone): median
  ms and peak memory.
- `train_step`: a training step, `Trainer` vs `AtomTrainer` (`benchmarks/trainer_overhead.py`), for ViT-B/16 (B 64,
  224 px), GPT-2 small (16 x 256) and SmolLM2-135M (8 x 512), bf16, configs built locally (random weights): ms per
  step, overhead, images or tokens per second, host syncs and kernel-launching ops per step, peak memory.
- `gan_protocol`: the PacGAN protocol on the 2D ring and grid (docs/GENERATION.md): 10 seeds x {gan, pacgan2,
  atom at lambda 0.01, 0.1, 1} on both datasets, the protocol's networks, Adam lr 1e-4 / beta1 0.8, batch 100,
  400k steps, 2,500 scored points. Two ensembles (gan + atom members share one shape, pacgan2 has its own), bf16
  matmuls, one shared random stream, each step one CUDA-graph replay. It first times a few hundred steps of each
  ensemble and, if 400k steps cannot fit in `--gan_budget_s`, cuts the steps (never the members) and says so.

`--dry_run` runs every part on the CPU at tiny sizes (a test): the loss at B 8, N 16, D 32 (compiled with the
`aot_eager` backend: the compile path without code generation), the three architectures at tiny widths for a few
steps, the GAN protocol for 200 steps with 2 seeds and narrow networks. Results go to `--out` (default
docs/results/gpu_<card>/): gpu_suite.json (every part's record), and per part its tables.md (the markdown table),
plus for `gan_protocol` the JSON per run, stats.json, curves.png, scatter.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "recipes"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

PARTS = ("loss", "train_step", "gan_protocol")
PROTOCOL_STEPS = 400_000
PROTOCOL = ["--learning_rate", "1e-4", "--adam_beta1", "0.8", "--batch_size", "100", "--lr_scheduler_type", "constant"]
# (name, methods): the members of one ensemble share one network shape.
PROTOCOL_ENSEMBLES = (("gan_atom", "gan,atom:0.01,atom:0.1,atom:1"), ("pacgan2", "pacgan:2"))
# Seconds of GAN training (after its timing runs) that fit one 9-minute command beside the other parts.
SUITE_BUDGET_S = 330.0 + 150.0
GFLOP_PER_MEMBER_STEP = 1.1  # forward + backward of D and G at protocol width, batch 100 (docs/PERFORMANCE.md)


def card_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def write_table(out: str, title: str, markdown: str) -> None:
    with open(os.path.join(out, "tables.md"), "w", encoding="utf-8") as handle:
        handle.write(f"{title}, card: {card_name()}\n\n{markdown}")


def loss_alone(out: str, dry_run: bool, log=print) -> dict:
    """The loss alone, forward + backward: eager, compiled and the trainer's fused objective."""
    import loss_speed
    import torch

    import hf_atom
    from hf_atom.loss import AtomLoss, atom_summaries
    from hf_atom.regularizer import AtomObjective

    device = torch.device("cpu" if dry_run else "cuda")
    batch, tokens, dim = (8, 16, 32) if dry_run else (64, 197, 768)
    softening = loss_speed.SOFTENING

    def eager(q, p, mask):
        return hf_atom.atom_loss(q, p, mask, softening=softening)

    loss_fn = AtomLoss(softening=softening)

    def factorised(q, p, mask):  # the loss without its input checks (a CPU value check would break the graph)
        return loss_fn.loss_from_summaries(atom_summaries(q, p, mask)).loss

    objective = AtomObjective(hf_atom.AtomConfig(weight=1.0, softening=softening, charge_constraint="none"))
    variants = {
        "eager": eager,
        "compiled": torch.compile(factorised, dynamic=False, backend="aot_eager" if dry_run else "inductor"),
        "fused_objective": lambda q, p, mask: objective(q, p, mask).objective,
    }
    rows = loss_speed.measure(variants, batch, tokens, dim, device, log=log)
    lines = ["| variant | median ms | peak MiB | loss diff. vs eager |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['ms']:.3f} | {r['peak_mib']:.2f} | {r['abs_diff_vs_first']:.1e} |" for r in rows]
    markdown = "\n".join(lines) + "\n"
    write_table(out, f"Atomic loss, forward + backward, B {batch}, N {tokens}, D {dim}", markdown)
    log(markdown)
    return {"batch": batch, "tokens": tokens, "dim": dim, "rows": rows}


def train_step(out: str, dry_run: bool, log=print) -> dict:
    """Trainer vs AtomTrainer on the three models, each in its own process."""
    import trainer_overhead

    device = "cpu" if dry_run else "cuda"
    schedule = dict(rounds=1, warmup=1, steps=2, count_steps=1) if dry_run else dict(rounds=2, warmup=5, steps=15,
                                                                                     count_steps=2)  # fmt: skip
    rows = trainer_overhead.run(trainer_overhead.MODELS, device, dry_run, out=out, log=log, **schedule)
    markdown = trainer_overhead.markdown_table(rows, card_name())
    write_table(out, "Training step", markdown)
    log(markdown)
    return {"schedule": schedule, "rows": rows}


def gan_protocol(out: str, dry_run: bool, budget_s: float, log=print) -> dict:
    """Runs (or times, then runs) both protocol ensembles; returns the part's record."""
    import gan_ensemble
    import gan_study

    seeds = "0-1" if dry_run else "0-9"
    device = (
        ["--device", "cpu", "--rng", "per_member"]
        if dry_run
        else ["--device", "cuda", "--rng", "shared", "--cuda_graph", "true"]
    )
    network = ["--hidden_size", "16", "--disc_units", "8", "--num_train", "1000", "--num_eval_samples", "300",
               "--atom_tokens", "4"] if dry_run else []  # fmt: skip
    common = ["--datasets", "grid,ring", "--seeds", seeds, *PROTOCOL, *device, *network, "--precision", "bf16"]

    def flags(methods: str, steps: int, folder: str, every: int) -> list[str]:
        return [*common, "--methods", methods, "--max_steps", str(steps), "--output_dir", folder,
                "--eval_steps", str(every), "--save_steps", str(every)]  # fmt: skip

    members = {name: len(gan_ensemble.parse(flags(m, 1, out, 1))[0].members) for name, m in PROTOCOL_ENSEMBLES}
    record = {"members": members, "protocol_steps": PROTOCOL_STEPS, "gflop_per_member_step": GFLOP_PER_MEMBER_STEP}
    record["flop_estimate"] = (
        f"{sum(members.values())} members x {PROTOCOL_STEPS} steps x {GFLOP_PER_MEMBER_STEP} GFLOP = "
        f"{sum(members.values()) * PROTOCOL_STEPS * GFLOP_PER_MEMBER_STEP / 1e6:.1f} PFLOP (pacgan2 members cost about "
        "twice that: 200 samples per step)"
    )
    if dry_run:
        steps = 200
    else:  # time each ensemble for a few hundred steps (graph capture included), then fit the budget
        per_step = {}
        for name, methods in PROTOCOL_ENSEMBLES:
            folder = os.path.join(out, "timing", name)
            timings = []
            for k in (200, 600):
                args, atom_args = gan_ensemble.parse(flags(methods, k, f"{folder}_{k}", k))
                start = time.perf_counter()
                gan_ensemble.train_ensemble(args, atom_args, log=log)
                timings.append(time.perf_counter() - start)
            per_step[name] = (timings[1] - timings[0]) / 400
        total = sum(per_step.values())
        record["ms_per_step"] = {k: round(1000 * v, 4) for k, v in per_step.items()}
        fit = int(budget_s / total) // 1000 * 1000
        steps = min(PROTOCOL_STEPS, max(fit, 1000))
        record["estimate_s"] = round(PROTOCOL_STEPS * total, 1)
        if steps < PROTOCOL_STEPS:
            record["cut"] = (
                f"400k steps would take {PROTOCOL_STEPS * total:.0f} s ({1000 * total:.3f} ms per step for all "
                f"{sum(members.values())} members) > the {budget_s:.0f} s budget: cut to {steps} steps, all members kept"
            )
            log(record["cut"])
    every = max(steps // 20, 1)
    record["steps"] = steps
    start = time.perf_counter()
    runs_dir = os.path.join(out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    for name, methods in PROTOCOL_ENSEMBLES:
        folder = os.path.join(out, "ensembles", name)
        resume = ["--resume", "true"] if os.path.exists(os.path.join(folder, gan_ensemble.CHECKPOINT)) else []
        args, atom_args = gan_ensemble.parse(flags(methods, steps, folder, every) + resume)
        summary = gan_ensemble.train_ensemble(args, atom_args, log=log)
        record.setdefault("train_wall_s", {})[name] = summary["train_wall_s"]
        for file in os.listdir(os.path.join(folder, "runs")):
            os.replace(os.path.join(folder, "runs", file), os.path.join(runs_dir, file))
    record["wall_s"] = round(time.perf_counter() - start, 1)
    runs = gan_study.load_runs(runs_dir)
    table = gan_study.summarize(runs)
    markdown = gan_study.tables_markdown(table)
    with open(os.path.join(out, "tables.md"), "w", encoding="utf-8") as handle:
        handle.write(f"PacGAN protocol, {steps} steps, card: {card_name()}\n\n{markdown}")
    with open(os.path.join(out, "stats.json"), "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=2, sort_keys=True)
    gan_study.plot_curves(runs, os.path.join(out, "curves.png"))
    gan_study.plot_scatter(os.path.join(out, "ensembles"), runs, os.path.join(out, "scatter.png"))
    log(markdown)
    return record


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry_run", action="store_true", help="Every part at tiny sizes on the CPU (a test).")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Comma list of {PARTS}.")
    parser.add_argument("--out", default=None, help="Output folder (default docs/results/gpu_<card>).")
    parser.add_argument(
        "--gan_budget_s",
        type=float,
        default=330.0,
        help="Wall seconds for the GAN protocol runs (less what the earlier parts took beyond 150 s).",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {PARTS}.")
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device is visible: run on a GPU machine, or pass --dry_run for the CPU smoke run.")
    card = card_name()
    out = args.out or os.path.join(ROOT, "docs", "results", f"gpu_{slug(card)}" + ("_dry_run" if args.dry_run else ""))
    os.makedirs(out, exist_ok=True)
    record = {"card": card, "torch": torch.__version__, "dry_run": args.dry_run, "parts": {}}
    start = time.perf_counter()
    for part in parts:
        part_out = os.path.join(out, part)
        os.makedirs(part_out, exist_ok=True)
        part_start = time.perf_counter()
        if part == "loss":
            record["parts"][part] = loss_alone(part_out, args.dry_run)
        elif part == "train_step":
            record["parts"][part] = train_step(part_out, args.dry_run)
        else:  # the GAN runs get what is left of the command's budget once the other parts have run
            budget = min(args.gan_budget_s, SUITE_BUDGET_S - (time.perf_counter() - start))
            record["parts"][part] = gan_protocol(part_out, args.dry_run, max(budget, 60.0))
        record["parts"][part]["part_wall_s"] = round(time.perf_counter() - part_start, 1)
    record["wall_s"] = round(time.perf_counter() - start, 1)
    with open(os.path.join(out, "tables.md"), "w", encoding="utf-8") as handle:  # every part's table in one file
        for part in parts:
            with open(os.path.join(out, part, "tables.md"), encoding="utf-8") as table:
                handle.write(f"## {part}\n\n{table.read()}\n")
    with open(os.path.join(out, "gpu_suite.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, default=str)
    print(f"gpu_suite: {', '.join(parts)} on {card} in {record['wall_s']:.0f} s -> {out}")
    return record


if __name__ == "__main__":
    main()
