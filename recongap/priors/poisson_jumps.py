"""Piecewise constant signals with a Poisson number of jumps, on [0, 1].

The analytic deep prior's test signals (Bremen talk) are of this kind. In the
continuum: jump positions a Poisson process of `rate` on [0, 1], and each
constant piece an independent N(mean, std^2) level. Seen at the n midpoints
t_j = (j + 1/2) / n, the signal changes between t_{j-1} and t_j exactly when
at least one jump falls between them, which happens independently for each
of the n - 1 gaps with probability 1 - exp(-rate / n); the level after it is
a fresh draw whatever the number of jumps. So on the grid the prior is
exactly: independent jump indicators b_j ~ Bernoulli(1 - exp(-rate / n)),
j = 1..n-1, and a N(mean, std^2) level per piece.

Given the indicators the signal is Gaussian, so under a linear operator and
Gaussian noise the indicators' posterior can be sampled with the levels
integrated out (recongap.posterior.jump_gibbs). The parameters of a draw
are the signal itself; its indicators are where it changes.
"""

from __future__ import annotations

import math

import torch


class PoissonJumpPrior:
    """Piecewise constant signals on `size` midpoints of [0, 1]."""

    def __init__(self, size: int, rate: float = 5.0, mean: float = 0.0, std: float = 1.0) -> None:
        if size < 2 or rate <= 0 or std <= 0:
            raise ValueError(f"invalid PoissonJumpPrior(size={size}, rate={rate}, std={std})")
        self.size, self.rate, self.mean, self.std = size, rate, mean, std

    @property
    def param_shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def image_shape(self) -> tuple[int]:
        return (self.size,)

    @property
    def jump_probability(self) -> float:
        """P(the signal changes between two neighbouring points) = 1 - exp(-rate / n)."""
        return -math.expm1(-self.rate / self.size)

    def sample_jumps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, size - 1) bool indicators: b[:, j - 1] says the signal changes between points j - 1 and j."""
        return torch.rand(n, self.size - 1, generator=generator, dtype=torch.float64) < self.jump_probability

    def signals(self, jumps: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """(n, size) signals from (n, size - 1) indicators and (n, size) levels, piece k taking levels[:, k]."""
        piece = torch.cat([torch.zeros(jumps.shape[0], 1, dtype=torch.long), jumps.long().cumsum(1)], 1)
        return levels.gather(1, piece)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, size) float64 signals (the parameters are the signals)."""
        jumps = self.sample_jumps(n, generator)
        levels = self.mean + self.std * torch.randn(n, self.size, generator=generator, dtype=torch.float64)
        return self.signals(jumps, levels)

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor:
        """(n, size) signals -> (n, 1, size)."""
        if size != self.size or params.shape[-1:] != self.param_shape:
            raise ValueError(f"PoissonJumpPrior is defined on {self.size} points; got size {size}, parameters {tuple(params.shape)}")
        return params.unsqueeze(1)

    def jumps_of(self, signals: torch.Tensor) -> torch.Tensor:
        """(n, size - 1) indicators of where (n, size) signals change (levels tie with probability 0)."""
        return signals[:, 1:] != signals[:, :-1]

    def jumps_log_prob(self, jumps: torch.Tensor) -> torch.Tensor:
        """log P(indicators), per row of (n, size - 1)."""
        p = self.jump_probability
        count = jumps.to(torch.float64).sum(1)
        return count * math.log(p) + (jumps.shape[1] - count) * math.log1p(-p)
