"""The exact posterior of a Gaussian-mixture prior under a linear operator and white noise.

For x ~ sum_k w_k N(mu_k, S_k) and y = A x + e, e ~ N(0, s^2 I), the
posterior is a mixture of the components' Gaussian posteriors,

    p(x|y) = sum_k w_k(y) N(x; m_k(y), P_k),  w_k(y) ∝ w_k N(y; A mu_k, A S_k A^T + s^2 I),

with m_k(y) and P_k each component's posterior mean and covariance
(gaussian.py). The P_k do not depend on y and are factored once; the
weights and the means do. E[x|y] = sum_k w_k(y) m_k(y) is nonlinear in y.
"""

from __future__ import annotations

import torch

from ..operators import LinearOperator
from ..priors.gaussian_mixture import GaussianMixturePrior
from .gaussian import GaussianPosterior


class GaussianMixturePosterior:
    """Posterior weights, mean, pixel variances and exact draws, in float64."""

    def __init__(self, prior: GaussianMixturePrior, operator: LinearOperator, noise_std: float) -> None:
        self.prior = prior
        self.components = [GaussianPosterior(c, operator, noise_std) for c in prior.components]

    def weights(self, y: torch.Tensor) -> torch.Tensor:
        """(B, K) posterior component probabilities of a (B, 1, angles, detectors) batch."""
        log_w = torch.stack([c.log_evidence(y) for c in self.components], 1) + self.prior.weights.log()
        return torch.softmax(log_w, 1)

    def mean(self, y: torch.Tensor) -> torch.Tensor:
        """E[x|y], (B, 1, n, n) in y's dtype."""
        w = self.weights(y)
        means = torch.stack([c.mean(y.to(torch.float64)) for c in self.components], 1)  # (B, K, 1, n, n)
        return (w[:, :, None, None, None] * means).sum(1).to(y.dtype)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.mean(y)

    def pixel_variance(self, y: torch.Tensor) -> torch.Tensor:
        """Var[x_i|y] per pixel, (B, 1, n, n): sum_k w_k (P_k,ii + m_k,i^2) - E[x_i|y]^2."""
        w = self.weights(y)[:, :, None, None, None]
        means = torch.stack([c.mean(y.to(torch.float64)) for c in self.components], 1)
        variances = torch.stack([c.pixel_variance for c in self.components], 1)
        mean = (w * means).sum(1)
        return ((w * (variances + means**2)).sum(1) - mean**2).clamp_min(0)

    def probability_positive(self, direction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """P(a . x > 0 | y) per item, (B,): sum_k w_k(y) P_k(a . x > 0 | y)."""
        per_component = torch.stack([c.probability_positive(direction, y) for c in self.components], 1)
        return (self.weights(y) * per_component).sum(1)

    def pixel_std(self, y: torch.Tensor) -> torch.Tensor:
        """The posterior's pixel std, (B, 1, n, n)."""
        return self.pixel_variance(y).sqrt()

    def sample(self, y: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
        """Exact posterior draws (B, draws, 1, n, n): a component by the posterior
        weights, then an exact draw of that component's Gaussian posterior."""
        w = self.weights(y)
        labels = torch.multinomial(w, draws, replacement=True, generator=generator)  # (B, draws)
        out = torch.empty(y.shape[0], draws, 1, self.prior.size, self.prior.size, dtype=torch.float64)
        for k, component in enumerate(self.components):
            per_item = component.sample(y, draws, generator)
            out = torch.where((labels == k)[:, :, None, None, None], per_item, out)
        return out
