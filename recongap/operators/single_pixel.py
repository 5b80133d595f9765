"""`SinglePixel`: single-pixel imaging with Walsh-ordered Hadamard patterns.

Each measurement is the inner product of the image with one 2-D Hadamard
pattern w_u w_v^T (entries +-1/N, rows of the orthonormal N x N Hadamard
matrix in Walsh order: by their number of sign changes, the sequency). The
M patterns kept are the lowest frequencies first, as in Ducros' talk: sorted
by u + v, then max(u, v), then u. The kept rows are orthonormal, so the
adjoint is the pseudo-inverse, and the first reconstruction. The physical
split of each pattern into its positive and negative parts (two 0/1
patterns on a micro-mirror device) is not modelled: y is their difference.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import hadamard

from .base import LinearOperator


def walsh_matrix(size: int) -> np.ndarray:
    """The orthonormal size x size Hadamard matrix, rows in increasing sequency."""
    h = hadamard(size).astype(np.float64) / np.sqrt(size)
    sign_changes = (np.diff(np.sign(h), axis=1) != 0).sum(axis=1)
    return h[np.argsort(sign_changes, kind="stable")]


def low_frequency_patterns(size: int, patterns: int) -> np.ndarray:
    """(patterns, 2) Walsh indices (u, v), lowest frequencies first: by u + v, max(u, v), u."""
    u, v = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    u, v = u.ravel(), v.ravel()
    order = np.lexsort((u, np.maximum(u, v), u + v))  # last key sorts first
    return np.stack([u[order], v[order]], axis=1)[:patterns]


class SinglePixel(LinearOperator):
    """y = the M lowest-frequency Walsh-Hadamard coefficients of a size x size image.

    Images (B, 1, size, size), data (B, 1, 1, patterns); size a power of 2.
    """

    def __init__(self, size: int, patterns: int) -> None:
        super().__init__()
        if size < 2 or size & (size - 1):
            raise ValueError(f"single_pixel: size must be a power of 2 (Hadamard patterns), got {size}")
        if not 1 <= patterns <= size * size:
            raise ValueError(f"single_pixel: patterns must be in [1, {size * size}] at size {size}, got {patterns}")
        self.size, self.patterns = size, patterns
        self.indices = low_frequency_patterns(size, patterns)
        self._walsh = walsh_matrix(size)
        self._kept = torch.from_numpy(self.indices[:, 0] * size + self.indices[:, 1])
        self._cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def domain_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def range_shape(self) -> tuple[int, int]:
        return (1, self.patterns)

    def _walsh_and_kept_on(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (str(like.device), like.dtype)
        if key not in self._cache:
            self._cache[key] = (torch.from_numpy(self._walsh).to(like.device, like.dtype), self._kept.to(like.device))
        return self._cache[key]

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        w, kept = self._walsh_and_kept_on(x)
        coefficients = w @ x.detach().reshape(-1, self.size, self.size) @ w.T
        return coefficients.flatten(1)[:, kept]

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        w, kept = self._walsh_and_kept_on(y)
        full = y.new_zeros(y.shape[0], self.size * self.size)
        full[:, kept] = y.detach()
        return (w.T @ full.view(-1, self.size, self.size) @ w).flatten(1)

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """The pseudo-inverse (the adjoint, the kept patterns being orthonormal): the
        image with every unmeasured coefficient set to zero."""
        return self.adjoint(y)

    def norm(self, iterations: int = 100) -> float:
        """1: the kept patterns are orthonormal."""
        return 1.0

    def extra_repr(self) -> str:
        return f"size={self.size}, patterns={self.patterns}"
