"""Stationary Gaussian random field with a squared-exponential covariance.

On the pixel grid the covariance is sigma^2 (C1 kron C1 + nugget I), with C1
the 1D kernel matrix: one eigendecomposition of C1 (size x size) gives
sampling, the covariance and its square root as cheap operators. Parameters
are the whitened coefficients z ~ N(0, I), and the image is linear in z, so
under a linear forward operator and Gaussian noise the posterior is Gaussian
and known in closed form.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch

from ..operators.geometry import EXTENT


class GaussianFieldPrior:
    """x = mean + std * C^(1/2) z on a size x size grid over [-1, 1]^2."""

    def __init__(self, size: int, mean: float = 0.5, std: float = 0.2, length_scale: float = 0.2, nugget: float = 1e-4) -> None:
        if size < 2 or std <= 0 or length_scale <= 0 or nugget < 0:
            raise ValueError(f"invalid GaussianFieldPrior(size={size}, std={std}, length_scale={length_scale}, nugget={nugget})")
        self.size, self.mean, self.std, self.length_scale, self.nugget = size, mean, std, length_scale, nugget

    @property
    def param_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @cached_property
    def _eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = 2 * EXTENT / self.size
        c = -EXTENT + (torch.arange(self.size, dtype=torch.float64) + 0.5) * h
        k1 = torch.exp(-((c[:, None] - c[None, :]) ** 2) / (2 * self.length_scale**2))
        lam, vec = torch.linalg.eigh(k1)
        lam = lam.clamp_min(0.0)
        return vec, lam[:, None] * lam[None, :] + self.nugget  # eigenvalues of C, as a grid

    def _in_basis(self, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        vec, _ = self._eig
        vec = vec.to(v.device, v.dtype)
        return vec @ (scale.to(v.device, v.dtype) * (vec.T @ v @ vec)) @ vec.T

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
        return self._in_basis(v, self._eig[1].sqrt())

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor:
        """Cov[x] v = std^2 C v, the prior covariance as an operator on images."""
        return self.std**2 * self._in_basis(v, self._eig[1])

    def covariance_diagonal(self) -> torch.Tensor:
        """diag(C) as a (size, size) grid (unit variance; scale by std^2)."""
        vec, eig = self._eig
        sq = vec * vec
        return sq @ eig @ sq.T

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """Standard normal log-density of the coefficients, summed per item."""
        if params.shape[-2:] != self.param_shape:
            raise ValueError(f"GaussianFieldPrior expects parameters (..., {self.size}, {self.size}), got {tuple(params.shape)}")
        d = self.size * self.size
        return -0.5 * (params**2).sum((-2, -1)) - 0.5 * d * math.log(2 * math.pi)
