"""Stacked MNIST (1,000 modes): a small DCGAN with `gan`, `atom` or `pacgan`, modes counted by a digit classifier that
this recipe trains itself on the same MNIST images.

Three digits drawn independently form the three channels of one 28 x 28 x 3 image; there are 10^3 modes. Data: the
10,000 MNIST test images in `--data_dir` (IDX gzip; the 60k training set is not available offline here). The
classifier trains on the first `--classifier_train` images and reports its accuracy on the rest; it is cached
in `--classifier_dir` (`save_pretrained`), in a subfolder keyed by its settings and data, and reused by later runs
with the same ones. Atom tokens are the generator's feature-map
cells (H*W tokens of C channels, docs/DESIGN.md, D5 and D7).

    python recipes/gan_stacked_mnist.py --method atom --max_steps 1500 --seed 0 --num_threads 1 \
        --classifier_dir outputs/gan/mnist_classifier --output_dir outputs/gan/smnist_atom_s0
    # on a GPU, closer to the published budget:
    accelerate launch recipes/gan_stacked_mnist.py --method atom --max_steps 50000 --num_eval_samples 26000 ...
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from _arguments import parse_arguments
from _gan_checkpoints import finished_results, run_settings
from _gan_common import (
    AtomGanArguments,
    GanParts,
    GanTrainingArguments,
    make_accelerator,
    resolve_layer,
    train_gan,
    write_json,
)
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.nn import functional as F

from hf_atom import feature_map_tokens
from hf_atom.metrics import stacked_mnist_mode_metrics

DEFAULT_DATA_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "mnist"
)


@dataclass
class StackedMnistArguments:
    """Data, networks, classifier and evaluation of the stacked-MNIST benchmark."""

    data_dir: str = field(
        default=DEFAULT_DATA_DIR, metadata={"help": "Folder with t10k-images/labels IDX gzip files."}
    )
    classifier_dir: str | None = field(
        default=None, metadata={"help": "Cache of the digit classifier (default: <output_dir>/classifier)."}
    )
    classifier_train: int = field(
        default=9_000, metadata={"help": "Images the classifier trains on; the rest test it."}
    )
    classifier_epochs: int = field(default=3)
    latent_dim: int = field(default=100)
    gen_channels: int = field(
        default=32, metadata={"help": "ngf: the generator's 14x14 map has ngf, its 7x7 map 2 ngf."}
    )
    disc_channels: int = field(default=32, metadata={"help": "ndf: discriminator conv widths ndf and 2 ndf."})
    num_eval_samples: int = field(
        default=10_000, metadata={"help": "Generated images scored (VEEGAN's setting: 26,000)."}
    )

    def __post_init__(self):
        for name in (
            "classifier_train",
            "classifier_epochs",
            "latent_dim",
            "gen_channels",
            "disc_channels",
            "num_eval_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if not 0 < self.classifier_train < 10_000:
            raise ValueError(
                f"--classifier_train must be in (0, 10000) to leave test images, got {self.classifier_train}."
            )


# Ours: below this held-out accuracy the mode count is unreliable (at 95 %, about 1 stacked image in 7 has a
# wrong label: 1 - 0.95^3 = 0.14).
MIN_CLASSIFIER_ACCURACY = 0.95
IDX_FILES = {"images": ("t10k-images-idx3-ubyte.gz", 2051, 3), "labels": ("t10k-labels-idx1-ubyte.gz", 2049, 1)}


def _read_idx(path: str, magic: int, dims: int) -> np.ndarray:
    """One IDX gzip file as a uint8 array, every way it can be damaged named with the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: pass --data_dir pointing at the MNIST IDX gzip files.")
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:  # not gzip, or cut short
        raise ValueError(f"{path} is not a whole gzip file ({error}): download the MNIST IDX files again.") from None
    header = 4 + 4 * dims
    if len(raw) < header:
        raise ValueError(f"{path} is too short for an IDX header ({len(raw)} bytes): download it again.")
    found, *shape = (int(v) for v in np.frombuffer(raw[:header], dtype=">i4"))
    if found != magic:
        raise ValueError(
            f"{path} is not an IDX {'image' if dims == 3 else 'label'} file (magic {found}, not {magic})."
        )
    size = int(np.prod(shape))
    if shape[0] < 1 or len(raw) - header != size:
        raise ValueError(
            f"{path} declares {shape[0]} items of shape {tuple(shape[1:])} ({size} bytes) but holds "
            f"{len(raw) - header} bytes after its header: the file is empty, cut short or padded; download it again."
        )
    return np.frombuffer(raw[header:], dtype=np.uint8).reshape(shape)


