"""Main job (interim): a tiny patch transformer on scikit-learn's bundled digits, baseline vs atom modeling.

Runs offline in well under a minute on 2 CPU cores and prints a comparison table. Shows the library on any
tensors: `AtomHead` gives q and p per patch token, `AtomLoss` the atomic loss added with weight lambda.
"""

from __future__ import annotations

import argparse
import json
import os

import torch
from sklearn.datasets import load_digits
from torch import nn

from hf_atom import AtomConfig, AtomHead, AtomLoss, charge_target_penalty


class TinyPatchTransformer(nn.Module):
    """8x8 digit -> 16 patches of 2x2 pixels -> one transformer layer -> mean pool -> 10 classes."""

    def __init__(self, hidden: int = 32, atom: AtomConfig | None = None):
        super().__init__()
        self.embed = nn.Linear(4, hidden)
        self.pos = nn.Parameter(torch.randn(16, hidden) * 0.02)
        self.encoder = nn.TransformerEncoderLayer(hidden, nhead=4, dim_feedforward=64, batch_first=True, dropout=0.0)
        self.classifier = nn.Linear(hidden, 10)
        atom = atom or AtomConfig()
        self.atom_head = AtomHead(hidden, atom.position_dim or hidden, atom.position_norm)

    def forward(self, images: torch.Tensor):
        patches = images.view(-1, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(-1, 16, 4)
        hidden = self.encoder(self.embed(patches) + self.pos)
        q, p = self.atom_head(hidden)
        return self.classifier(hidden.mean(dim=1)), q, p


def train(atom_weight: float, seed: int, epochs: int, data) -> dict:
    torch.manual_seed(seed)
    x_train, y_train, x_test, y_test = data
    config = AtomConfig(weight=atom_weight)
    model = TinyPatchTransformer(atom=config)
    atom_loss = AtomLoss(config.softening, config.step, config.token_reduction, config.norm_ord)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 64):
            idx = order[start : start + 64]
            logits, q, p = model(x_train[idx])
            task = nn.functional.cross_entropy(logits, y_train[idx])
            atom = atom_loss(q, p) + config.charge_weight * charge_target_penalty(q, target=config.charge_target)
            loss = task + config.weight * atom if config.weight > 0 else task
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits, q, p = model(x_test)
        accuracy = (logits.argmax(-1) == y_test).float().mean().item()
        energy = atom_loss(q, p).item()
    return {"atom_weight": atom_weight, "seed": seed, "test_accuracy": accuracy, "test_atom_loss": energy,
            "mean_abs_q": q.abs().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_dir", default="outputs/main_job")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--atom_weight", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target)
    split = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = split[:1400], split[1400:]
    data = (images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])
    rows = [train(weight, seed, args.epochs, data) for weight in (0.0, args.atom_weight) for seed in args.seeds]
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    print(f"{'lambda':>8} {'seed':>5} {'test acc':>9} {'L_A':>10} {'mean|q|':>8}")
    for row in rows:
        print(f"{row['atom_weight']:>8.3g} {row['seed']:>5} {row['test_accuracy']:>9.4f} "
              f"{row['test_atom_loss']:>10.4g} {row['mean_abs_q']:>8.3f}")
    print(f"results written to {args.output_dir}/results.json")


if __name__ == "__main__":
    main()
