"""`UndersampledFourier`: MRI as a real image sampled on part of its 2-D k-space.

The orthonormal 2-D DFT of a real image, kept on a mask (centred k-space, row
= phase-encode line): a Cartesian mask of random lines with a fully sampled
centre, or a radial one of spokes through the centre. The data are the real
and imaginary parts of the kept coefficients, (2, K): the operator is a real
linear map, so its adjoint is Re(F^H S^T z) with z = real + i imaginary, and
the zero-filled inverse FFT is that adjoint (first reconstruction).

What follows from a real image: its spectrum is Hermitian, so a frequency
measured without its mirror (an asymmetric Cartesian mask) comes back at half
its amplitude in the zero-filled reconstruction, A A^T is not the identity,
and the imaginary parts at the DC and Nyquist points are zero for every image
(those data entries hold noise only).
"""

from __future__ import annotations

import numpy as np
import torch

from .base import LinearOperator


def cartesian_mask(size: int, acceleration: int, centre_fraction: float = 0.08, seed: int = 0) -> np.ndarray:
    """(size, size) bool: size / acceleration phase-encode lines (rows), the
    round(centre_fraction * size) central ones always, the rest drawn uniformly."""
    if acceleration < 1:
        raise ValueError(f"mri: acceleration must be >= 1, got {acceleration}")
    lines = max(1, round(size / acceleration))
    centre = min(lines, max(1, round(centre_fraction * size)))
    middle = size // 2
    chosen = set(range(middle - centre // 2, middle - centre // 2 + centre))
    rest = np.array([r for r in range(size) if r not in chosen])
    rng = np.random.default_rng(seed)
    chosen |= set(rng.choice(rest, size=lines - len(chosen), replace=False).tolist())
    mask = np.zeros((size, size), dtype=bool)
    mask[sorted(chosen)] = True
    return mask


def radial_mask(size: int, spokes: int) -> np.ndarray:
    """(size, size) bool: the grid points nearest `spokes` lines through the
    centre at angles pi k / spokes."""
    if spokes < 1:
        raise ValueError(f"mri: spokes must be >= 1, got {spokes}")
    mask = np.zeros((size, size), dtype=bool)
    radius = np.linspace(-size / 2, size / 2, 4 * size)
    for angle in np.pi * np.arange(spokes) / spokes:
        rows = np.clip(np.round(size // 2 + radius * np.sin(angle)).astype(int), 0, size - 1)
        cols = np.clip(np.round(size // 2 + radius * np.cos(angle)).astype(int), 0, size - 1)
        mask[rows, cols] = True
    return mask


class UndersampledFourier(LinearOperator):
    """y = (Re, Im) of the orthonormal 2-D DFT of x on the mask's k-space points.

    Images (B, 1, size, size), data (B, 1, 2, K), K = mask.sum(), the points in
    the order of the unshifted FFT grid (the DC coefficient first when sampled).
    """

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2 or mask.shape[0] != mask.shape[1] or not mask.any():
            raise ValueError(f"mri: mask must be a square 2-D boolean array with a sampled point, got shape {mask.shape}")
        self.mask = mask
        self.size = mask.shape[0]
        # flat indices into the unshifted FFT grid of the mask's centred points
        self._kept = torch.from_numpy(np.flatnonzero(np.fft.ifftshift(mask)))
        self.samples = int(mask.sum())

    @classmethod
    def cartesian(cls, size: int, acceleration: int, centre_fraction: float = 0.08, seed: int = 0) -> "UndersampledFourier":
        return cls(cartesian_mask(size, acceleration, centre_fraction, seed))

    @classmethod
    def radial(cls, size: int, spokes: int) -> "UndersampledFourier":
        return cls(radial_mask(size, spokes))

    @property
    def kept_indices(self) -> torch.Tensor:
        """Flat indices, in the unshifted FFT grid, of the sampled points (the data's order)."""
        return self._kept

    @property
    def domain_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def range_shape(self) -> tuple[int, int]:
        return (2, self.samples)

    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fft2(x.detach().reshape(-1, self.size, self.size), norm="ortho").flatten(1)
        kept = k[:, self._kept.to(x.device)]
        return torch.cat([kept.real, kept.imag], dim=1)

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        y = y.detach()
        z = torch.complex(y[:, : self.samples], y[:, self.samples :])
        full = torch.zeros(y.shape[0], self.size * self.size, dtype=z.dtype, device=y.device)
        full[:, self._kept.to(y.device)] = z
        return torch.fft.ifft2(full.view(-1, self.size, self.size), norm="ortho").real.flatten(1)

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """The zero-filled inverse FFT (real part): the adjoint."""
        return self.adjoint(y)

    def extra_repr(self) -> str:
        return f"size={self.size}, samples={self.samples} of {self.size * self.size}"
