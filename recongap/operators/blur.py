"""`Blur`: deblurring, a convolution with periodic boundaries.

The image is convolved with a Gaussian or a linear motion kernel, wrapping
around its edges (periodic boundary condition), so the 2-D DFT diagonalises
the operator: A = F^H diag(K) F, A^T = F^H diag(conj K) F, ||A|| = max |K|.
The first reconstruction is the Tikhonov (Wiener with a white prior) filter
conj K / (|K|^2 + alpha).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import LinearOperator


def gaussian_kernel(size: int, std: float) -> np.ndarray:
    """(size, size) Gaussian of `std` pixels, centred at (0, 0) with wrap-around, summing to 1."""
    if std <= 0:
        raise ValueError(f"blur: std must be > 0 pixels, got {std}")
    d = np.minimum(np.arange(size), size - np.arange(size)).astype(np.float64)
    k = np.exp(-0.5 * (d[:, None] ** 2 + d[None, :] ** 2) / std**2)
    return k / k.sum()


def motion_kernel(size: int, length: int, angle: float) -> np.ndarray:
    """(size, size) uniform segment `length` pixels long at `angle` radians, centred on (0, 0),
    wrapping, summing to 1: each pixel weighted by the length of segment inside it."""
    if length < 1:
        raise ValueError(f"blur: motion length must be >= 1 pixel, got {length}")
    k = np.zeros((size, size))
    # 8 samples per pixel of length along the segment, each counted in its nearest pixel:
    # a pixel's weight is the length of segment inside it
    along = (np.arange(8 * length) + 0.5) / 8 - length / 2
    rows = np.floor(along * math.sin(angle) + 0.5).astype(int) % size
    cols = np.floor(along * math.cos(angle) + 0.5).astype(int) % size
    np.add.at(k, (rows, cols), 1.0)
    return k / k.sum()


class Blur(LinearOperator):
    """y = k * x (circular convolution) for images and data of (size, size)."""

    def __init__(self, kernel: np.ndarray, alpha: float = 1e-3) -> None:
        super().__init__()
        kernel = np.asarray(kernel, dtype=np.float64)
        if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
            raise ValueError(f"blur: kernel must be square, got shape {kernel.shape}")
        if alpha <= 0:
            raise ValueError(f"blur: alpha (Tikhonov weight) must be > 0, got {alpha}")
        self.size, self.alpha = kernel.shape[0], alpha
        self._transfer = torch.from_numpy(np.fft.fft2(kernel))  # K, complex128

    @classmethod
    def gaussian(cls, size: int, std: float, alpha: float = 1e-3) -> "Blur":
        return cls(gaussian_kernel(size, std), alpha)

    @classmethod
    def motion(cls, size: int, length: int, angle: float = 0.0, alpha: float = 1e-3) -> "Blur":
        return cls(motion_kernel(size, length, angle), alpha)

    @property
    def transfer(self) -> torch.Tensor:
        """K, the kernel's 2-D DFT (complex128, CPU)."""
        return self._transfer

    @property
    def domain_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def range_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def _filter(self, x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
        images = x.detach().reshape(-1, self.size, self.size)
        spectrum = torch.fft.fft2(images) * transfer.to(images.device)
        return torch.fft.ifft2(spectrum).real.to(x.dtype).flatten(1)

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        return self._filter(x, self._transfer)

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        return self._filter(y, self._transfer.conj())

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """Tikhonov deconvolution: F^H (conj K / (|K|^2 + alpha)) F y."""
        self._check(y, self.range_shape, "data")
        k = self._transfer
        flat = self._filter(y.reshape(y.shape[0], -1), k.conj() / (k.abs() ** 2 + self.alpha))
        return flat.reshape(y.shape[0], 1, *self.domain_shape)

    def norm(self, iterations: int = 100) -> float:
        """max |K|: exact, the DFT diagonalises A."""
        return float(self._transfer.abs().max())

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}"
