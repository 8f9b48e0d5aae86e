"""Expansions of scalar bond properties into smooth feature vectors (computed per batch, on device)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianExpansion(nn.Module):
    r"""Gaussian basis: :math:`u_k(d) = \exp(-(d - \mu_k)^2 / w^2)`, :math:`\mu_k = start + k\,step`.

    CGCNN defaults: start 0, stop 8 Å, step 0.2, width 0.2 → 41 features (reference
    ``GaussianDistance(dmin=0, dmax=8, step=0.2)``; its ``var`` is our ``width``).
    Done inside the model rather than stored in the cache: 41 floats per edge would make the
    cache ~40× larger, and on a GPU the expansion is free.
    """

    def __init__(self, start: float = 0.0, stop: float = 8.0, step: float = 0.2, width: float | None = None) -> None:
        super().__init__()
        n = int(round((stop - start) / step)) + 1
        self.register_buffer("centers", start + step * torch.arange(n, dtype=torch.float32), persistent=False)
        self.width = float(width if width is not None else step)

    @property
    def num_features(self) -> int:
        return int(self.centers.numel())

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) → (E, num_features)."""
        return torch.exp(-((distances.unsqueeze(-1) - self.centers) ** 2) / self.width**2)
