"""`LinearOperator`: what every forward problem gives the methods and the reference.

Every method, the closed-form posteriors and the MCMC reference work through
this interface; only FBP (CT's classical method and first reconstruction),
the finer measurement grid and the ellipse block sampler need a `RayTransform`.
A pipeline's operator is built from its description (forward.py).

A linear map A from images (B, 1, *domain_shape) to data (B, 1, *range_shape),
real tensors of either float precision on any device, with

- `forward` (A x) and `adjoint` (A^T y), each differentiable, the backward of
  one being the other (to any order, through `apply_linear`),
- `first_reconstruction` (FBP for CT, a pseudo-inverse or zero-filled inverse
  elsewhere): the input of learned post-processing, cheap and linear,
- `norm`, ||A||, which scales the unrolled methods' steps.

A subclass writes `_forward_flat` and `_adjoint_flat` on flat (B, n) batches and
`first_reconstruction`; the shape checks, autograd and the norm are here.
"""

from __future__ import annotations

import torch
from torch import nn

from .linear import apply_linear


class LinearOperator(nn.Module):
    """A linear forward operator with its adjoint, first reconstruction and norm."""

    def __init__(self) -> None:
        super().__init__()
        self._norm: float | None = None

    # --- what a subclass provides -------------------------------------------
    @property
    def domain_shape(self) -> tuple[int, ...]:
        """Shape of one image, without batch and channel."""
        raise NotImplementedError

    @property
    def range_shape(self) -> tuple[int, ...]:
        """Shape of one measurement, without batch and channel."""
        raise NotImplementedError

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        """A x_b for each row of a (B, n_domain) batch; no autograd needed."""
        raise NotImplementedError

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y_b for each row of a (B, n_range) batch; no autograd needed."""
        raise NotImplementedError

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """A cheap linear estimate of the image from data y (B, 1, *range_shape)."""
        raise NotImplementedError

    # --- the operator ----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = A x for images x of shape (B, 1, *domain_shape)."""
        self._check(x, self.domain_shape, "images")
        flat = apply_linear(x.reshape(x.shape[0], -1), self._forward_flat, self._adjoint_flat)
        return flat.reshape(x.shape[0], 1, *self.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y for data y of shape (B, 1, *range_shape)."""
        self._check(y, self.range_shape, "data")
        flat = apply_linear(y.reshape(y.shape[0], -1), self._adjoint_flat, self._forward_flat)
        return flat.reshape(y.shape[0], 1, *self.domain_shape)

    def norm(self, iterations: int = 100) -> float:
        """Operator norm ||A|| by power iteration on A^T A, in float64 (cached)."""
        if self._norm is None:
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(1, 1, *self.domain_shape, generator=gen, dtype=torch.float64)
            value = 0.0
            with torch.no_grad():
                for _ in range(iterations):
                    x = x / torch.linalg.vector_norm(x)
                    x = self.adjoint(self(x))
                    value = float(torch.linalg.vector_norm(x)) ** 0.5
            self._norm = value
        return self._norm

    def _check(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        name = type(self).__name__
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} expects a torch.Tensor of {what}, got {type(t).__name__}")
        expected = f"(B, 1, {', '.join(str(s) for s in shape)})"
        if t.ndim != 2 + len(shape) or t.shape[1] != 1 or tuple(t.shape[2:]) != tuple(shape):
            raise ValueError(f"{name} expects {what} of shape {expected}, got {tuple(t.shape)}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} expects float32 or float64 {what}, got {t.dtype}")
