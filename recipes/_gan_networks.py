"""The networks of the PacGAN protocol on the 2D mixtures (PacGAN, Lin et al. 2018, and its authors' released
configuration), shared by `gan_mixture.py` (one run) and `gan_ensemble.py` (many runs in one program): a generator
MLP with BatchNorm + ReLU and no hidden biases, and a discriminator of LinearMaxout layers.

`PyTorchModelHubMixin` gives both `save_pretrained` / `from_pretrained` (config.json + safetensors).
"""

from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn


class MixtureGenerator(nn.Module, PyTorchModelHubMixin):
    """MLP z (2) -> hidden x L -> 2, BatchNorm + ReLU on each hidden layer, no biases except the output layer."""

    def __init__(self, latent_dim: int = 2, hidden_size: int = 400, num_hidden_layers: int = 4, output_dim: int = 2):
        super().__init__()
        widths = [latent_dim] + [hidden_size] * num_hidden_layers
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU())
            for a, b in zip(widths, widths[1:])
        )
        self.out = nn.Linear(hidden_size, output_dim)

    def forward(self, z: torch.Tensor, return_hidden: bool = False):
        hidden = []
        x = z
        for layer in self.hidden:
            x = layer(x)
            hidden.append(x)
        out = self.out(x)
        return (out, hidden) if return_hidden else out


class LinearMaxout(nn.Module):
    """Linear map to `units * pieces` features, then the max over each unit's pieces."""

    def __init__(self, in_features: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(x.shape[0], self.units, self.pieces).amax(dim=-1)


class MixtureDiscriminator(nn.Module, PyTorchModelHubMixin):
    """3 LinearMaxout layers (200 units, 5 pieces) -> linear logit; input 2 * pack_size."""

    def __init__(self, input_dim: int = 2, units: int = 200, pieces: int = 5, num_layers: int = 3):
        super().__init__()
        widths = [input_dim] + [units] * num_layers
        self.layers = nn.Sequential(*(LinearMaxout(a, b, pieces) for a, b in zip(widths, widths[1:])))
        self.out = nn.Linear(units, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x)).squeeze(-1)
