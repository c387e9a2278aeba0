# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""A slow, literal implementation of the atomic loss, written straight from Eq. 5-12.

It loops over every pair of samples and sums over every pair of tokens (i, j) with its own d_ij. It is the
reference that the tests and benchmarks compare the factorised `hf_atom.atom_loss` with; never use it to train.
"""

from __future__ import annotations

import torch


def _naive_atoms(q, p, mask, norm_ord):
    """(q_A, mu_A, r_A) of every sample with a valid token, from Eq. 9-11 as printed."""
    atoms = []
    for sample in range(q.shape[0]):
        keep = torch.ones_like(q[sample], dtype=torch.bool) if mask is None else mask[sample] != 0
        q_a, p_a = q[sample][keep], p[sample][keep]
        n_a = q_a.shape[0]
        if n_a == 0:
            continue
        m_a = 1.0 - torch.clamp(q_a, min=0.0)  # Eq. 11
        mu_a = (m_a[:, None] * p_a).sum(dim=0) / n_a  # Eq. 9
        r_a = ((1.0 - m_a) * torch.linalg.vector_norm(p_a - mu_a, ord=norm_ord, dim=-1)).sum() / n_a  # Eq. 10
        atoms.append((q_a, mu_a, r_a))
    return atoms


def _naive_pair_energy(atom_a, atom_b, softening, step, token_reduction, norm_ord):
    """The double sum of Eq. 5 over the token pairs (i, j) of two atoms, each with its own d_ij."""
    q_a, mu_a, r_a = atom_a
    q_b, mu_b, r_b = atom_b
    dbar = torch.linalg.vector_norm(mu_a - mu_b, ord=norm_ord)  # Eq. 7
    charge_products = q_a[:, None] * q_b[None, :]  # q_i q_j for every token pair (i, j)
    if step == "opposite":
        on_shell = (-charge_products > 0).to(q_a.dtype)  # step(-q_i q_j), D1
    elif step == "literal":
        on_shell = (charge_products > 0).to(q_a.dtype)  # step(q_i q_j), as printed
    else:
        raise ValueError(step)
    d = dbar + 0.5 * (r_a + r_b) * on_shell  # Eq. 8
    softened = torch.sqrt(d**2 + softening**2)  # D3a
    energy = (charge_products / softened).sum()  # Eq. 5
    if token_reduction == "mean":
        energy = energy / (q_a.shape[0] * q_b.shape[0])
    return energy


def naive_atom_loss(
    q: torch.Tensor,
    p: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    softening: float = 0.1,
    step: str = "opposite",
    token_reduction: str = "mean",
    norm_ord: float = 2.0,
    memory: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """The double sum of Eq. 5 over token pairs, averaged over unordered pairs of distinct valid samples.

    `memory=(q_m, p_m, mask_m)`: earlier samples held fixed (detached), each paired once with every current sample
    and never with each other: the cross-batch memory's loss (D9), averaged over all those pairs.
    """
    settings = (softening, step, token_reduction, norm_ord)
    atoms = _naive_atoms(q, p, mask, norm_ord)
    stored = [] if memory is None else _naive_atoms(memory[0].detach(), memory[1].detach(), memory[2], norm_ord)
    total = 0.0 * (q.sum() + p.sum())  # zero, connected to the inputs so gradients exist
    num_pairs = 0
    for a in range(len(atoms)):
        for b in range(a + 1, len(atoms)):
            total = total + _naive_pair_energy(atoms[a], atoms[b], *settings)
            num_pairs += 1
        for atom_k in stored:
            total = total + _naive_pair_energy(atoms[a], atom_k, *settings)
            num_pairs += 1
    return total / num_pairs if num_pairs else total
