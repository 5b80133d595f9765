"""`Integration`: the 1-D operator (A f)(t) = integral of f from 0 to t on [0, 1].

The academic example of the analytic deep prior (Bremen talk): f on n
midpoints t_j = (j + 1/2) h, h = 1/n, and (A f)_i = h (f_0 + ... + f_{i-1}
+ f_i / 2), the midpoint rule up to t_i (the last cell counted by half).
Signals are (B, 1, n), data (B, 1, n). A is lower triangular and
invertible but ill-conditioned (its inverse differentiates), so the first
reconstruction is Tikhonov: (A^T A + alpha I)^{-1} A^T y, solved exactly.
"""

from __future__ import annotations

import torch

from .base import LinearOperator


class Integration(LinearOperator):
    """Cumulative integration on [0, 1], n points."""

    def __init__(self, points: int, alpha: float = 1e-3) -> None:
        super().__init__()
        if points < 2:
            raise ValueError(f"integration: points must be >= 2, got {points}")
        if alpha <= 0:
            raise ValueError(f"integration: alpha (Tikhonov weight) must be > 0, got {alpha}")
        self.points, self.alpha, self.h = points, alpha, 1.0 / points
        self._solve: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    @property
    def domain_shape(self) -> tuple[int]:
        return (self.points,)

    @property
    def range_shape(self) -> tuple[int]:
        return (self.points,)

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        return self.h * (torch.cumsum(x, dim=1) - 0.5 * x)

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        y = y.detach()
        return self.h * (torch.cumsum(y.flip(1), dim=1).flip(1) - 0.5 * y)

    def matrix(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
        """A as a dense (n, n) matrix."""
        return self._forward_flat(torch.eye(self.points, dtype=dtype, device=device)).T

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """Tikhonov: (A^T A + alpha I)^{-1} A^T y."""
        self._check(y, self.range_shape, "data")
        key = (str(y.device), y.dtype)
        if key not in self._solve:
            a = self.matrix(torch.float64, y.device)
            normal = a.T @ a + self.alpha * torch.eye(self.points, dtype=torch.float64, device=y.device)
            self._solve[key] = torch.linalg.solve(normal, a.T).to(y.dtype)
        return (y.reshape(y.shape[0], -1) @ self._solve[key].T).reshape(y.shape[0], 1, self.points)

    def extra_repr(self) -> str:
        return f"points={self.points}, alpha={self.alpha}"
