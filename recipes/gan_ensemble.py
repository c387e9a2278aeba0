"""Many runs of the 2D-mixture GAN benchmark in one program: an ensemble of S independent (G, D) pairs.

Every member is one run of `gan_mixture.py` (same networks, data, optimiser and metrics) with its own seed, method
and lambda: its parameters are a slice of stacked tensors (S, ...), its BatchNorm statistics and Adam moments are its
own (both are per element), and its batches and noise come from its own generator. So member s equals the single run
`gan_mixture.py --seed s` to float tolerance (tests/test_gan_ensemble.py, >= 100 steps, every method). On a GPU the
stacking is what removes the launch overhead of 100 tiny runs; on a CPU the gain comes from bf16 and from skipping
the discriminator's weight gradients in the generator step.

    python recipes/gan_ensemble.py --datasets grid,ring --methods gan,atom:0.1,atom:1 --seeds 0-9 \
        --max_steps 20000 --learning_rate 1e-3 --adam_beta1 0.5 --lr_scheduler_type linear \
        --eval_steps 1000 --save_steps 1000 --output_dir outputs/gan_ensemble/main

Members must share one network shape: `pacgan:m` (the discriminator sees m samples) cannot share an ensemble with
`gan`/`atom` members or with another m. The atom objective of each member runs under `torch.func.vmap` over the
library's `AtomRegularizer` (one head per member). With `--atom_memory_size M` every atom member has its own
cross-batch memory (D9), one of the stacked queues of an `AtomMemory(groups=S)`: read inside the vmap, pushed after
it, saved in the checkpoint, exactly the single run's queue. A run that is cut resumes from `checkpoint.pt` in
`--output_dir` (`--resume`); each member's results are written to `runs/<member>.json` when the ensemble finishes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import torch
from _arguments import parse_arguments
from _gan_common import AtomGanArguments, data_seed, lr_factor, resolve_layer, write_json
from _gan_networks import MixtureDiscriminator, MixtureGenerator
from torch import nn
from torch.nn import functional as F

from hf_atom import AtomRegularizer
from hf_atom.loss import AtomSummaries
from hf_atom.memory import AtomMemory
from hf_atom.metrics import MIXTURES, mixture_mode_metrics, mixture_spec, sample_mixture
from hf_atom.regularizer import ATOM_STATISTICS

ENSEMBLE_METHODS = ("gan", "atom", "pacgan")
PRECISIONS = ("fp32", "bf16")
RNG_MODES = ("per_member", "shared")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class EnsembleMember:
    """One run of the ensemble: dataset, method, seed, lambda and memory size (atom) and pack size (pacgan)."""

    dataset: str
    method: str
    seed: int
    atom_weight: float = 0.0
    pack_size: int = 1
    memory_size: int = 0

    @property
    def name(self) -> str:
        atom = f"atom_w{self.atom_weight:g}" + (f"_m{self.memory_size}" if self.memory_size else "")
        tag = {"gan": "gan", "atom": atom, "pacgan": f"pacgan{self.pack_size}"}[self.method]
        return f"{self.dataset}__{tag}__s{self.seed}"


def parse_methods(text: str) -> list[tuple[str, float, int]]:
    """`"gan,atom:0.1,pacgan:2"` -> [(method, atom_weight, pack_size)]."""
    parsed = []
    for item in (part.strip() for part in text.split(",")):
        method, _, value = item.partition(":")
        if method not in ENSEMBLE_METHODS:
            raise ValueError(
                f"--methods: unknown method {method!r} in {text!r}; use {ENSEMBLE_METHODS}, e.g. atom:0.1."
            )
        if method == "gan":
            if value:
                raise ValueError(f"--methods: `gan` takes no value, got {item!r}.")
            parsed.append(("gan", 0.0, 1))
        elif method == "atom":
            try:
                weight = float(value) if value else 0.1
            except ValueError:
                raise ValueError(f"--methods: lambda of {item!r} is not a number.") from None
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"--methods: lambda of {item!r} must be finite and >= 0.")
            parsed.append(("atom", weight, 1))
        else:
            if not value.isdigit() or int(value) < 2:
                raise ValueError(f"--methods: pacgan needs a pack size >= 2, e.g. pacgan:2, got {item!r}.")
            parsed.append(("pacgan", 0.0, int(value)))
    return parsed


def parse_seeds(text: str) -> list[int]:
    """`"0-9"`, `"0,3,5"` or `"2"` -> sorted distinct non-negative seeds."""
    seeds: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            low, _, high = part.partition("-")
            seeds.update(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        raise ValueError(f"--seeds must look like 0-9 or 0,1,2 (non-negative integers), got {text!r}.") from None
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds must name at least one non-negative seed, got {text!r}.")
    return sorted(seeds)


@dataclass
class EnsembleArguments:
    """Which runs share the program, and how they are trained (the same flags as `gan_mixture.py` where shared)."""

    output_dir: str = field(metadata={"help": "checkpoint.pt, runs/<member>.json, summary.json."})
    datasets: str = field(default="grid", metadata={"help": "Comma list of `ring`, `grid`."})
    methods: str = field(default="gan", metadata={"help": "Comma list: gan, atom:<lambda>, pacgan:<m> (one shape)."})
    seeds: str = field(default="0", metadata={"help": "Seeds of every (dataset, method): 0-9 or 0,1,2."})
    max_steps: int = field(default=10_000)
    batch_size: int = field(default=100)
    learning_rate: float = field(default=1e-4)
    lr_scheduler_type: str = field(default="constant", metadata={"help": "`constant` or `linear` (decay to 0)."})
    adam_beta1: float = field(default=0.8)
    adam_beta2: float = field(default=0.999)
    eval_steps: int = field(default=0, metadata={"help": "Evaluate every member every this many steps (0: end only)."})
    save_steps: int = field(default=0, metadata={"help": "Write checkpoint.pt every this many steps (0: never)."})
    resume: bool = field(default=False, metadata={"help": "Continue from output_dir/checkpoint.pt (same settings)."})
    precision: str = field(
        default="fp32",
        metadata={"help": "`fp32`, or `bf16` matmuls and activations (fp32 parameters, Adam and BatchNorm stats)."},
    )
    rng: str = field(
        default="per_member",
        metadata={"help": "`per_member`: each member replays its single run's stream (exact); `shared`: one draw."},
    )
    cuda_graph: bool = field(
        default=False,
        metadata={"help": "CUDA only: capture one training step as a CUDA graph and replay it (no launch overhead)."},
    )
    num_train: int = field(default=100_000)
    num_eval_samples: int = field(default=2_500)
    hidden_size: int = field(default=400)
    num_hidden_layers: int = field(default=4)
    disc_units: int = field(default=200)
    disc_pieces: int = field(default=5)
    num_threads: int | None = field(default=None)
    device: str = field(default="auto", metadata={"help": "`auto` (cuda if present), `cpu` or `cuda`."})

    def __post_init__(self):
        self.members = build_members(self.datasets, self.methods, self.seeds)
        for name in ("max_steps", "batch_size", "num_train", "num_eval_samples", "hidden_size", "num_hidden_layers",
                     "disc_units", "disc_pieces"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.batch_size < 2:
            raise ValueError("--batch_size must be >= 2: the generator's BatchNorm needs two samples.")
        for name in ("eval_steps", "save_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0 (0 = off), got {getattr(self, name)}.")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning_rate must be a finite number > 0, got {self.learning_rate}.")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"--{name} must be in [0, 1), got {getattr(self, name)}.")
        for name, choices in (("lr_scheduler_type", ("constant", "linear")), ("precision", PRECISIONS),
                              ("rng", RNG_MODES), ("device", ("auto", "cpu", "cuda"))):  # fmt: skip
            if getattr(self, name) not in choices:
                raise ValueError(f"--{name} must be one of {choices}, got {getattr(self, name)!r}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"--num_threads must be >= 1, got {self.num_threads}.")
        if self.cuda_graph and self.rng != "shared":
            raise ValueError("--cuda_graph needs --rng shared: a graph replays the default CUDA generator only.")

    @property
    def pack_size(self) -> int:
        return self.members[0].pack_size

    def settings(self) -> dict:
        """What a checkpoint must agree with to be resumed (everything but the output folder and resume flags)."""
        skip = {"output_dir", "resume", "num_threads", "device", "cuda_graph"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def build_members(datasets: str, methods: str, seeds: str) -> list[EnsembleMember]:
    names = [d.strip() for d in datasets.split(",")]
    for name in names:
        if name not in MIXTURES:
            raise ValueError(f"--datasets: unknown mixture {name!r}; use {MIXTURES}.")
    parsed = parse_methods(methods)
    packs = {pack for _, _, pack in parsed}
    if len(packs) > 1:
        raise ValueError(
            f"--methods {methods!r} mixes discriminator input widths (pack sizes {sorted(packs)}): members of one "
            "ensemble share one network shape. Run pacgan:m in its own ensemble."
        )
    members = [
        EnsembleMember(dataset, method, seed, weight, pack)
        for dataset in names
        for method, weight, pack in parsed
        for seed in parse_seeds(seeds)
    ]
    duplicates = {m.name for m in members if sum(n.name == m.name for n in members) > 1}
    if duplicates:
        raise ValueError(f"--datasets/--methods/--seeds name a run twice: {sorted(duplicates)}.")
    return members


class MixtureGanEnsemble(nn.Module):
    """S (generator, discriminator[, atom head]) triples as stacked tensors, built from the single-run modules.

    Args:
        members (`list[EnsembleMember]`): one entry per run; all with the same pack size.
        args (`EnsembleArguments`): network sizes.
        atom_args (`AtomGanArguments`): atom settings shared by the atom members (lambda is per member).
    """

    def __init__(self, members: Sequence[EnsembleMember], args: EnsembleArguments, atom_args: AtomGanArguments):
        super().__init__()
        self.members = list(members)
        self.num_hidden_layers = args.num_hidden_layers
        self.disc_units, self.disc_pieces = args.disc_units, args.disc_pieces
        self.atom_layer = resolve_layer(atom_args.atom_layer, args.num_hidden_layers)
        self.atom_tokens = atom_args.atom_tokens
        generators, discriminators, heads = [], [], []
        # The ensemble keeps the members' queues (stacked, below), so the heads' own objective has none.
        head_config = atom_args.atom_config.replace(memory_size=0)
        for member in self.members:
            # Exactly the single run's initialisation: global seed, then G, then D; the head from a forked stream.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(member.seed)
                generators.append(MixtureGenerator(2, args.hidden_size, args.num_hidden_layers))
                discriminators.append(MixtureDiscriminator(2 * member.pack_size, args.disc_units, args.disc_pieces))
            if member.method == "atom":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(member.seed + 1_000_003)
                    heads.append(AtomRegularizer(hidden_size=args.hidden_size // self.atom_tokens, config=head_config))

        def stack(tensors, transpose=False) -> nn.Parameter:
            return nn.Parameter(
                torch.stack([t.detach().t() if transpose else t.detach() for t in tensors]).contiguous()
            )

        # Generator: weights as (S, in, out) for x @ W; BatchNorm affine and running statistics per member.
        self.g_weights = nn.ParameterList(
            stack([g.hidden[i][0].weight for g in generators], transpose=True) for i in range(self.num_hidden_layers)
        )
        self.g_bn_weights = nn.ParameterList(
            stack([g.hidden[i][1].weight for g in generators]) for i in range(self.num_hidden_layers)
        )
        self.g_bn_biases = nn.ParameterList(
            stack([g.hidden[i][1].bias for g in generators]) for i in range(self.num_hidden_layers)
        )
        for i in range(self.num_hidden_layers):
            self.register_buffer(f"g_running_mean_{i}", torch.stack([g.hidden[i][1].running_mean for g in generators]))
            self.register_buffer(f"g_running_var_{i}", torch.stack([g.hidden[i][1].running_var for g in generators]))
        self.g_out_weight = stack([g.out.weight for g in generators], transpose=True)
        self.g_out_bias = stack([g.out.bias for g in generators])
        self.bn_momentum, self.bn_eps = generators[0].hidden[0][1].momentum, generators[0].hidden[0][1].eps
        # Discriminator: maxout layers as (S, in, pieces * units), piece-major (the single run's features are
        # unit-major, u * pieces + k): the max over pieces is then over a middle axis, which vectorises on a CPU.
        num_layers = len(discriminators[0].layers)
        order = (
            torch.arange(args.disc_units * args.disc_pieces).view(args.disc_units, args.disc_pieces).t().reshape(-1)
        )
        self.d_weights = nn.ParameterList(
            stack([d.layers[i].linear.weight[order] for d in discriminators], transpose=True)
            for i in range(num_layers)
        )
        self.d_biases = nn.ParameterList(
            stack([d.layers[i].linear.bias[order] for d in discriminators]) for i in range(num_layers)
        )
        self.d_out_weight = stack([d.out.weight for d in discriminators], transpose=True)
        self.d_out_bias = stack([d.out.bias for d in discriminators])
        # Atom heads of the atom members, run per member under vmap over one template regularizer.
        self.atom_index = [i for i, m in enumerate(self.members) if m.method == "atom"]
        # A device tensor, not a Python list: indexing with a list copies it to the device on every call, which a
        # CUDA graph cannot capture.
        self.register_buffer("atom_index_tensor", torch.tensor(self.atom_index, dtype=torch.long), persistent=False)
        self.register_buffer(
            "atom_weights", torch.tensor([self.members[i].atom_weight for i in self.atom_index], dtype=torch.float32)
        )
        if heads:
            self.atom_template = heads[0]
            self.atom_params = nn.ParameterDict(
                {
                    k.replace(".", "__"): stack([dict(h.named_parameters())[k] for h in heads])
                    for k, _ in heads[0].named_parameters()
                }
            )
            for param in self.atom_template.parameters():
                param.requires_grad_(False)
        # One cross-batch memory per atom member (D9), in state_dict, so checkpoint.pt carries the queues.
        config = atom_args.atom_config
        self.atom_memory = (
            AtomMemory(config.memory_size, config.memory_warmup_steps, groups=len(heads))
            if heads and config.memory_size
            else None
        )

    # ---------------------------------------------------------------------------------------------------- networks

    def generator_parameters(self) -> list[nn.Parameter]:
        params = [*self.g_weights, *self.g_bn_weights, *self.g_bn_biases, self.g_out_weight, self.g_out_bias]
        return params + (list(self.atom_params.values()) if self.atom_index else [])

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.d_weights, *self.d_biases, self.d_out_weight, self.d_out_bias]

    def _batch_norm(self, x: torch.Tensor, i: int, training: bool) -> torch.Tensor:
        # (S, B, F) -> (B, S * F): per-member BatchNorm is per-feature BatchNorm over S * F features (same kernel).
        members, batch, width = x.shape
        flat = x.transpose(0, 1).reshape(batch, members * width)
        out = F.batch_norm(
            flat,
            getattr(self, f"g_running_mean_{i}").view(-1),
            getattr(self, f"g_running_var_{i}").view(-1),
            self.g_bn_weights[i].view(-1),
            self.g_bn_biases[i].view(-1),
            training=training,
            momentum=self.bn_momentum,
            eps=self.bn_eps,
        )
        return out.view(batch, members, width).transpose(0, 1)

    def generate(
        self, z: torch.Tensor, training: bool = True, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """z (S, B, 2) -> samples (S, B, 2) and the hidden activations [(S, B, H)] of every layer.

        `dtype=torch.bfloat16` runs the matmuls and activations in bf16 (BatchNorm statistics and parameters stay
        float32): each weight is cast once per call, activations are never cast back and forth as under autocast.
        """
        hidden, x = [], z if dtype is None else z.to(dtype)
        for i, weight in enumerate(self.g_weights):
            x = torch.relu(self._batch_norm(torch.bmm(x, _cast(weight, dtype)), i, training))
            hidden.append(x)
        return torch.baddbmm(_cast(self.g_out_bias, dtype)[:, None, :], x, _cast(self.g_out_weight, dtype)), hidden

    def discriminate(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """x (S, B, 2 m) -> logits (S, B)."""
        members, batch = x.shape[:2]
        x = x if dtype is None else x.to(dtype)
        for weight, bias in zip(self.d_weights, self.d_biases):
            x = torch.baddbmm(_cast(bias, dtype)[:, None, :], x, _cast(weight, dtype))
            # max (not amax): its backward scatters to the argmax instead of comparing and counting ties
            x = x.view(members, batch, self.disc_pieces, self.disc_units).max(dim=2).values
        return torch.baddbmm(_cast(self.d_out_bias, dtype)[:, None, :], x, _cast(self.d_out_weight, dtype)).squeeze(-1)

    def atom_objective(self, hidden: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum over atom members of lambda_s * (L_A + charge term), and their statistics (S_atom, len(ATOM_STATISTICS))."""
        from torch.func import functional_call, vmap

        features = hidden[self.atom_layer].index_select(0, self.atom_index_tensor)  # (S_atom, B, H)
        tokens = features.reshape(*features.shape[:2], self.atom_tokens, -1)  # = mlp_tokens per member
        params = {k.replace("__", "."): v for k, v in self.atom_params.items()}

        memory = self.atom_memory
        active = memory is not None and memory.mu is not None and memory.is_active()
        stored = memory.summaries(tokens.device).as_tuple() if active else ()

        def one_member(member_params, member_tokens, *member_memory):
            held = AtomSummaries(*member_memory) if member_memory else None
            kwargs = {"weight": 1.0, "memory_summaries": held}
            out = functional_call(self.atom_template, member_params, (member_tokens,), kwargs)
            stats = out.statistics()
            return (
                out.objective,
                torch.stack([stats[name] for name in ATOM_STATISTICS]),
                out.parts.summaries.as_tuple(),
            )

        energies, stats, summaries = vmap(one_member)(params, tokens, *stored)
        if memory is not None:  # after this step's pairs, as a single run's memory pushes (each member its own queue)
            memory.push(AtomSummaries(*summaries))
        return (self.atom_weights * energies).sum(), stats

    @torch.no_grad()
    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member `index`'s generator weights in `MixtureGenerator`'s layout (for tests and export)."""
        state = {}
        for i in range(self.num_hidden_layers):
            state[f"hidden.{i}.0.weight"] = self.g_weights[i][index].t()
            state[f"hidden.{i}.1.weight"] = self.g_bn_weights[i][index]
            state[f"hidden.{i}.1.bias"] = self.g_bn_biases[i][index]
            state[f"hidden.{i}.1.running_mean"] = getattr(self, f"g_running_mean_{i}")[index]
            state[f"hidden.{i}.1.running_var"] = getattr(self, f"g_running_var_{i}")[index]
        state["out.weight"] = self.g_out_weight[index].t()
        state["out.bias"] = self.g_out_bias[index]
        return state


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor if dtype is None else tensor.to(dtype)


def pack_members(samples: torch.Tensor, pack_size: int) -> torch.Tensor:
    """PacGAN packing per member: (S, m * B, 2) -> (S, B, 2 m), as `_gan_common.pack` does for one run."""
    if pack_size == 1:
        return samples
    return samples.reshape(samples.shape[0], samples.shape[1] // pack_size, pack_size * samples.shape[2])


class MemberStreams:
    """The batches and noise of every member: its own generator (`per_member`, exact: member s replays the stream of
    `gan_mixture.py --seed s`) or one draw for all (`shared`: one kernel per draw, what a GPU wants).

    `default_generator=True` (CUDA graphs) draws from the device's default generator, which graph replays advance.
    """

    def __init__(self, members: Sequence[EnsembleMember], mode: str, device: torch.device, default_generator=False):
        self.mode, self.num_members, self.device = mode, len(members), device
        seeds = [data_seed(m.seed) for m in members]
        if default_generator:
            torch.cuda.manual_seed(seeds[0])
            self.generators = [None]
        else:
            count = 1 if mode == "shared" else len(members)
            self.generators = [torch.Generator(device=device).manual_seed(seeds[i]) for i in range(count)]

    def randint(self, high: int, n: int) -> torch.Tensor:
        if self.mode == "shared":
            return torch.randint(0, high, (self.num_members, n), device=self.device, generator=self.generators[0])
        return torch.stack([torch.randint(0, high, (n,), device=self.device, generator=g) for g in self.generators])

    def randn(self, n: int) -> torch.Tensor:
        if self.mode == "shared":
            return torch.randn(self.num_members, n, 2, device=self.device, generator=self.generators[0])
        return torch.stack([torch.randn(n, 2, device=self.device, generator=g) for g in self.generators])

    def state(self) -> list[torch.Tensor]:
        if self.generators == [None]:
            return [torch.cuda.get_rng_state(self.device)]
        return [g.get_state() for g in self.generators]

    def load(self, states: list[torch.Tensor]) -> None:
        if self.generators == [None]:
            torch.cuda.set_rng_state(states[0], self.device)
            return
        for g, s in zip(self.generators, states):
            g.set_state(s)


def _softplus_mean(logits: torch.Tensor) -> torch.Tensor:
    """Per-member mean of softplus(logits) (S,), in float32 at least (bf16 logits)."""
    return F.softplus(logits.float() if logits.element_size() < 4 else logits).mean(dim=1)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible; use --device cpu (or auto).")
    return torch.device(name)


def train_ensemble(args: EnsembleArguments, atom_args: AtomGanArguments, log=print) -> dict:
    """Trains every member for `args.max_steps` steps (one D and one G update each), evaluating every
    `eval_steps`, checkpointing every `save_steps`; writes `runs/<member>.json` and returns the summary."""
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    device = resolve_device(args.device)
    use_graph = args.cuda_graph and device.type == "cuda"
    os.makedirs(args.output_dir, exist_ok=True)
    checkpoint_path = os.path.join(args.output_dir, CHECKPOINT)
    if os.path.exists(checkpoint_path) and not args.resume:
        raise ValueError(f"{checkpoint_path} exists: pass --resume to continue it, or choose a new --output_dir.")
    members = args.members
    ensemble = MixtureGanEnsemble(members, args, atom_args).to(device)
    specs = [mixture_spec(m.dataset) for m in members]
    train_sets = torch.stack(
        [
            sample_mixture(spec, args.num_train, torch.Generator().manual_seed(m.seed))
            for m, spec in zip(members, specs)
        ]
    ).to(device)
    eval_gens = [torch.Generator().manual_seed(10_000 + m.seed) for m in members]
    streams = MemberStreams(members, args.rng, device, default_generator=use_graph)
    # Under a CUDA graph the learning rate is a device tensor that the schedule fills between replays.
    lr = torch.tensor(args.learning_rate, device=device) if use_graph else args.learning_rate
    # fused: one pass over each stacked tensor instead of ~8 (Adam was a fifth of a CPU step); the same formula.
    adam = {"lr": lr, "betas": (args.adam_beta1, args.adam_beta2), "capturable": use_graph, "fused": True}
    g_opt = torch.optim.Adam(ensemble.generator_parameters(), **adam)
    d_opt = torch.optim.Adam(ensemble.discriminator_parameters(), **adam)
    history: list[list[dict]] = [[] for _ in members]
    start_step, wall_before = 0, 0.0
    atom_sum = torch.zeros(len(ensemble.atom_index), len(ATOM_STATISTICS), device=device)
    if args.resume and os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state["settings"] != args.settings():
            changed = sorted(k for k in args.settings() if state["settings"].get(k) != args.settings()[k])
            raise ValueError(
                f"{checkpoint_path} was written with other settings ({', '.join(changed)} differ): resume with the "
                "same flags, or use a new --output_dir."
            )
        saved_atom = state.get("atom_settings")  # absent from checkpoints written before the cross-batch memory
        if saved_atom is not None and saved_atom != asdict(atom_args):
            changed = sorted(k for k in saved_atom if saved_atom[k] != asdict(atom_args).get(k))
            raise ValueError(
                f"{checkpoint_path} was written with other atom settings ({', '.join(changed)} differ): resume with "
                "the same --atom_* flags, or use a new --output_dir."
            )
        ensemble.load_state_dict(state["ensemble"])
        g_opt.load_state_dict(state["g_opt"])
        d_opt.load_state_dict(state["d_opt"])
        streams.load([s.cpu() for s in state["streams"]])
        for g, s in zip(eval_gens, state["eval_streams"]):
            g.set_state(s.cpu())
        history, start_step, wall_before = state["history"], state["step"], state["wall_s"]
        atom_sum.copy_(state["atom_sum"])
        log(f"resumed {len(members)} members from {checkpoint_path} at step {start_step}")

    dtype = torch.bfloat16 if args.precision == "bf16" else None
    m, n = args.pack_size, args.batch_size * args.pack_size
    d_params = ensemble.discriminator_parameters()
    has_atom = bool(ensemble.atom_index)

    def train_step() -> None:
        """One D update and one G update of every member; no host synchronisation (graph-capturable)."""
        # Discriminator: real vs detached fake; the members' losses are summed (their parameters are disjoint).
        index = streams.randint(args.num_train, n)
        real = torch.gather(train_sets, 1, index[:, :, None].expand(-1, -1, 2))
        with torch.no_grad():
            fake, _ = ensemble.generate(streams.randn(n), dtype=dtype)
        # One pass over real and fake together: D is per sample (no BatchNorm), so this equals two passes.
        logits = ensemble.discriminate(torch.cat([pack_members(real, m), pack_members(fake, m)], dim=1), dtype=dtype)
        real_logits, fake_logits = logits.split(args.batch_size, dim=1)
        d_loss = (_softplus_mean(-real_logits) + _softplus_mean(fake_logits)).sum()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        d_opt.step()
        # Generator: D's weight gradients are never needed here, so they are not computed.
        for param in d_params:
            param.requires_grad_(False)
        fake, hidden = ensemble.generate(streams.randn(n), dtype=dtype)
        objective = _softplus_mean(-ensemble.discriminate(pack_members(fake, m), dtype=dtype)).sum()
        if has_atom:
            atom, stats = ensemble.atom_objective(hidden)
            objective = objective + atom
            atom_sum.add_(stats.detach().float())
        g_opt.zero_grad(set_to_none=True)
        objective.backward()
        g_opt.step()
        for param in d_params:
            param.requires_grad_(True)

    def set_lr(step: int) -> None:
        value = args.learning_rate * lr_factor(step - 1, args.max_steps, args.lr_scheduler_type)
        for opt in (d_opt, g_opt):
            for group in opt.param_groups:
                if use_graph:
                    group["lr"].fill_(value)
                else:
                    group["lr"] = value

    run_step, graph_warmup = train_step, 3
    start = time.perf_counter()
    for step in range(start_step + 1, args.max_steps + 1):
        set_lr(step)
        if use_graph and run_step is train_step and step > start_step + graph_warmup:
            run_step = _capture(train_step)  # after a few eager steps on a side stream, as CUDA graphs require
        if use_graph and run_step is train_step:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                train_step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            run_step()
        if (args.eval_steps and step % args.eval_steps == 0) or step == args.max_steps:
            rows, samples = evaluate_members(ensemble, specs, eval_gens, args.num_eval_samples, device)
            for i, row in enumerate(rows):
                history[i].append({"step": step, **row})
            if step == args.max_steps:  # the final points of every member, for scatter plots
                torch.save(samples, os.path.join(args.output_dir, "samples.pt"))
        if (args.save_steps and step % args.save_steps == 0) or step == args.max_steps:
            wall = wall_before + time.perf_counter() - start
            save_checkpoint(checkpoint_path, ensemble, g_opt, d_opt, streams, eval_gens, history, step, wall,
                            atom_sum, args, atom_args)  # fmt: skip
    wall = wall_before + time.perf_counter() - start
    return write_member_results(args, atom_args, ensemble, history, wall, atom_sum, device)


def _capture(step_fn):
    """Records `step_fn` (kernels only) into a CUDA graph; returns its replay."""
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        step_fn()
    return graph.replay


@torch.no_grad()
def evaluate_members(ensemble, specs, eval_gens, num_samples: int, device) -> tuple[list[dict], torch.Tensor]:
    """Each member's mode metrics on `num_samples` points from its own evaluation stream (BatchNorm in eval mode,
    fp32), as `gan_mixture.py` scores a single run; and the points, (S, num_samples, 2) on the CPU."""
    z = torch.stack([torch.randn(num_samples, 2, generator=g) for g in eval_gens]).to(device)
    samples, _ = ensemble.generate(z, training=False)
    samples = samples.float().cpu()
    rows = []
    for spec, member_samples in zip(specs, samples):
        finite = bool(torch.isfinite(member_samples).all())
        metrics = mixture_mode_metrics(torch.nan_to_num(member_samples, nan=1e6), spec)
        rows.append({**metrics, "finite": finite})
    return rows, samples


def save_checkpoint(
    path, ensemble, g_opt, d_opt, streams, eval_gens, history, step, wall, atom_sum, args, atom_args
) -> None:
    """Everything needed to continue bit for bit, written to a temporary file and renamed (never torn)."""
    state = {
        "ensemble": ensemble.state_dict(),
        "g_opt": g_opt.state_dict(),
        "d_opt": d_opt.state_dict(),
        "streams": streams.state(),
        "eval_streams": [g.get_state() for g in eval_gens],
        "history": history,
        "step": step,
        "wall_s": wall,
        "atom_sum": atom_sum,
        "settings": args.settings(),
        "atom_settings": asdict(atom_args),
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_member_results(args, atom_args, ensemble, history, wall, atom_sum, device) -> dict:
    """One JSON per member in runs/ (atomic writes) and summary.json; returns the summary."""
    runs_dir = os.path.join(args.output_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    atom_rows = {
        index: dict(zip(ATOM_STATISTICS, (row / args.max_steps).tolist()))
        for index, row in zip(ensemble.atom_index, atom_sum.cpu())
    }
    summary = {"members": [], "train_wall_s": round(wall, 2), "device": str(device), "settings": args.settings()}
    if device.type == "cuda":
        summary["card"] = torch.cuda.get_device_name(device)
    for i, member in enumerate(args.members):
        payload = {
            "member": asdict(member),
            "name": member.name,
            "final": history[i][-1],
            "history": history[i],
            "atom_stats_mean": atom_rows.get(i),
            "atom_args": asdict(atom_args) if member.method == "atom" else None,
            "ensemble_size": len(args.members),
            "ensemble_wall_s": round(wall, 2),
            "settings": args.settings(),
        }
        write_json(os.path.join(runs_dir, f"{member.name}.json"), payload)
        summary["members"].append({"name": member.name, **history[i][-1]})
    write_json(os.path.join(args.output_dir, "summary.json"), summary)
    return summary


def parse(argv: Sequence[str] | None = None) -> tuple[EnsembleArguments, AtomGanArguments]:
    args, atom_args = parse_arguments((EnsembleArguments, AtomGanArguments), argv)
    resolve_layer(atom_args.atom_layer, args.num_hidden_layers)
    if args.hidden_size % atom_args.atom_tokens:
        raise ValueError(f"--atom_tokens {atom_args.atom_tokens} must divide --hidden_size {args.hidden_size}.")
    memory_size = atom_args.atom_memory_size
    if memory_size and args.cuda_graph:
        raise ValueError(
            "--cuda_graph cannot replay --atom_memory_size > 0: the queues' ring position moves every step. Drop one."
        )
    # The memory size is part of an atom member's name (atom_w0.1_m4096), so its results never mix with M = 0 runs.
    args.members = [replace(m, memory_size=memory_size) if m.method == "atom" else m for m in args.members]
    return args, atom_args


def main(argv: Sequence[str] | None = None) -> dict:
    args, atom_args = parse(argv)
    summary = train_ensemble(args, atom_args)
    for row in summary["members"]:
        print(f"{row['name']:>28}: modes {row['modes']:>2}  HQ {100 * row['high_quality']:5.1f} %  "
              f"rKL {row['reverse_kl']:.3f}")  # fmt: skip
    print(f"{len(summary['members'])} members, {summary['train_wall_s']:.1f} s on {summary['device']}")
    return summary


if __name__ == "__main__":
    main()
