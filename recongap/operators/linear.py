"""Autograd plumbing for linear maps with a known adjoint, and a sparse one.

`apply_linear(x, forward, adjoint)` makes any pair of functions (numpy, ASTRA,
sparse matmul) a differentiable torch op whose backward is the adjoint. The
backward itself goes through `apply_linear` again, so second derivatives
(gradient penalties, Hessian-vector products) work too.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, forward: Fn, adjoint: Fn) -> torch.Tensor:  # type: ignore[override]
        ctx.forward, ctx.adjoint = forward, adjoint
        return forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return _Linear.apply(grad, ctx.adjoint, ctx.forward), None, None


def apply_linear(x: torch.Tensor, forward: Fn, adjoint: Fn) -> torch.Tensor:
    """forward(x), differentiable with backward = adjoint (to any order)."""
    return _Linear.apply(x, forward, adjoint)


class SparseMatrix:
    """A scipy sparse matrix usable on batches of torch tensors on any device.

    Torch CSR copies of the matrix and of its transpose are made on first use
    per (device, dtype) and kept: the transpose is stored explicitly because
    multiplying by a stored CSR is several times faster than by a transposed
    view.
    """

    def __init__(self, matrix: sp.spmatrix) -> None:
        self.matrix = matrix.tocsr()
        self._torch: dict[tuple[str, torch.dtype, bool], torch.Tensor] = {}

    def _csr(self, device: torch.device, dtype: torch.dtype, transpose: bool) -> torch.Tensor:
        key = (str(device), dtype, transpose)
        if key not in self._torch:
            m = self.matrix.T.tocsr() if transpose else self.matrix
            m.sort_indices()
            np_dtype = np.float64 if dtype == torch.float64 else np.float32
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Sparse.*")
                t = torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data.astype(np_dtype)),
                    size=m.shape,
                )
            self._torch[key] = t.to(device)
        return self._torch[key]

    def matmul(self, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """M @ x_b (or M^T @ x_b) for each row x_b of a (B, n) tensor; no autograd."""
        m = self._csr(x.device, x.dtype, transpose)
        return (m @ x.detach().T.contiguous()).T

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable M @ x_b for a (B, n) batch."""
        return apply_linear(x, self.matmul, lambda y: self.matmul(y, transpose=True))
