"""Shared pieces of the GAN recipes (`gan_mixture.py`, `gan_stacked_mnist.py`, `gan_ensemble.py`): arguments (the
atom settings generated from `hf_atom.AtomConfig`), the training loop of the three methods (`gan`, `atom`, `pacgan`)
and the run's output files.

The loop is plain PyTorch + Accelerate (the convention of diffusers' training examples), so it runs on one CPU
core, one GPU, or `accelerate launch` with several processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import _requirements  # noqa: F401 - first: fails at start-up, naming the fix, without hf_atom
import torch
from _gan_checkpoints import (
    check_output_dir,
    checkpoint_to_resume,
    clear_earlier_run,
    load_checkpoint,
    run_settings,
    save_checkpoint,
)
from torch import nn
from torch.nn import functional as F

from hf_atom.configuration import AtomConfig, AtomConfigError
from hf_atom.loss_contract import NonFiniteInputError
from hf_atom.output_files import atomic_write_text
from hf_atom.regularizer import ATOM_STATISTICS

METHODS = ("gan", "atom", "pacgan")
LR_SCHEDULES = ("constant", "linear")


def data_seed(seed: int) -> int:
    """Seed of a run's batch-and-noise generator, apart from the stream that initialised its weights."""
    return seed + 2_000_003


def lr_factor(step: int, max_steps: int, schedule: str) -> float:
    """Multiplier of the learning rate for update `step` (0-based): 1, or linear decay to 0 after `max_steps`."""
    return 1.0 if schedule == "constant" else 1.0 - step / max_steps