def load_mnist(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The IDX gzip images (n, 28, 28) as float in [-1, 1] and their labels (n,)."""
    paths = {kind: os.path.join(data_dir, name) for kind, (name, _, _) in IDX_FILES.items()}
    images = _read_idx(paths["images"], *IDX_FILES["images"][1:])
    labels = _read_idx(paths["labels"], *IDX_FILES["labels"][1:])
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{paths['images']} holds {images.shape[1]} x {images.shape[2]} images; MNIST's are 28 x 28.")
    if len(labels) != len(images):
        raise ValueError(
            f"{paths['labels']} has {len(labels)} labels for the {len(images)} images of {paths['images']}: use the "
            "two files of one MNIST split."
        )
    if labels.max() > 9:
        raise ValueError(f"{paths['labels']} holds label {int(labels.max())}; MNIST's digits are 0-9.")
    images = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    return images, torch.from_numpy(labels.astype(np.int64))


class DigitClassifier(nn.Module, PyTorchModelHubMixin):
    """A small MNIST CNN (conv 32 - conv 64 - fc 128 - 10) that labels one channel of a generated image."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_classifier(
    images, labels, data_args: StackedMnistArguments, seed: int, device
) -> tuple[DigitClassifier, dict]:
    """Trains the classifier on the first `classifier_train` images (seeded) and measures it on the rest."""
    generator = torch.Generator().manual_seed(seed)
    model = DigitClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = data_args.classifier_train
    x_train, y_train = images[:n, None].to(device), labels[:n].to(device)
    start = time.perf_counter()
    for _ in range(data_args.classifier_epochs):
        for idx in torch.randperm(n, generator=generator).split(128):
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(x.to(device)).argmax(-1).cpu() for x in images[n:, None].split(1000)])
    info = {
        "accuracy": float((predicted == labels[n:]).double().mean()),
        "num_train": n,
        "num_test": int(labels.shape[0] - n),
        "epochs": data_args.classifier_epochs,
        "seed": seed,
        "train_wall_s": round(time.perf_counter() - start, 2),
    }
    return model, info


def classifier_settings(data_args: StackedMnistArguments, labels: torch.Tensor) -> dict:
    """What the cached classifier depends on: its training settings and the data (a digest of the labels and the
    number of images; the images come from the same files)."""
    digest = hashlib.sha256(labels.numpy().tobytes()).hexdigest()[:16]
    return {
        "classifier_train": data_args.classifier_train,
        "classifier_epochs": data_args.classifier_epochs,
        "seed": 0,
        "num_images": int(labels.shape[0]),
        "labels_sha256": digest,
    }


def get_classifier(images, labels, data_args: StackedMnistArguments, output_dir: str, device):
    """The classifier for these settings and data, and its accuracy record: read from the cache if it is there
    (`<classifier_dir>/<settings key>/`), else trained and saved (whole or not at all) first."""
    if data_args.classifier_train >= len(labels):
        raise ValueError(
            f"--classifier_train {data_args.classifier_train} leaves no image to test the classifier on: "
            f"{data_args.data_dir} holds {len(labels)} images. Pass a smaller --classifier_train."
        )
    settings = classifier_settings(data_args, labels)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(data_args.classifier_dir or os.path.join(output_dir, "classifier"), key)
    info_path = os.path.join(path, "classifier_info.json")  # written last: the cache entry is complete
    if os.path.isfile(info_path):
        try:
            with open(info_path, encoding="utf-8") as handle:
                info = json.load(handle)
            return DigitClassifier.from_pretrained(path).to(device).eval(), info
        except (ValueError, OSError) as error:  # written by hand or by an older version: train it again
            print(f"The cached classifier in {path} cannot be read ({error}); training it again.", flush=True)
            shutil.rmtree(path)
    model, info = train_classifier(images, labels, data_args, seed=settings["seed"], device=device)
    info.update(settings=settings, path=path)
    partial = f"{path}.{os.getpid()}.tmp"
    model.save_pretrained(partial)
    write_json(os.path.join(partial, "classifier_info.json"), info)
    try:
        os.replace(partial, path)
    except OSError:  # another run saved the same classifier first: keep theirs (the same settings and data)
        shutil.rmtree(partial)
    return model.eval(), info


class DCGANGenerator(nn.Module, PyTorchModelHubMixin):
    """z -> fc -> (2 ngf, 7, 7) -> convT -> (ngf, 14, 14) -> convT -> (3, 28, 28) tanh; BatchNorm + ReLU inside.
    The hidden feature maps (7x7 and 14x14) are the candidate atom layers."""

    def __init__(self, latent_dim: int = 100, channels: int = 32, out_channels: int = 3):
        super().__init__()
        self.channels = channels
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 2 * channels * 49, bias=False), nn.BatchNorm1d(2 * channels * 49), nn.ReLU()
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
        self.up2 = nn.ConvTranspose2d(channels, out_channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, return_hidden: bool = False):
        h7 = self.fc(z).view(z.shape[0], 2 * self.channels, 7, 7)
        h14 = self.up1(h7)
        out = torch.tanh(self.up2(h14))
        return (out, [h7, h14]) if return_hidden else out


class DCGANDiscriminator(nn.Module, PyTorchModelHubMixin):
    """(3 m, 28, 28) -> conv (ndf, 14, 14) -> conv (2 ndf, 7, 7) -> linear logit; LeakyReLU 0.2, BatchNorm inside."""

    def __init__(self, in_channels: int = 3, channels: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, channels, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * channels),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * channels * 49, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def data_settings(data_args: StackedMnistArguments) -> dict:
    """The settings a resumed run must share (the folders may move; the classifier cache is keyed by content)."""
    return {k: v for k, v in asdict(data_args).items() if k not in ("data_dir", "classifier_dir")}


