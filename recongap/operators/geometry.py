"""Acquisition geometry of a 2D CT scan, in physical units.

The image always covers the square [-1, 1]^2 (as the priors do), so line
integrals are in the same units whatever the pixel count. ASTRA is given that
window explicitly, which makes its projections physical line integrals too.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

GeometryKind = Literal["parallel", "fan"]

#: Half-width of the image square: the image covers [-EXTENT, EXTENT]^2.
EXTENT = 1.0


@dataclass(frozen=True)
class Geometry:
    """A 2D parallel- or fan-beam geometry with a flat detector.

    `detectors` and `detector_spacing` default to a detector that covers the
    image diagonal with one detector per pixel width (magnified for fan beam).
    `angle_range` defaults to pi for parallel beam and 2 pi for fan beam, the
    ranges for which `fbp` is exact (it also weights a parallel range below pi
    and refuses the rest; see `recongap.operators.fbp.angle_weight`).
    """

    size: int
    angles: int = 30
    kind: GeometryKind = "parallel"
    angle_range: float | None = None
    detectors: int | None = None
    detector_spacing: float | None = None
    source_distance: float = 4.0
    detector_distance: float = 4.0

    def __post_init__(self) -> None:
        if self.kind not in ("parallel", "fan"):
            raise ValueError(f"geometry must be 'parallel' or 'fan', got {self.kind!r}")
        if int(self.size) < 2:
            raise ValueError(f"size must be >= 2 pixels, got {self.size}")
        if int(self.angles) < 1:
            raise ValueError(f"angles must be >= 1, got {self.angles}")
        if self.kind == "fan" and self.source_distance <= math.sqrt(2) * EXTENT:
            raise ValueError(
                f"fan beam needs source_distance > sqrt(2) (outside the image), "
                f"got {self.source_distance}"
            )
        if self.angle_range is not None and not 0 < self.angle_range <= 2 * math.pi:
            raise ValueError(f"angle_range must be in (0, 2 pi] radians, got {self.angle_range}")
        if self.detectors is not None and int(self.detectors) < 1:
            raise ValueError(f"detectors must be >= 1, got {self.detectors}")
        if self.detector_spacing is not None and self.detector_spacing <= 0:
            raise ValueError(f"detector_spacing must be > 0, got {self.detector_spacing}")

    # --- derived quantities -------------------------------------------------
    @property
    def pixel_size(self) -> float:
        return 2 * EXTENT / self.size

    @property
    def magnification(self) -> float:
        """Detector plane over iso-centre scale (1 for parallel beam)."""
        if self.kind == "parallel":
            return 1.0
        return (self.source_distance + self.detector_distance) / self.source_distance

    @property
    def resolved_angle_range(self) -> float:
        if self.angle_range is not None:
            return float(self.angle_range)
        return math.pi if self.kind == "parallel" else 2 * math.pi

    @property
    def resolved_detector_spacing(self) -> float:
        if self.detector_spacing is not None:
            return float(self.detector_spacing)
        return self.pixel_size * self.magnification

    @property
    def resolved_detectors(self) -> int:
        if self.detectors is not None:
            return int(self.detectors)
        radius = math.sqrt(2) * EXTENT  # circle through the image corners
        if self.kind == "parallel":
            half_width = radius
        else:
            half_angle = math.asin(radius / self.source_distance)
            half_width = (self.source_distance + self.detector_distance) * math.tan(half_angle)
        return int(math.ceil(2 * half_width / self.resolved_detector_spacing))

    @property
    def angle_values(self) -> np.ndarray:
        return np.linspace(0.0, self.resolved_angle_range, self.angles, endpoint=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def data_shape(self) -> tuple[int, int]:
        return (self.angles, self.resolved_detectors)

    def resolved(self) -> dict:
        """Every parameter with defaults filled in: what the data depends on."""
        d = asdict(self)
        d.update(
            angle_range=self.resolved_angle_range,
            detectors=self.resolved_detectors,
            detector_spacing=self.resolved_detector_spacing,
        )
        if self.kind == "parallel":
            d.pop("source_distance")
            d.pop("detector_distance")
        return d

    def key(self) -> str:
        """A short stable hash of the resolved geometry (cache keys, checks)."""
        blob = json.dumps(self.resolved(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def refined(self, factor: int) -> "Geometry":
        """The same scan over a `factor` times finer image grid."""
        return Geometry(
            size=self.size * factor,
            angles=self.angles,
            kind=self.kind,
            angle_range=self.resolved_angle_range,
            detectors=self.resolved_detectors,
            detector_spacing=self.resolved_detector_spacing,
            source_distance=self.source_distance,
            detector_distance=self.detector_distance,
        )

    # --- ASTRA descriptions --------------------------------------------------
    def astra_vol_geom(self) -> dict:
        import astra

        n = self.size
        return astra.create_vol_geom(n, n, -EXTENT, EXTENT, -EXTENT, EXTENT)

    def astra_proj_geom(self) -> dict:
        import astra

        if self.kind == "parallel":
            return astra.create_proj_geom(
                "parallel", self.resolved_detector_spacing, self.resolved_detectors, self.angle_values
            )
        return astra.create_proj_geom(
            "fanflat",
            self.resolved_detector_spacing,
            self.resolved_detectors,
            self.angle_values,
            self.source_distance,
            self.detector_distance,
        )

    def vectors(self) -> np.ndarray:
        """ASTRA's per-angle vectors: (ray or source xy, detector centre xy, u xy)."""
        import astra

        return np.asarray(astra.geom_2vec(self.astra_proj_geom())["Vectors"], dtype=np.float64)

    def pixel_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of each pixel centre, row-major; row 0 is the top (y = +1), as in ASTRA."""
        h = self.pixel_size
        c = -EXTENT + (np.arange(self.size) + 0.5) * h
        x = np.tile(c, self.size)
        y = np.repeat(c[::-1], self.size)
        return x, y
