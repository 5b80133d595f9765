"""A mixture of Gaussian random fields: a prior whose posterior is exact and not Gaussian.

x ~ sum_k w_k N(mean_k, std_k^2 C_k), each component a GaussianFieldPrior
(its own level, amplitude and length scales). Under a linear operator and
Gaussian noise the posterior is again a mixture of Gaussians
(recongap.posterior.gaussian_mixture), so E[x|y] is known exactly, yet it is
a nonlinear function of y: the weights depend on y. A reconstructor must
tell the components apart to reach it; a linear one cannot.

The parameters are the images themselves: a mixture has no single whitening
that makes it linear.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .gaussian_field import GaussianFieldPrior


class GaussianMixturePrior:
    """sum_k weights[k] components[k], all on the same size x size grid."""

    def __init__(self, components: Sequence[GaussianFieldPrior], weights: Sequence[float]) -> None:
        if len(components) < 2 or len(weights) != len(components):
            raise ValueError(f"a mixture needs at least 2 components and one weight each, got {len(components)} and {len(weights)}")
        sizes = {c.size for c in components}
        if len(sizes) != 1:
            raise ValueError(f"mixture components must share one grid size, got {sorted(sizes)}")
        if min(c.nugget for c in components) <= 0:
            raise ValueError("mixture components need a nugget > 0: the mixture's density needs each covariance at full rank")
        if min(weights) <= 0 or abs(sum(weights) - 1) > 1e-9:
            raise ValueError(f"mixture weights must be positive and sum to 1, got {list(weights)}")
        self.components = list(components)
        self.weights = torch.tensor(list(weights), dtype=torch.float64)
        self.size = sizes.pop()

    @property
    def param_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def sample_with_labels(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, size, size) float64 images and the (n,) component each was drawn from."""
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.size, self.size, generator=generator, dtype=torch.float64)
        images = torch.empty_like(z)
        for k, component in enumerate(self.components):
            chosen = labels == k
            if chosen.any():
                images[chosen] = component.render(z[chosen], self.size)[:, 0]
        return images, labels

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, size, size) float64 images (the parameters are the images)."""
        return self.sample_with_labels(n, generator)[0]

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor:
        """(n, size, size) images -> (n, 1, size, size)."""
        if size != self.size or params.shape[-2:] != self.param_shape:
            raise ValueError(f"GaussianMixturePrior is defined on {self.size}x{self.size}; got size {size}, parameters {tuple(params.shape)}")
        return params.unsqueeze(1)

    def component_log_probs(self, images: torch.Tensor) -> torch.Tensor:
        """(..., size, size) -> (..., K): log w_k + log N_k(x), the unnormalised log responsibilities."""
        log_w = self.weights.to(images.device, images.dtype).log()
        return torch.stack([c.image_log_prob(images) for c in self.components], -1) + log_w

    def log_prob(self, params: torch.Tensor) -> torch.Tensor:
        """Log-density of (..., size, size) images, per image."""
        if params.shape[-2:] != self.param_shape:
            raise ValueError(f"GaussianMixturePrior expects parameters (..., {self.size}, {self.size}), got {tuple(params.shape)}")
        return torch.logsumexp(self.component_log_probs(params), -1)

    def mean_image(self) -> torch.Tensor:
        """E[x], (size, size)."""
        return sum(w * torch.full((self.size, self.size), c.mean, dtype=torch.float64) for w, c in zip(self.weights.tolist(), self.components))

    def covariance_apply(self, v: torch.Tensor) -> torch.Tensor:
        """Cov[x] v for (..., size, size) v: sum_k w_k (S_k + m_k m_k^T) v - m m^T v,
        the moments a best linear estimator sees."""
        mean = self.mean_image().to(v.device, v.dtype)
        out = -mean * (mean * v).sum((-2, -1), keepdim=True)
        for w, c in zip(self.weights.tolist(), self.components):
            m = torch.full_like(mean, c.mean)
            out = out + w * (c.covariance_apply(v) + m * (m * v).sum((-2, -1), keepdim=True))
        return out

    def variance_image(self) -> torch.Tensor:
        """diag Cov[x] as a (size, size) grid."""
        mean = self.mean_image()
        second = sum(w * (c.std**2 * c.covariance_diagonal() + c.mean**2) for w, c in zip(self.weights.tolist(), self.components))
        return second - mean**2