def build_parts(data_args, args, atom_args, images, classifier, device):
    """Networks, samplers and the mode-counting evaluation of one run."""
    generator = DCGANGenerator(data_args.latent_dim, data_args.gen_channels)
    discriminator = DCGANDiscriminator(3 * args.effective_pack, data_args.disc_channels)
    layer = resolve_layer(atom_args.atom_layer, 2)
    token_width = (2 * data_args.gen_channels, data_args.gen_channels)[layer]
    pool = images.to(device)  # (10000, 28, 28); every step stacks 3 independently drawn digits per image
    eval_gen = torch.Generator().manual_seed(10_000 + args.seed)

    def sample_real(n: int) -> torch.Tensor:
        return pool[torch.randint(0, pool.shape[0], (n, 3), device=device)]  # (n, 3, 28, 28)

    def sample_noise(n: int) -> torch.Tensor:
        return torch.randn(n, data_args.latent_dim, device=device)

    def evaluate(gen: nn.Module, step: int) -> dict:
        labels = []
        for start in range(0, data_args.num_eval_samples, 500):
            size = min(500, data_args.num_eval_samples - start)
            fake = gen(torch.randn(size, data_args.latent_dim, generator=eval_gen).to(device))
            labels.append(classifier(fake.reshape(-1, 1, 28, 28)).argmax(-1).view(size, 3).cpu())
            if start == 0:
                last["samples"] = fake[:64].cpu()
        return stacked_mnist_mode_metrics(torch.cat(labels))

    def tokens_fn(hidden: list) -> torch.Tensor:
        return feature_map_tokens(hidden[layer])

    last = {}
    # the batches and training noise come from the global stream, which Accelerate's checkpoints hold
    parts = GanParts(
        generator,
        discriminator,
        sample_real,
        sample_noise,
        tokens_fn,
        evaluate,
        token_width,
        random_streams={"evaluation": eval_gen},
        settings=data_settings(data_args),
    )
    return parts, last


def save_grid(path: str, samples: torch.Tensor, title: str) -> None:
    """An 8x8 grid of generated RGB images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = ((samples[:64].clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
    rows = int(np.ceil(len(images) / 8))
    canvas = np.ones((rows * 29, 8 * 29, 3))
    for i, image in enumerate(images):
        r, c = divmod(i, 8)
        canvas[r * 29 : r * 29 + 28, c * 29 : c * 29 + 28] = image
    fig, ax = plt.subplots(figsize=(4, rows / 2 + 0.4), dpi=100)
    ax.imshow(canvas)
    ax.axis("off")
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse(argv: Sequence[str] | None = None):
    data_args, args, atom_args = parse_arguments((StackedMnistArguments, GanTrainingArguments, AtomGanArguments), argv)
    resolve_layer(atom_args.atom_layer, 2)  # the generator has two hidden feature maps (7x7, 14x14)
    return data_args, args, atom_args


def main(argv: Sequence[str] | None = None) -> dict:
    data_args, args, atom_args = parse(argv)
    finished = finished_results(args, run_settings(args, atom_args, data_settings(data_args)))
    if finished is not None:
        print(f"{args.output_dir} holds this run, finished: nothing to train (results.json kept).")
        return finished
    images, labels = load_mnist(data_args.data_dir)  # before the accelerator: a bad file fails at once
    accelerator = make_accelerator(args)
    classifier, classifier_info = get_classifier(images, labels, data_args, args.output_dir, accelerator.device)
    if classifier_info["accuracy"] < MIN_CLASSIFIER_ACCURACY and accelerator.is_main_process:
        print(
            f"Warning: the digit classifier is {100 * classifier_info['accuracy']:.1f} % accurate on held-out "
            f"digits (under {100 * MIN_CLASSIFIER_ACCURACY:.0f} %): the mode counts of this run are unreliable. "
            "Train it on more images (--classifier_train) or epochs (--classifier_epochs).",
            flush=True,
        )
    parts, last = build_parts(data_args, args, atom_args, images, classifier, accelerator.device)
    results = train_gan(parts, args, atom_args, accelerator)
    results.update(dataset="stacked_mnist", data_args=vars(data_args), classifier=classifier_info)
    if accelerator.is_main_process:
        final = results["final"]
        label = f"stacked MNIST {args.method} seed {args.seed}"
        print(
            f"[{label}] modes {final['modes']}/1000  KL {final['kl']:.3f}  classifier accuracy "
            f"{100 * classifier_info['accuracy']:.1f} %  train wall {results['train_wall_s']:.1f} s"
        )
        save_grid(os.path.join(args.output_dir, "samples.png"), last["samples"], f"{label}: {final['modes']} modes")
        write_json(os.path.join(args.output_dir, "results.json"), results)
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main()
