"""The exact posterior of a Gaussian prior under a linear operator and white noise.

For x ~ N(mu, S) and y = A x + e, e ~ N(0, s^2 I):

    E[x|y]   = mu + S A^T K^-1 (y - A mu),   K = A S A^T + s^2 I
    Cov[x|y] = S - S A^T K^-1 A S
    y        ~ N(A mu, K)                    (the evidence)

Here the data space is small (angles x detectors, a few thousand), so K is
formed densely and factored once; S is the prior's covariance operator. The
posterior covariance does not depend on y, so the Bayes risk
E||E[x|y] - x||^2 = trace Cov[x|y] is a number, the denominator of the
normalized error on the `gaussian_field` pipeline. Given the first two
moments of any prior (a GaussianMixturePrior's, say) the same formulas give
the best linear estimator of x from y.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from ..operators import LinearOperator


class GaussianMoments(Protocol):
    """What the formulas need of a prior: its mean, covariance operator and variances."""

    image_shape: tuple[int, ...]

    def mean_image(self) -> torch.Tensor: ...

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor: ...

    def variance_image(self) -> torch.Tensor: ...


class GaussianPosterior:
    """Closed-form posterior mean, pixel variances, evidence and exact draws, in float64."""

    def __init__(self, prior: GaussianMoments, operator: LinearOperator, noise_std: float) -> None:
        shape, m = tuple(prior.image_shape), math.prod(operator.range_shape)
        if tuple(operator.domain_shape) != shape:
            raise ValueError(f"prior images are {shape} but the operator maps {tuple(operator.domain_shape)} images")
        self.shape, pixels = shape, math.prod(shape)
        self.prior, self.operator, self.noise_std = prior, operator, float(noise_std)
        with torch.no_grad():
            # columns of A^T as images, then S A^T and K = A S A^T + s^2 I
            basis = torch.eye(m, dtype=torch.float64).reshape(m, 1, *operator.range_shape)
            at = operator.adjoint(basis)[:, 0]  # (m, *shape)
            sat = prior.covariance_apply(at)  # (m, *shape)
            k = operator(sat.unsqueeze(1)).reshape(m, m) + self.noise_std**2 * torch.eye(m, dtype=torch.float64)
            self._cholesky = torch.linalg.cholesky(0.5 * (k + k.T))
            self._gain = sat.reshape(m, pixels)  # rows: (S A^T)^T
            solved = torch.cholesky_solve(self._gain, self._cholesky)  # K^-1 A S
            prior_var = prior.variance_image().reshape(-1)
            self.pixel_variance = (prior_var - (self._gain * solved).sum(0)).clamp_min(0).reshape(1, 1, *shape)
            self.prior_mean = prior.mean_image().reshape(1, 1, *shape).to(torch.float64)
            self._data_mean = operator(self.prior_mean).reshape(1, m)

    def _weights(self, y: torch.Tensor) -> torch.Tensor:
        """K^-1 (y - A mu) as (B, m)."""
        residual = y.to(torch.float64).reshape(y.shape[0], -1) - self._data_mean
        return torch.cholesky_solve(residual.T, self._cholesky).T

    def mean(self, y: torch.Tensor) -> torch.Tensor:
        """E[x|y] for a (B, 1, angles, detectors) batch; returns y's dtype."""
        with torch.no_grad():
            update = (self._weights(y) @ self._gain).reshape(y.shape[0], 1, *self.operator.domain_shape)
        return (self.prior_mean + update).to(y.dtype)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.mean(y)

    def pixel_std(self, y: torch.Tensor) -> torch.Tensor:
        """The posterior's pixel std for each item of y, (B, 1, *image shape) (the same for every y)."""
        return self.pixel_variance.sqrt().expand(y.shape[0], *[-1] * (self.pixel_variance.dim() - 1))

    def functional(self, direction: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior of a . x for an image a (of the image shape): its mean per item (B,) and
        its variance a^T S a - (A S a)^T K^-1 (A S a) (the same for every y)."""
        a = direction.to(torch.float64)
        with torch.no_grad():
            mean = (self.mean(y.to(torch.float64)).flatten(1) * a.reshape(1, -1)).sum(1)
            gain_a = self._gain @ a.reshape(-1)  # A S a
            variance = (self.prior.covariance_apply(a) * a).sum() - gain_a @ torch.cholesky_solve(gain_a[:, None], self._cholesky)[:, 0]
        return mean, variance.clamp_min(0)

    def probability_positive(self, direction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(a . x > 0 | y) per item, (B,): the ROI test's exact answer."""
        mean, variance = self.functional(direction, y)
        return torch.special.ndtr(mean / variance.sqrt())

    def bayes_mse(self) -> float:
        """E||E[x|y] - x||^2 per pixel: the mean posterior variance."""
        return float(self.pixel_variance.mean())

    def log_evidence(self, y: torch.Tensor) -> torch.Tensor:
        """log N(y; A mu, K) per item of a (B, 1, angles, detectors) batch."""
        with torch.no_grad():
            residual = y.to(torch.float64).reshape(y.shape[0], -1) - self._data_mean
            white = torch.linalg.solve_triangular(self._cholesky, residual.T, upper=False)
            log_det = 2 * torch.log(torch.diagonal(self._cholesky)).sum()
            return -0.5 * (white**2).sum(0) - 0.5 * log_det - 0.5 * residual.shape[1] * math.log(2 * math.pi)

    def sample(self, y: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
        """Exact posterior draws (B, draws, 1, *image shape), by perturbation: a prior draw
        x' and noise e' corrected by the gain, x' + S A^T K^-1 (y - A x' - e'),
        has the posterior's law. Needs a prior that can draw (sample, render)."""
        b = y.shape[0]
        with torch.no_grad():
            prior_draws = self.prior.render(self.prior.sample(b * draws, generator), self.shape[-1]).to(torch.float64)
            noise = self.noise_std * torch.randn(b * draws, 1, *self.operator.range_shape, generator=generator, dtype=torch.float64)
            simulated = self.operator(prior_draws) + noise
            target = y.to(torch.float64).repeat_interleave(draws, 0)
            correction = (self._weights(target) - self._weights(simulated)) @ self._gain
            return (prior_draws + correction.reshape(b * draws, 1, *self.shape)).reshape(b, draws, 1, *self.shape)
