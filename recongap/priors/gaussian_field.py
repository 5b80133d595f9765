"""Stationary Gaussian random field with a squared-exponential covariance.

On the pixel grid the covariance is sigma^2 (C_rows kron C_cols + nugget I),
with C_rows and C_cols the 1D kernel matrices along each axis (the same one
unless the length scales differ, an anisotropic field): their
eigendecompositions (size x size) give sampling, the covariance, its square
root and the image density as cheap operators. Parameters
are the whitened coefficients z ~ N(0, I), and the image is linear in z, so
under a linear forward operator and Gaussian noise the posterior is Gaussian
and known in closed form.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Sequence

import torch

from ..operators.geometry import EXTENT


class GaussianFieldPrior:
    """x = mean + std * C^(1/2) z on a size x size grid over [-1, 1]^2;
    length_scale is one number, or (vertical, horizontal): the correlation
    length between rows (axis 0) and between columns (axis 1)."""

    def __init__(
        self, size: int, mean: float = 0.5, std: float = 0.2, length_scale: float | Sequence[float] = 0.2, nugget: float = 1e-4
    ) -> None:
        scales = (float(length_scale),) * 2 if isinstance(length_scale, (int, float)) else tuple(float(s) for s in length_scale)
        if size < 2 or std <= 0 or len(scales) != 2 or min(scales) <= 0 or nugget < 0:
            raise ValueError(f"invalid GaussianFieldPrior(size={size}, std={std}, length_scale={length_scale}, nugget={nugget})")
        self.size, self.mean, self.std, self.nugget = size, mean, std, nugget
        self.length_scale = scales[0] if scales[0] == scales[1] else scales

    @property
    def param_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @cached_property
    def _eig(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eigenvectors of C_rows and C_cols, and the eigenvalues of C as a grid."""
        h = 2 * EXTENT / self.size
        c = -EXTENT + (torch.arange(self.size, dtype=torch.float64) + 0.5) * h
        pairs = []
        for scale in (self.length_scale,) * 2 if isinstance(self.length_scale, float) else self.length_scale:
            lam, vec = torch.linalg.eigh(torch.exp(-((c[:, None] - c[None, :]) ** 2) / (2 * scale**2)))
            pairs.append((vec, lam.clamp_min(0.0)))
        (rows, lam_r), (cols, lam_c) = pairs
        return rows, cols, lam_r[:, None] * lam_c[None, :] + self.nugget

    def _in_basis(self, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        rows, cols, _ = self._eig
        rows, cols = rows.to(v.device, v.dtype), cols.to(v.device, v.dtype)
        return rows @ (scale.to(v.device, v.dtype) * (rows.T @ v @ cols)) @ cols.T

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, size, size) float64 whitened coefficients."""
        return torch.randn(n, self.size, self.size, generator=generator, dtype=torch.float64)

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor:
        """(n, size, size) coefficients -> (n, 1, size, size) images."""
        if size != self.size or params.shape[-2:] != self.param_shape:
            raise ValueError(f"GaussianFieldPrior is defined on {self.size}x{self.size}; got size {size}, parameters {tuple(params.shape)}")
        return (self.mean + self.std * self.covariance_sqrt_apply(params)).unsqueeze(1)

    def covariance_sqrt_apply(self, v: torch.Tensor) -> torch.Tensor:
        """C^(1/2) v for (..., size, size) v (unit-variance C; scale by std)."""
        return self._in_basis(v, self._eig[2].sqrt())

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor:
        """Cov[x] v = std^2 C v, the prior covariance as an operator on images."""
        return self.std**2 * self._in_basis(v, self._eig[2])

    def mean_image(self) -> torch.Tensor:
        """E[x], (size, size)."""
        return torch.full((self.size, self.size), float(self.mean), dtype=torch.float64)

    def variance_image(self) -> torch.Tensor:
        """diag Cov[x] as a (size, size) grid."""
        return self.std**2 * self.covariance_diagonal()

    def covariance_diagonal(self) -> torch.Tensor:
        """diag(C) as a (size, size) grid (unit variance; scale by std^2)."""
        rows, cols, eig = self._eig
        return (rows * rows) @ eig @ (cols * cols).T

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """Standard normal log-density of the coefficients, summed per item."""
        if params.shape[-2:] != self.param_shape:
            raise ValueError(f"GaussianFieldPrior expects parameters (..., {self.size}, {self.size}), got {tuple(params.shape)}")
        d = self.size * self.size
        return -0.5 * (params**2).sum((-2, -1)) - 0.5 * d * math.log(2 * math.pi)

    def image_log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """Log-density of (..., size, size) images under N(mean, std^2 C), per image."""
        rows, cols, eig = (t.to(images.device, images.dtype) for t in self._eig)
        white = rows.T @ (images - self.mean) @ cols / (self.std * eig.sqrt())
        d = self.size * self.size
        log_det = torch.log(self.std**2 * eig).sum()
        return -0.5 * (white**2).sum((-2, -1)) - 0.5 * log_det - 0.5 * d * math.log(2 * math.pi)
