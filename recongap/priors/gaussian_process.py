"""A 1-D Gaussian process on [0, 1] with a squared-exponential covariance.

The signal prior of the integration pipeline: f on the n midpoints
t_j = (j + 1/2) / n, f = mean + std * C^(1/2) z with C the kernel matrix
exp(-(t - t')^2 / (2 l^2)) plus a nugget, and z ~ N(0, I) the parameters.
The signal is linear in z, so under a linear operator and Gaussian noise the
posterior is Gaussian and known in closed form (recongap.posterior.gaussian),
as for the 2-D GaussianFieldPrior.
"""

from __future__ import annotations

import math
from functools import cached_property

import torch


class GaussianProcessPrior:
    """f = mean + std * C^(1/2) z on `size` midpoints of [0, 1]."""

    def __init__(self, size: int, mean: float = 0.0, std: float = 1.0, length_scale: float = 0.1, nugget: float = 1e-4) -> None:
        if size < 2 or std <= 0 or length_scale <= 0 or nugget < 0:
            raise ValueError(f"invalid GaussianProcessPrior(size={size}, std={std}, length_scale={length_scale}, nugget={nugget})")
        self.size, self.mean, self.std, self.length_scale, self.nugget = size, mean, std, length_scale, nugget

    @property
    def param_shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def image_shape(self) -> tuple[int]:
        return (self.size,)

    @cached_property
    def _eig(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvectors and eigenvalues (nugget included) of the unit-variance C."""
        t = (torch.arange(self.size, dtype=torch.float64) + 0.5) / self.size
        lam, vec = torch.linalg.eigh(torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * self.length_scale**2)))
        return vec, lam.clamp_min(0.0) + self.nugget

    def _in_basis(self, v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        vec = self._eig[0].to(v.device, v.dtype)
        return ((v @ vec) * scale.to(v.device, v.dtype)) @ vec.T

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, size) float64 whitened coefficients."""
        return torch.randn(n, self.size, generator=generator, dtype=torch.float64)

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor:
        """(n, size) coefficients -> (n, 1, size) signals."""
        if size != self.size or params.shape[-1:] != self.param_shape:
            raise ValueError(f"GaussianProcessPrior is defined on {self.size} points; got size {size}, parameters {tuple(params.shape)}")
        return (self.mean + self.std * self._in_basis(params, self._eig[1].sqrt())).unsqueeze(1)

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor:
        """Cov[f] v = std^2 C v for (..., size) v."""
        return self.std**2 * self._in_basis(v, self._eig[1])

    def mean_image(self) -> torch.Tensor:
        """E[f], (size,)."""
        return torch.full((self.size,), float(self.mean), dtype=torch.float64)

    def variance_image(self) -> torch.Tensor:
        """diag Cov[f], (size,)."""
        vec, lam = self._eig
        return self.std**2 * (vec * vec) @ lam

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """Standard normal log-density of the coefficients, summed per item."""
        if params.shape[-1:] != self.param_shape:
            raise ValueError(f"GaussianProcessPrior expects parameters (..., {self.size}), got {tuple(params.shape)}")
        return -0.5 * (params**2).sum(-1) - 0.5 * self.size * math.log(2 * math.pi)


def step_signal(size: int) -> torch.Tensor:
    """A piecewise constant signal on `size` midpoints of [0, 1], (1, 1, size)
    float32: the 1-D phantom, with jumps no Gaussian process draws (the
    analytic deep prior's test signals are of this kind)."""
    t = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    levels = ((0.0, 0.0), (0.15, 1.0), (0.35, -0.5), (0.55, 0.5), (0.7, 1.5), (0.85, 0.0))
    signal = torch.zeros(size, dtype=torch.float64)
    for start, level in levels:
        signal[t >= start] = level
    return signal.reshape(1, 1, size).float()
