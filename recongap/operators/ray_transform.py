"""`RayTransform`: the CT forward operator as a differentiable torch module."""

from __future__ import annotations

import torch

from .backends import make_backend
from .base import LinearOperator
from .fbp import FILTERS, FilteredBackProjection
from .geometry import Geometry


class RayTransform(LinearOperator):
    """2D ray transform A over the image square [-1, 1]^2, with adjoint and FBP
    (its first reconstruction).

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
        LinearOperator.__init__(op)
        op._setup(geometry, backend, projector)
        return op

    def _setup(self, geometry: Geometry, backend: str, projector: str | None) -> None:
        self.geometry = geometry
        self.backend = make_backend(backend, geometry, projector)
        self._fbp: FilteredBackProjection | None = None

    # --- shapes --------------------------------------------------------------
    @property
    def domain_shape(self) -> tuple[int, int]:
        return self.geometry.image_shape

    @property
    def range_shape(self) -> tuple[int, int]:
        return self.geometry.data_shape

    # --- the operator --------------------------------------------------------
    def _forward_flat(self, x: torch.Tensor) -> torch.Tensor:
        return self.backend.forward(x)

    def _adjoint_flat(self, y: torch.Tensor) -> torch.Tensor:
        return self.backend.adjoint(y)

    def first_reconstruction(self, y: torch.Tensor) -> torch.Tensor:
        """FBP with the Hann filter at full frequency."""
        return self.fbp(y)

    def fbp(self, y: torch.Tensor, filter: str = "hann", frequency_scaling: float = 1.0) -> torch.Tensor:
        """Filtered back-projection; `filter` is one of FILTERS, scaling in (0, 1]."""
        self._check(y, self.range_shape, "data")
        if filter not in FILTERS:
            raise ValueError(f"unknown FBP filter {filter!r}; choose one of {list(FILTERS)}")
        if self._fbp is None:
            self._fbp = FilteredBackProjection(self.geometry)
        flat = self._fbp(y.reshape(y.shape[0], -1), filter, frequency_scaling)
        return flat.reshape(y.shape[0], 1, *self.domain_shape)

    def extra_repr(self) -> str:
        g = self.geometry
        return f"size={g.size}, angles={g.angles}, detectors={g.resolved_detectors}, geometry={g.kind!r}, backend={self.backend.name!r}"
