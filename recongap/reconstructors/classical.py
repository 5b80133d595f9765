"""Classical baselines whose few parameters are chosen on the validation split."""

from __future__ import annotations

import itertools
import math

import torch

from ..metrics import mse
from ..operators import FILTERS, LinearOperator, RayTransform


class FBPReconstructor:
    """Filtered back-projection (CT only); filter and frequency scaling chosen on val."""

    def __init__(self, operator: RayTransform, filter: str = "hann", frequency_scaling: float = 1.0) -> None:
        self.operator, self.filter, self.frequency_scaling = operator, filter, frequency_scaling

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.operator.fbp(y, self.filter, self.frequency_scaling)

    def fit(self, y: torch.Tensor, x: torch.Tensor, scalings: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)) -> dict:
        """Grid search over FILTERS x scalings for the lowest mean MSE."""
        scores = {}
        for name, c in itertools.product(FILTERS, scalings):
            scores[(name, c)] = float(mse(self.operator.fbp(y, name, c), x).mean())
        self.filter, self.frequency_scaling = min(scores, key=scores.get)
        return {"filter": self.filter, "frequency_scaling": self.frequency_scaling}


class FirstReconstruction:
    """The operator's own first reconstruction (pseudo-inverse, zero-filled
    inverse FFT, Tikhonov): the linear baseline of the kinds FBP is not for."""

    def __init__(self, operator: LinearOperator) -> None:
        self.operator = operator

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.operator.first_reconstruction(y)

    def fit(self, y: torch.Tensor, x: torch.Tensor) -> dict:
        """Nothing to choose."""
        return {}


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary, one channel per axis:
    (B, 1, H, W) -> (B, 2, H, W), (B, 1, N) -> (B, 1, N)."""
    parts = []
    for axis in range(2, x.dim()):
        d = torch.zeros_like(x)
        n = x.shape[axis]
        d.narrow(axis, 0, n - 1).copy_(x.narrow(axis, 1, n - 1) - x.narrow(axis, 0, n - 1))
        parts.append(d)
    return torch.cat(parts, dim=1)


def gradient_adjoint(g: torch.Tensor) -> torch.Tensor:
    """The adjoint of `gradient` (minus the divergence)."""
    out = torch.zeros_like(g[:, :1])
    for c, axis in enumerate(range(2, g.dim())):
        gc, n = g[:, c : c + 1], g.shape[axis]
        out.narrow(axis, 0, n - 1).sub_(gc.narrow(axis, 0, n - 1))
        out.narrow(axis, 1, n - 1).add_(gc.narrow(axis, 0, n - 1))
    return out


class TVReconstructor:
    """argmin_x 1/2 ||A x - y||^2 + weight * TV(x) [+ x >= 0], by PDHG.

    Chambolle-Pock with tau = sigma = 1 / ||K||, K = [A; grad], using
    ||K||^2 <= ||A||^2 + 4 d (d = 2 for images, 1 for signals). Batched:
    every item of y is solved at once.
    """

    def __init__(self, operator: LinearOperator, weight: float = 1e-3, iterations: int = 300, nonnegative: bool = False) -> None:
        self.operator, self.weight, self.iterations, self.nonnegative = operator, weight, iterations, nonnegative

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        op = self.operator
        dims = len(op.domain_shape)
        step = 1.0 / math.sqrt(op.norm() ** 2 + 4.0 * dims)
        with torch.no_grad():
            x = torch.zeros(y.shape[0], 1, *op.domain_shape, dtype=y.dtype, device=y.device)
            x_bar, p = x.clone(), torch.zeros_like(y)
            q = torch.zeros(y.shape[0], dims, *op.domain_shape, dtype=y.dtype, device=y.device)
            for _ in range(self.iterations):
                p = (p + step * (op(x_bar) - y)) / (1 + step)
                q = q + step * gradient(x_bar)
                q = q / torch.clamp(torch.linalg.vector_norm(q, dim=1, keepdim=True) / self.weight, min=1.0)
                x_new = x - step * (op.adjoint(p) + gradient_adjoint(q))
                if self.nonnegative:
                    x_new = x_new.clamp_min(0)
                x_bar = 2 * x_new - x
                x = x_new
        return x

    def fit(self, y: torch.Tensor, x: torch.Tensor, weights: tuple[float, ...] | None = None) -> dict:
        """Log-grid search of the TV weight for the lowest mean MSE."""
        weights = weights or tuple(float(w) for w in torch.logspace(-4, -1, 7))
        scores = {}
        for w in weights:
            self.weight = w
            scores[w] = float(mse(self(y), x).mean())
        self.weight = min(scores, key=scores.get)
        return {"weight": self.weight}
