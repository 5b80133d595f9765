"""`RayTransform`: the CT forward operator as a differentiable torch module."""

from __future__ import annotations

import torch
from torch import nn

from .backends import make_backend
from .fbp import FILTERS, FilteredBackProjection
from .geometry import Geometry
from .linear import apply_linear


class RayTransform(nn.Module):
    """2D ray transform A over the image square [-1, 1]^2, with adjoint and FBP.

    Images are (B, 1, size, size) and data (B, 1, angles, detectors) tensors,
    float32 or float64, on any device. A and A.adjoint are differentiable (the
    backward of one is the other). `backend="torch"` (default) multiplies by
    ASTRA's sparse system matrix in torch; `backend="astra"` calls ASTRA.
    """

    def __init__(
        self,
        size: int,
        angles: int = 30,
        detectors: int | None = None,
        geometry: str = "parallel",
        backend: str = "torch",
        *,
        angle_range: float | None = None,
        detector_spacing: float | None = None,
        source_distance: float = 4.0,
        detector_distance: float = 4.0,
        projector: str | None = None,
    ) -> None:
        super().__init__()
        spec = Geometry(
            size=size,
            angles=angles,
            kind=geometry,  # type: ignore[arg-type]
            angle_range=angle_range,
            detectors=detectors,
            detector_spacing=detector_spacing,
            source_distance=source_distance,
            detector_distance=detector_distance,
        )
        self._setup(spec, backend, projector)

    @classmethod
    def from_geometry(cls, geometry: Geometry, backend: str = "torch", projector: str | None = None) -> "RayTransform":
        op = cls.__new__(cls)
        nn.Module.__init__(op)
        op._setup(geometry, backend, projector)
        return op

    def _setup(self, geometry: Geometry, backend: str, projector: str | None) -> None:
        self.geometry = geometry
        self.backend = make_backend(backend, geometry, projector)
        self._fbp: FilteredBackProjection | None = None
        self._norm: float | None = None

    # --- shapes --------------------------------------------------------------
    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.geometry.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return self.geometry.data_shape

    def _check(self, t: torch.Tensor, shape: tuple[int, int], what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"RayTransform expects a torch.Tensor of {what}, got {type(t).__name__}")
        expected = f"(B, 1, {shape[0]}, {shape[1]})"
        if t.ndim != 4 or t.shape[1] != 1 or tuple(t.shape[2:]) != shape:
            raise ValueError(f"RayTransform expects {what} of shape {expected}, got {tuple(t.shape)}")
        if t.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"RayTransform expects float32 or float64 {what}, got {t.dtype}")

    # --- the operator --------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = A x for images x of shape (B, 1, size, size)."""
        self._check(x, self.domain_shape, "images")
        flat = apply_linear(x.reshape(x.shape[0], -1), self.backend.forward, self.backend.adjoint)
        return flat.reshape(x.shape[0], 1, *self.range_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y for data y of shape (B, 1, angles, detectors)."""
        self._check(y, self.range_shape, "data")
        flat = apply_linear(y.reshape(y.shape[0], -1), self.backend.adjoint, self.backend.forward)
        return flat.reshape(y.shape[0], 1, *self.domain_shape)

    def fbp(self, y: torch.Tensor, filter: str = "hann", frequency_scaling: float = 1.0) -> torch.Tensor:
        """Filtered back-projection; `filter` is one of FILTERS, scaling in (0, 1]."""
        self._check(y, self.range_shape, "data")
        if filter not in FILTERS:
            raise ValueError(f"unknown FBP filter {filter!r}; choose one of {list(FILTERS)}")
        if self._fbp is None:
            self._fbp = FilteredBackProjection(self.geometry)
        flat = self._fbp(y.reshape(y.shape[0], -1), filter, frequency_scaling)
        return flat.reshape(y.shape[0], 1, *self.domain_shape)

    def norm(self, iterations: int = 100) -> float:
        """Operator norm ||A|| by power iteration on A^T A (cached)."""
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

    def extra_repr(self) -> str:
        g = self.geometry
        return f"size={g.size}, angles={g.angles}, detectors={g.resolved_detectors}, geometry={g.kind!r}, backend={self.backend.name!r}"
