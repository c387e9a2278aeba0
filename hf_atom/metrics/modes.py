# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Mode-collapse benchmarks: the 2D Gaussian mixtures and the metrics of the VEEGAN / PacGAN protocol.

Pure torch (no transformers import), so the metrics run on any tensors.

The definitions follow the PacGAN authors' released configuration and evaluation code (Lin, Khetan, Fanti, Oh,
NeurIPS 2018, arXiv 1712.04086):

- **2D ring**: 8 centres (cos 2 pi k / 8, sin 2 pi k / 8), k = 0..7, radius 1, component std 0.01.
- **2D grid**: 25 centres {-4, -2, 0, 2, 4}^2, component std 0.05.
- Each generated point is assigned to its nearest centre; it is *high quality* if that distance is below
  `3 * std`. **Modes** = centres with at least one high-quality point; **high-quality share** = high-quality
  points / all points; **reverse KL** = KL(histogram of the high-quality points over the K centres || uniform)
  = ln K - H(histogram) (the published reverse-KL values match this; finite when modes are missing).
- **Stacked MNIST**: three digits per image (one per channel), 1000 modes; a classifier labels each channel,
  modes = distinct label triples, KL = KL(triple histogram || uniform over 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "MIXTURES",
    "MixtureSpec",
    "kl_to_uniform",
    "mixture_mode_metrics",
    "mixture_spec",
    "sample_mixture",
    "stacked_mnist_mode_metrics",
]

MIXTURES = ("ring", "grid")


@dataclass(frozen=True)
class MixtureSpec:
    """A 2D Gaussian mixture with equal weights and isotropic components.

    Args:
        name (`str`): `"ring"` or `"grid"`.
        centres (`torch.Tensor` of shape `(K, 2)`): the component means (float64).
        std (`float`): the component standard deviation (sigma).
    """

    name: str
    centres: torch.Tensor
    std: float

    @property
    def num_modes(self) -> int:
        return int(self.centres.shape[0])


def mixture_spec(name: str) -> MixtureSpec:
    """The benchmark's mixture: `"ring"` (8 modes, std 0.01) or `"grid"` (25 modes, std 0.05)."""
    if name == "ring":
        # 2 pi k / 8 for k = 0..7: `linspace(0, 2 pi, 8)` (seen in public code) puts two centres on one spot.
        angles = 2.0 * math.pi * torch.arange(8, dtype=torch.float64) / 8.0
        return MixtureSpec("ring", torch.stack([torch.cos(angles), torch.sin(angles)], dim=1), 0.01)
    if name == "grid":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
        return MixtureSpec("grid", torch.cartesian_prod(axis, axis), 0.05)
    raise ValueError(f"Unknown mixture {name!r}; choose one of {MIXTURES}.")


def sample_mixture(spec: MixtureSpec, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`num_samples` points (the default dtype, float32 unless changed; shape `(num_samples, 2)`), each from a
    uniformly drawn component."""
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1, got {num_samples}.")
    modes = torch.randint(0, spec.num_modes, (num_samples,), generator=generator)
    noise = torch.randn(num_samples, 2, generator=generator, dtype=torch.float64)
    return (spec.centres[modes] + spec.std * noise).to(torch.get_default_dtype())


def kl_to_uniform(counts: torch.Tensor) -> float:
    """KL(p || uniform over K) = ln K - H(p) for the histogram p = counts / counts.sum() over K bins.

    Empty bins contribute 0 (0 ln 0 = 0), so the value stays finite when modes are missing: 0 for an even
    histogram, ln K when everything falls in one bin. NaN when the histogram is empty (nothing to compare).
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).flatten()
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float(math.log(counts.numel()) + (p * p.log()).sum())


def mixture_mode_metrics(samples: torch.Tensor, spec: MixtureSpec, quality_threshold: float = 3.0) -> dict:
    """Modes captured, high-quality share and reverse KL of generated 2D points (the PacGAN protocol).

    Args:
        samples (`torch.Tensor` of shape `(n, 2)`): generated points.
        spec (`MixtureSpec`): the real mixture.
        quality_threshold (`float`, defaults to 3.0): a point is high quality if it lies within this many
            standard deviations of its nearest centre.

    Returns:
        `dict` with `modes` (int), `high_quality` (share in [0, 1]), `reverse_kl` (nats; NaN if no point is high
        quality), `num_samples` and `mode_counts` (list of K ints: high-quality points per centre).
    """
    samples = torch.as_tensor(samples).detach().to("cpu", torch.float64)
    if samples.ndim != 2 or samples.shape[1] != 2 or samples.shape[0] == 0:
        raise ValueError(f"`samples` must have shape (n >= 1, 2), got {tuple(samples.shape)}.")
    distances = torch.cdist(samples, spec.centres)  # (n, K)
    nearest_distance, nearest = distances.min(dim=1)
    good = nearest_distance < quality_threshold * spec.std
    counts = torch.bincount(nearest[good], minlength=spec.num_modes)
    return {
        "modes": int((counts > 0).sum()),
        "high_quality": float(good.double().mean()),
        "reverse_kl": kl_to_uniform(counts),
        "num_samples": int(samples.shape[0]),
        "mode_counts": counts.tolist(),
    }


def stacked_mnist_mode_metrics(channel_labels: torch.Tensor, num_classes: int = 10) -> dict:
    """Modes and KL of stacked-MNIST samples from the digit labels of their channels.

    Args:
        channel_labels (`torch.Tensor` of shape `(n, channels)`, integer): the classifier's digit per channel.
        num_classes (`int`, defaults to 10): digits per channel; there are `num_classes ** channels` modes.

    Returns:
        `dict` with `modes` (distinct label tuples), `kl` (KL(tuple histogram || uniform), nats),
        `num_samples` and `num_possible_modes`.
    """
    labels = torch.as_tensor(channel_labels).detach().to("cpu", torch.long)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"`channel_labels` must have shape (n >= 1, channels), got {tuple(labels.shape)}.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"`channel_labels` must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}].")
    channels = labels.shape[1]
    weights = num_classes ** torch.arange(channels - 1, -1, -1)  # first channel = most significant digit
    codes = (labels * weights).sum(dim=1)
    num_possible = num_classes**channels
    counts = torch.bincount(codes, minlength=num_possible)
    return {
        "modes": int((counts > 0).sum()),
        "kl": kl_to_uniform(counts),
        "num_samples": int(labels.shape[0]),
        "num_possible_modes": int(num_possible),
    }
