"""GANs on the 2D ring (8 Gaussians) and 2D grid (25 Gaussians): `gan`, `atom` and `pacgan` on the same networks.

Networks, data and metrics follow the PacGAN authors' protocol (PacGAN, Lin et al. 2018, and its authors' released configuration; see docs/GENERATION.md): generator MLP 2 -> 400 x 4 -> 2
with BatchNorm + ReLU and no hidden biases, discriminator of 3 LinearMaxout layers (200 units, 5 pieces), Adam
(lr 1e-4, beta1 0.8), batch 100, a 100,000-point training set, 2,500 generated points scored at the end.
The budget (steps) is reduced from their 400k; see docs/GENERATION.md.

    python recipes/gan_mixture.py --dataset grid --method atom --atom_weight 0.1 --max_steps 10000 \
        --seed 0 --num_threads 1 --output_dir outputs/gan/grid_atom_s0
    accelerate launch recipes/gan_mixture.py ...   # same flags
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from _arguments import parse_arguments
from _gan_checkpoints import finished_results, run_settings
from _gan_common import (
    AtomGanArguments,
    GanParts,
    GanTrainingArguments,
    data_seed,
    make_accelerator,
    resolve_layer,
    train_gan,
    write_json,
)
from _gan_networks import MixtureDiscriminator, MixtureGenerator
from torch import nn

from hf_atom import mlp_tokens
from hf_atom.metrics import MIXTURES, mixture_mode_metrics, mixture_spec, sample_mixture


@dataclass
class MixtureArguments:
    """Which mixture, and the sizes of its training and evaluation sets."""

    dataset: str = field(default="grid", metadata={"help": "`ring` (8 modes) or `grid` (25 modes)."})
    num_train: int = field(default=100_000, metadata={"help": "Size of the fixed training set (protocol: 100,000)."})
    num_eval_samples: int = field(default=2_500, metadata={"help": "Generated points scored (protocol: 2,500)."})
    hidden_size: int = field(default=400)
    num_hidden_layers: int = field(default=4)
    disc_units: int = field(default=200, metadata={"help": "Maxout units per discriminator layer (protocol: 200)."})
    disc_pieces: int = field(default=5, metadata={"help": "Maxout pieces per unit (protocol: 5)."})
    plot: bool = field(default=True, metadata={"help": "Save samples.png: generated vs real points."})

    def __post_init__(self):
        if self.dataset not in MIXTURES:
            raise ValueError(f"--dataset must be one of {MIXTURES}, got {self.dataset!r}.")
        for name in ("num_train", "num_eval_samples", "hidden_size", "num_hidden_layers", "disc_units", "disc_pieces"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")


def data_settings(data_args: MixtureArguments) -> dict:
    """The data and network settings a resumed run must share (the plot flag changes nothing trained)."""
    return {name: value for name, value in asdict(data_args).items() if name != "plot"}


def build_parts(data_args: MixtureArguments, args: GanTrainingArguments, atom_args: AtomGanArguments, device):
    """The networks, samplers and evaluation of one run; also returns the mixture, the training set and a dict
    that holds the last evaluated samples (for the plot)."""
    spec = mixture_spec(data_args.dataset)
    cpu_gen = torch.Generator().manual_seed(args.seed)
    train_set = sample_mixture(spec, data_args.num_train, cpu_gen).to(device)
    generator = MixtureGenerator(2, data_args.hidden_size, data_args.num_hidden_layers)
    discriminator = MixtureDiscriminator(2 * args.effective_pack, data_args.disc_units, data_args.disc_pieces)

    layer = resolve_layer(atom_args.atom_layer, data_args.num_hidden_layers)
    eval_gen = torch.Generator(device="cpu").manual_seed(10_000 + args.seed)

    # The run's own stream of batches and noise, seeded from this process's seed: `gan_ensemble.py` replays it
    # member by member, so ensemble member s equals this run with seed s.
    data_gen = torch.Generator(device=device).manual_seed(data_seed(torch.initial_seed()))

    def sample_real(n: int) -> torch.Tensor:
        return train_set[torch.randint(0, train_set.shape[0], (n,), device=device, generator=data_gen)]

    def sample_noise(n: int) -> torch.Tensor:
        return torch.randn(n, 2, device=device, generator=data_gen)

    def evaluate(gen: nn.Module, step: int) -> dict:
        z = torch.randn(data_args.num_eval_samples, 2, generator=eval_gen).to(device)
        samples = gen(z).float().cpu()
        last_samples["samples"] = samples
        return mixture_mode_metrics(samples, spec)

    def tokens_fn(hidden: list) -> torch.Tensor:
        return mlp_tokens(hidden[layer], atom_args.atom_tokens)

    last_samples = {}

    return (
        GanParts(
            generator=generator,
            discriminator=discriminator,
            sample_real=sample_real,
            sample_noise=sample_noise,
            tokens_fn=tokens_fn,
            evaluate=evaluate,
            token_width=data_args.hidden_size // atom_args.atom_tokens,
            random_streams={"batches_and_noise": data_gen, "evaluation": eval_gen},
            settings=data_settings(data_args),
        ),
        spec,
        train_set,
        last_samples,
    )


def plot_samples(path: str, samples: torch.Tensor, real: torch.Tensor, spec, title: str) -> None:
    """Scatter of generated points over real points and the centres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:blue", alpha=0.3, label="real")
    ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
    ax.scatter(spec.centres[:, 0], spec.centres[:, 1], s=12, marker="x", c="black", label="centres")
    lim = 1.6 if spec.name == "ring" else 5.5
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.legend(loc="upper right", fontsize=6, markerscale=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse(argv: Sequence[str] | None = None):
    data_args, args, atom_args = parse_arguments((MixtureArguments, GanTrainingArguments, AtomGanArguments), argv)
    # Checks that need two argument groups: still at parsing, before any data or network is built.
    resolve_layer(atom_args.atom_layer, data_args.num_hidden_layers)
    if args.method == "atom" and data_args.hidden_size % atom_args.atom_tokens:
        raise ValueError(
            f"--atom_tokens {atom_args.atom_tokens} must divide --hidden_size {data_args.hidden_size} "
            "(each token gets hidden_size / atom_tokens features); e.g. 1, 2, 4, 5, 8, 10, 16, 20, 25, 40 for 400."
        )
    return data_args, args, atom_args


def main(argv: Sequence[str] | None = None) -> dict:
    data_args, args, atom_args = parse(argv)
    finished = finished_results(args, run_settings(args, atom_args, data_settings(data_args)))
    if finished is not None:
        print(f"{args.output_dir} holds this run, finished: nothing to train (results.json kept).")
        return finished
    accelerator = make_accelerator(args)
    parts, spec, train_set, last = build_parts(data_args, args, atom_args, accelerator.device)
    results = train_gan(parts, args, atom_args, accelerator)
    results.update(dataset=data_args.dataset, data_args=vars(data_args))
    if accelerator.is_main_process:
        final = results["final"]
        label = f"{data_args.dataset} {args.method} seed {args.seed}"
        print(
            f"[{label}] modes {final['modes']}/{spec.num_modes}  high quality {100 * final['high_quality']:.1f} %  "
            f"reverse KL {final['reverse_kl']:.3f}  train wall {results['train_wall_s']:.1f} s"
        )
        if data_args.plot:
            samples = last["samples"]
            title = f"{label}: {final['modes']} modes, {100 * final['high_quality']:.0f} % HQ, rKL {final['reverse_kl']:.2f}"
            plot_samples(os.path.join(args.output_dir, "samples.png"), samples, train_set[:2500].cpu(), spec, title)
        write_json(os.path.join(args.output_dir, "results.json"), results)
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main()
