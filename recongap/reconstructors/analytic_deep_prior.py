"""The analytic deep prior (Dittmer, Kluth, Maass and Otero Baguer; the Bremen
talk, seed 004): the deep image prior with a network whose every layer is a
proximal-gradient step for a Tikhonov functional with a learned operator B,

    x(B) = L steps of  x <- prox_{h a R}(x - h B^T (B x - y)),   R = 1/2 ||.||^2,

B fitted to the one measurement y by minimising ||A x(B) - y||^2, starting
at B = A (the functional is then Tikhonov's). As in the talk, the network is
short (L layers) and each outer step starts from the previous output, so
the outer loop continues the proximal-gradient iteration while B moves.
B = A + D with D dense (range x image pixels), which needs no matrix of A.
The Tikhonov weight a and the number of outer steps are chosen on
validation items, from the error recorded along each fit.
"""

from __future__ import annotations

import math
import torch

from ..operators import LinearOperator
from .per_measurement import Progress, Record, StoppedFit


class AnalyticDeepPrior(StoppedFit):
    """Per measurement: plain gradient descent on D (as in the talk, at the
    rate `lr` / ||A||^2) for up to `max_iterations` outer steps of `layers`
    proximal-gradient layers each. `alphas` are the Tikhonov weights searched,
    in units of ||A||^2. The layers' step is 1 / ((||A|| + ||D||_F)^2 + a ||A||^2),
    the inverse of a bound on the functional's Lipschitz constant whatever B
    (a loose one: it shrinks the step as D grows, but never diverges)."""

    weight_name = "alpha"

    def __init__(
        self, operator: LinearOperator, layers: int = 10, lr: float = 1.0, max_iterations: int = 200, record_every: int = 10,
        alphas: tuple[float, ...] = (0.01, 0.1),
    ) -> None:
        super().__init__(alphas, max_iterations, record_every)
        self.operator, self.layers = operator, layers
        self.norm2 = operator.norm() ** 2
        self.pixels, self.data = math.prod(operator.domain_shape), math.prod(operator.range_shape)
        self.lr = lr / self.norm2

    def _apply(self, delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """B x = A x + D x for a (1, 1, *shape) image."""
        return self.operator(x) + (delta @ x.reshape(-1)).reshape(1, 1, *self.operator.range_shape)

    def _adjoint(self, delta: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """B^T r = A^T r + D^T r."""
        return self.operator.adjoint(r) + (delta.T @ r.reshape(-1)).reshape(1, 1, *self.operator.domain_shape)

    def network(self, delta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
        """`layers` proximal-gradient steps on 1/2 ||B x - y||^2 + a ||A||^2 / 2 ||x||^2 from x."""
        weight = alpha * self.norm2
        # ||B|| <= ||A|| + ||D||_F: a step that stays stable as B moves
        step = 1.0 / ((math.sqrt(self.norm2) + torch.linalg.matrix_norm(delta.detach())) ** 2 + weight)
        for _ in range(self.layers):
            x = (x - step * self._adjoint(delta, self._apply(delta, x) - y)) / (1 + step * weight)
        return x

    @torch.enable_grad()  # fitted by gradients, even when called under no_grad
    def trajectory(
        self, y: torch.Tensor, iterations: int, alpha: float, record: Record | None = None,
        progress: Progress | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """Fit B to one measurement y (1, 1, *range shape). Returns the last
        output x(B), the fitted D = B - A, and 1/2 ||A x(B) - y||^2 per step;
        `record(step, x)` sees the output every `record_every` steps."""
        if y.shape[0] != 1:
            raise ValueError(f"the analytic deep prior fits one measurement at a time, got a batch of {y.shape[0]}")
        delta = torch.zeros(self.data, self.pixels, dtype=y.dtype, requires_grad=True)
        optimizer = torch.optim.SGD([delta], lr=self.lr)
        x = torch.zeros(1, 1, *self.operator.domain_shape, dtype=y.dtype)
        misfits = []
        for step in range(iterations):
            optimizer.zero_grad()
            out = self.network(delta, x, y, alpha)
            loss = 0.5 * ((self.operator(out) - y) ** 2).sum()
            loss.backward()
            optimizer.step()
            misfits.append(float(loss.detach()))
            x = out.detach()  # the next outer step starts from this output
            if record is not None and (step + 1) % self.record_every == 0:
                record(step + 1, x)
            if progress is not None:
                progress(1)
        return x, delta.detach(), misfits
