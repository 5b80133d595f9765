"""The exact posterior of a Gaussian prior under a linear operator and white noise.

For x ~ N(mu, S) and y = A x + e, e ~ N(0, s^2 I):

    E[x|y]   = mu + S A^T K^-1 (y - A mu),   K = A S A^T + s^2 I
    Cov[x|y] = S - S A^T K^-1 A S

Here the data space is small (angles x detectors, a few thousand), so K is
formed densely and factored once; S is the prior's covariance operator. The
posterior covariance does not depend on y, so the Bayes risk
E||E[x|y] - x||^2 = trace Cov[x|y] is a number, the denominator of the
normalized error on the `gaussian_field` pipeline.
"""

from __future__ import annotations

import torch

from ..operators import RayTransform
from ..priors import GaussianFieldPrior


class GaussianPosterior:
    """Closed-form posterior mean and pixel variances, in float64."""

    def __init__(self, prior: GaussianFieldPrior, operator: RayTransform, noise_std: float) -> None:
        n, m = prior.size, operator.range_shape[0] * operator.range_shape[1]
        if operator.domain_shape != (n, n):
            raise ValueError(f"prior is {n}x{n} but the operator maps {operator.domain_shape} images")
        self.prior, self.operator, self.noise_std = prior, operator, float(noise_std)
        with torch.no_grad():
            # columns of A^T as images, then S A^T and K = A S A^T + s^2 I
            basis = torch.eye(m, dtype=torch.float64).reshape(m, 1, *operator.range_shape)
            at = operator.adjoint(basis)[:, 0]  # (m, n, n)
            sat = prior.covariance_apply(at)  # (m, n, n)
            k = operator(sat.unsqueeze(1)).reshape(m, m) + self.noise_std**2 * torch.eye(m, dtype=torch.float64)
            self._cholesky = torch.linalg.cholesky(0.5 * (k + k.T))
            self._gain = sat.reshape(m, n * n)  # rows: (S A^T)^T
            solved = torch.cholesky_solve(self._gain, self._cholesky)  # K^-1 A S
            prior_var = prior.std**2 * prior.covariance_diagonal().reshape(-1)
            self.pixel_variance = (prior_var - (self._gain * solved).sum(0)).clamp_min(0).reshape(1, 1, n, n)
        self.prior_mean = torch.full((1, 1, n, n), prior.mean, dtype=torch.float64)

    def mean(self, y: torch.Tensor) -> torch.Tensor:
        """E[x|y] for a (B, 1, angles, detectors) batch; returns y's dtype."""
        with torch.no_grad():
            residual = (y.to(torch.float64) - self.operator(self.prior_mean)).reshape(y.shape[0], -1)
            weights = torch.cholesky_solve(residual.T, self._cholesky)  # (m, B)
            update = (weights.T @ self._gain).reshape(y.shape[0], 1, *self.operator.domain_shape)
        return (self.prior_mean + update).to(y.dtype)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.mean(y)

    def bayes_mse(self) -> float:
        """E||E[x|y] - x||^2 per pixel: the mean posterior variance."""
        return float(self.pixel_variance.mean())