@dataclass
class GanTrainingArguments:
    """How to train: method, budget, optimiser, seed, outputs (shared by the GAN recipes)."""

    output_dir: str = field(metadata={"help": "Where the checkpoints, samples, plots and results.json go."})
    method: str = field(
        default="gan",
        metadata={
            "help": "`gan`: non-saturating GAN (the control); `atom`: + lambda * atom objective on the generator's "
            "hidden features; `pacgan`: the discriminator sees `pack_size` samples at once."
        },
    )
    pack_size: int = field(default=2, metadata={"help": "m, samples per discriminator input for `pacgan` (>= 1)."})
    max_steps: int = field(default=10_000, metadata={"help": "Generator (and discriminator) updates."})
    batch_size: int = field(
        default=100, metadata={"help": "Samples per step (packed inputs per step for pacgan); >= 2 for BatchNorm."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Adam learning rate of both networks."})
    lr_scheduler_type: str = field(
        default="constant",
        metadata={
            "help": "`constant`, or `linear`: the learning rate decays linearly to 0 at `max_steps` (both nets)."
        },
    )
    adam_beta1: float = field(default=0.8)
    adam_beta2: float = field(default=0.999)
    seed: int = field(default=0)
    eval_steps: int = field(default=0, metadata={"help": "Evaluate every this many steps (0: only at the end)."})
    save_steps: int = field(default=0, metadata={"help": "Full checkpoint (both networks, optimisers) every k steps."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "`true`: continue from the newest checkpoint in output_dir; or a checkpoint-<step> folder."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Start over in an output_dir that holds an earlier run (deletes its files)."}
    )
    num_threads: int | None = field(default=None, metadata={"help": "torch.set_num_threads (e.g. 1 on a shared CPU)."})
    disable_tqdm: bool = field(default=False)
    cpu: bool = field(default=False, metadata={"help": "Force the CPU even if a GPU is present."})

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got {self.method!r}.")
        if self.pack_size < 1:
            raise ValueError(f"--pack_size must be >= 1 (1 = no packing), got {self.pack_size}.")
        if self.max_steps < 1:
            raise ValueError(f"--max_steps must be >= 1, got {self.max_steps}.")
        if self.batch_size < 2:
            raise ValueError(
                f"--batch_size must be >= 2, got {self.batch_size}: the networks' BatchNorm layers need at least two "
                "samples per batch."
            )
        for name in ("eval_steps", "save_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 = off), got {getattr(self, name)}.")
        if self.lr_scheduler_type not in LR_SCHEDULES:
            raise ValueError(f"--lr_scheduler_type must be one of {LR_SCHEDULES}, got {self.lr_scheduler_type!r}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning_rate must be a finite number > 0, got {self.learning_rate}.")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:  # also refuses NaN
                raise ValueError(f"--{name} must be in [0, 1) (Adam's decay rate), got {getattr(self, name)}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"--num_threads must be >= 1, got {self.num_threads}.")
        check_output_dir(self.output_dir, self.resume_from_checkpoint, self.overwrite_output_dir)

    @property
    def effective_pack(self) -> int:
        """Samples per discriminator input: `pack_size` for pacgan, 1 for the other methods."""
        return self.pack_size if self.method == "pacgan" else 1


# AtomConfig fields without a GAN flag: the token width comes from the generator (`--atom_tokens` splits a layer),
# token selection is for transformers models (`--atom_layer` picks the generator's layer), and the weight warm-up and
# cross-process pairs are the Trainer's (the GAN loops implement neither, so a flag would be silently ignored).
NOT_GAN_SETTINGS = (
    "input_dim",
    "hidden_layer",
    "exclude_special_tokens",
    "include_cls_token",
    "weight_warmup_steps",
    "gather_across_processes",
)
GAN_SETTINGS = tuple(spec.name for spec in dataclasses.fields(AtomConfig) if spec.name not in NOT_GAN_SETTINGS)


class AtomGanArgumentsMixin:
    """Validation at parsing and the `AtomConfig` view of the generated `AtomGanArguments`."""

    def __post_init__(self):
        if self.atom_tokens < 1:
            raise ValueError(f"--atom_tokens must be >= 1, got {self.atom_tokens}.")
        if self.atom_layer == 0:
            raise ValueError("--atom_layer is 1-based (1 = first hidden layer) or negative from the end; got 0.")
        try:
            self.atom_config  # noqa: B018 - validates every atom setting now, with the library's own messages
        except AtomConfigError as error:
            raise error.respelled("--atom_{}") from None

    @property
    def atom_config(self) -> AtomConfig:
        """The validated `AtomConfig` of these settings (the fields of `NOT_GAN_SETTINGS` keep their defaults)."""
        return AtomConfig(**{name: getattr(self, "atom_" + name) for name in GAN_SETTINGS})


def _atom_gan_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """The GAN's own two settings, then one `atom_<name>` per `AtomConfig` field of `GAN_SETTINGS`, with its type
    (choices as `Literal`), default and help read from `AtomConfig`, so that the two never drift apart."""
    hints = typing.get_type_hints(AtomConfig)
    fields = [
        (
            "atom_layer",
            int,
            field(
                default=-1,
                metadata={"help": "Which generator hidden layer feeds the atom head (1-based; -1 = the last)."},
            ),
        ),
        (
            "atom_tokens",
            int,
            field(
                default=8,
                metadata={"help": "MLP generators: a layer's H activations become this many tokens of H/N features."},
            ),
        ),
    ]
    for spec in dataclasses.fields(AtomConfig):
        if spec.name in GAN_SETTINGS:
            metadata = {"help": spec.metadata["help"]}
            fields.append(("atom_" + spec.name, hints[spec.name], field(default=spec.default, metadata=metadata)))
    return fields


AtomGanArguments = dataclasses.make_dataclass("AtomGanArguments", _atom_gan_fields(), bases=(AtomGanArgumentsMixin,))
AtomGanArguments.__module__ = __name__
AtomGanArguments.__doc__ = """The atom objective on the generator (docs/DESIGN.md, D7, ours): which layer, how many
tokens, and the `hf_atom.AtomConfig` settings as `--atom_<name>` flags (read with `--method atom` only)."""


def resolve_layer(layer: int, num_layers: int) -> int:
    """0-based index of a 1-based (or negative) `--atom_layer` among `num_layers` hidden layers."""
    index = layer - 1 if layer > 0 else num_layers + layer
    if not 0 <= index < num_layers:
        raise ValueError(f"--atom_layer {layer} is out of range for a generator with {num_layers} hidden layers.")
    return index


def pack(samples: torch.Tensor, pack_size: int) -> torch.Tensor:
    """PacGAN packing: (m*B, C, ...) -> (B, m*C, ...), consecutive samples concatenated along the feature axis."""
    if pack_size == 1:
        return samples
    if samples.shape[0] % pack_size:
        raise ValueError(f"{samples.shape[0]} samples cannot be packed by {pack_size}.")
    return samples.reshape(samples.shape[0] // pack_size, pack_size * samples.shape[1], *samples.shape[2:])


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x) - log(1 - D(G(z))) with D = sigmoid(logit), in the stable softplus form."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -log D(G(z)) (Goodfellow et al., 2014)."""
    return F.softplus(-fake_logits).mean()


@dataclass
class GanParts:
    """What a recipe hands to `train_gan`.

    `generator(z, return_hidden=True)` must return `(samples, hidden_list)`; `tokens_fn(hidden_list)` turns the
    chosen layer into atom tokens (B, N, h); `sample_real(n)` and `sample_noise(n)` draw batches on the device;
    `evaluate(generator, step)` returns a metrics dict (called under `torch.no_grad`). `random_streams` are the
    run's own `torch.Generator`s (batches, noise, evaluation draws): checkpoints save them, so a resumed run draws
    what the uninterrupted run would have. `settings` are the recipe's own (data, network) arguments, which a
    resumed run must share.
    """

    generator: nn.Module
    discriminator: nn.Module
    sample_real: Callable[[int], torch.Tensor]
    sample_noise: Callable[[int], torch.Tensor]
    tokens_fn: Callable[[list], torch.Tensor]
    evaluate: Callable[[nn.Module, int], dict]
    token_width: int
    random_streams: dict[str, torch.Generator] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


class GanDivergedError(FloatingPointError):
    """A GAN loss became NaN or infinite: the run stops without writing results or checkpoints from that state."""


def train_gan(parts: GanParts, args: GanTrainingArguments, atom_args: AtomGanArguments, accelerator) -> dict:
    """Alternating D / G updates (one each per step) for `args.max_steps` steps. Returns the run's results dict
    (final metrics, history, wall time, atom statistics, settings); saves checkpoints along the way and resumes from
    one with `args.resume_from_checkpoint`.

    Raises `GanDivergedError` when a loss is no longer finite. That is checked on the device at every step (no host
    synchronisation) and read where the loop reads the host anyway: every 200 steps, before an evaluation, a
    checkpoint and the results, so nothing is ever written from a diverged state.
    """
    from tqdm.auto import tqdm

    generator, discriminator = parts.generator, parts.discriminator
    regularizer = None
    if args.method == "atom":
        from hf_atom import AtomRegularizer

        # A forked RNG for the head's init: the noise and batches of the run then equal the `gan` control's at the
        # same seed, so `atom` vs `gan` is a paired comparison (and lambda = 0 reproduces the control exactly).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed + 1_000_003)
            regularizer = AtomRegularizer(hidden_size=parts.token_width, config=atom_args.atom_config)
    g_params = list(generator.parameters()) + (list(regularizer.parameters()) if regularizer is not None else [])
    betas = (args.adam_beta1, args.adam_beta2)
    g_opt = torch.optim.Adam(g_params, lr=args.learning_rate, betas=betas)
    d_opt = torch.optim.Adam(discriminator.parameters(), lr=args.learning_rate, betas=betas)
    if regularizer is not None:
        generator, discriminator, regularizer, g_opt, d_opt = accelerator.prepare(
            generator, discriminator, regularizer, g_opt, d_opt
        )
    else:
        generator, discriminator, g_opt, d_opt = accelerator.prepare(generator, discriminator, g_opt, d_opt)

    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(opt, lambda i: lr_factor(i, args.max_steps, args.lr_scheduler_type))
        for opt in (d_opt, g_opt)
    ]
    settings = run_settings(args, atom_args, parts.settings)
    m = args.effective_pack
    n = args.batch_size * m  # pacgan: B packed inputs of m samples each (as in PacGAN)
    history, atom_rows = [], []  # atom statistics stay on the device until the end: no host sync per step
    first_step, wall_before = 1, 0.0
    resume_path = checkpoint_to_resume(args.output_dir, args.resume_from_checkpoint)
    if resume_path is not None:
        state = load_checkpoint(accelerator, resume_path, settings)
        for scheduler, scheduler_state in zip(schedulers, state["schedulers"]):
            scheduler.load_state_dict(scheduler_state)
        for name, stream in parts.random_streams.items():
            stream.set_state(state["random_streams"][name])
        history = json.loads(state["history"])
        atom_rows = [dict(zip(state["atom_rows"], row)) for row in zip(*state["atom_rows"].values())]
        first_step, wall_before = state["step"] + 1, state["train_wall_s"]
        d_loss, g_loss = state["losses"].to(accelerator.device).unbind()  # the last step's, if none is left
        if accelerator.is_main_process:
            print(f"Resuming from {resume_path} at step {state['step']} of {args.max_steps}.", flush=True)
    elif args.overwrite_output_dir and accelerator.is_main_process:
        clear_earlier_run(args.output_dir)
    accelerator.wait_for_everyone()

    # Steps since the start of this launch whose losses were all finite (on the device; read at the checks).
    healthy = torch.ones((), dtype=torch.long, device=accelerator.device)
    healthy_steps = torch.zeros((), dtype=torch.long, device=accelerator.device)

    def check_finite(step: int) -> None:
        # the one host read of a check; the least over processes, so that every process stops at the same check
        done = int(accelerator.gather(healthy_steps[None]).min())
        if done < step - first_step + 1:
            raise GanDivergedError(
                f"Training diverged: a loss became NaN or infinite at step {first_step + done} (--learning_rate "
                f"{args.learning_rate}, --method {args.method}). No results or checkpoints were written from that "
                "state. Lower --learning_rate (or --atom_weight), and start again with --overwrite_output_dir true."
            )

    start = time.perf_counter()
    bar = tqdm(
        range(first_step, args.max_steps + 1),
        disable=args.disable_tqdm or not accelerator.is_local_main_process,
        mininterval=5.0,
        desc=f"{args.method}",
    )
    for step in bar:
        # Discriminator: real vs (detached) fake.
        real = parts.sample_real(n)
        with torch.no_grad():
            fake = generator(parts.sample_noise(n))
        d_loss = discriminator_loss(discriminator(pack(real, m)), discriminator(pack(fake, m)))
        d_opt.zero_grad(set_to_none=True)
        accelerator.backward(d_loss)
        d_opt.step()

        # Generator: non-saturating loss (+ the atom objective on its hidden features).
        fake, hidden = generator(parts.sample_noise(n), return_hidden=True)
        g_loss = generator_loss(discriminator(pack(fake, m)))
        objective = g_loss
        if regularizer is not None:
            try:
                out = regularizer(parts.tokens_fn(hidden))
            except NonFiniteInputError as error:  # the loss's input check: a diverged generator's features
                raise GanDivergedError(
                    f"Training diverged at step {step}: the generator's features are no longer finite ({error}). "
                    "Lower --learning_rate or --atom_weight, and start again with --overwrite_output_dir true."
                ) from error
            objective = g_loss + out.objective
            atom_rows.append(out.statistics())
        g_opt.zero_grad(set_to_none=True)
        accelerator.backward(objective)
        g_opt.step()
        for scheduler in schedulers:
            scheduler.step()
        healthy.mul_(torch.isfinite(d_loss) & torch.isfinite(objective))
        healthy_steps.add_(healthy)

        show = step % 200 == 0
        evaluate = bool(args.eval_steps) and step % args.eval_steps == 0 and step < args.max_steps
        save = bool(args.save_steps) and step % args.save_steps == 0
        if show or evaluate or save:  # the host is read here anyway: nothing is shown or written from a NaN state
            check_finite(step)
        if show:
            bar.set_postfix(d=f"{d_loss.item():.3f}", g=f"{g_loss.item():.3f}", refresh=False)
        if evaluate:
            history.append(_evaluate(parts, accelerator.unwrap_model(generator), step))
        if save:
            state = {
                "step": step,
                "schedulers": [scheduler.state_dict() for scheduler in schedulers],
                "random_streams": {name: stream.get_state() for name, stream in parts.random_streams.items()},
                "history": json.dumps(history),
                "atom_rows": {name: torch.stack([row[name] for row in atom_rows]) for name in atom_rows[0]}
                if atom_rows
                else {},
                "losses": torch.stack([d_loss.detach(), g_loss.detach()]),
                "train_wall_s": wall_before + time.perf_counter() - start,
                "settings": settings,
            }
            save_checkpoint(accelerator, args.output_dir, step, state)
    wall = wall_before + time.perf_counter() - start
    bar.close()
    check_finite(args.max_steps)

    final = _evaluate(parts, accelerator.unwrap_model(generator), args.max_steps)
    history.append(final)
    results = {
        "final": final,
        "history": history,
        "train_wall_s": round(wall, 2),
        "final_d_loss": float(d_loss.item()),
        "final_g_loss": float(g_loss.item()),
        "atom_stats_mean": _column_means(atom_rows),
        "args": asdict(args),
        "atom_args": asdict(atom_args) if args.method == "atom" else None,
        "settings": settings,
        "resumed_from": resume_path,
        "num_processes": accelerator.num_processes,
        "device": str(accelerator.device),
        "torch_threads": torch.get_num_threads(),
    }
    if accelerator.is_main_process:
        save_networks(
            args.output_dir,
            accelerator.unwrap_model(generator),
            accelerator.unwrap_model(discriminator),
            accelerator.unwrap_model(regularizer) if regularizer is not None else None,
        )
    return results


def _evaluate(parts: GanParts, generator: nn.Module, step: int) -> dict:
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        metrics = parts.evaluate(generator, step)
    generator.train(was_training)
    return {"step": step, **metrics}


def save_networks(output_dir: str, generator: nn.Module, discriminator: nn.Module, regularizer=None) -> None:
    """Final weights: `generator/` and `discriminator/` via `save_pretrained` (config.json + safetensors), and the
    atom regularizer's head (`atom_regularizer.safetensors`) when there is one."""
    generator.save_pretrained(os.path.join(output_dir, "generator"))
    discriminator.save_pretrained(os.path.join(output_dir, "discriminator"))
    if regularizer is not None:
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous() for k, v in regularizer.state_dict().items()}
        save_file(state, os.path.join(output_dir, "atom_regularizer.safetensors"))


def write_json(path: str, payload: dict[str, Any]) -> str:
    """Writes `payload` as JSON whole or not at all (a run killed while writing leaves no torn file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def make_accelerator(args: GanTrainingArguments):
    """An `Accelerator` (CPU if asked), seeded per process, with the thread count applied."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    accelerator = Accelerator(cpu=args.cpu)
    # Same weights everywhere (DDP broadcasts them anyway), different noise and batches per process.
    set_seed(args.seed, device_specific=True)
    return accelerator


def _column_means(rows: list[dict[str, torch.Tensor]]) -> dict | None:
    """Mean over steps of each atom statistic (`hf_atom.regularizer.ATOM_STATISTICS`), one host sync."""
    if not rows:
        return None
    means = torch.stack([torch.stack([row[name] for row in rows]).mean() for name in ATOM_STATISTICS])
    return dict(zip(ATOM_STATISTICS, means.tolist()))
