"""Quadrature rules on [0, 1] for integrated gradients."""

from __future__ import annotations

import numpy as np
import torch


def gauss_legendre(n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights on [0, 1]: the fixed-step rule (Captum's `gausslegendre`)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return torch.tensor((nodes + 1) / 2, dtype=torch.float32), torch.tensor(
        weights / 2, dtype=torch.float32
    )


def clenshaw_curtis(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The n + 1 Clenshaw–Curtis nodes (1 − cos(kπ/n)) / 2, k = 0…n, and weights on [0, 1].

    The adaptive mode's rule: doubling n keeps every old node (they are the even k of the new
    rule), so refining a target costs only its new nodes, where Gauss–Legendre would recompute
    all of them; and it exactly integrates polynomials of degree n."""
    k = np.arange(n + 1)
    theta = k * np.pi / n
    w = np.ones(n + 1)
    for j in range(1, n // 2 + 1):
        w -= (1.0 if 2 * j == n else 2.0) / (4 * j * j - 1) * np.cos(2 * j * theta)
    w *= np.where((k == 0) | (k == n), 1.0, 2.0) / n
    return torch.tensor((1 - np.cos(theta)) / 2, dtype=torch.float32), torch.tensor(
        w / 2, dtype=torch.float32
    )
