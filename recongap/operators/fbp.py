"""Filtered back-projection for parallel and flat-detector fan beam.

One implementation for every backend and device: a windowed ramp filter
applied with FFTs along the detector, then a pixel-driven back-projection with
linear interpolation stored as a sparse matrix. For fan beam the projections
are cosine-weighted before filtering and each (pixel, angle) term carries the
1/U^2 distance weight (Kak & Slaney, ch. 3, equispaced detectors). Each
angle's weight is its share of the scanned range (`angle_weight`): exact for
a full scan, pi (parallel) or 2 pi (both); a limited-angle parallel scan
(range < pi) back-projects the frequencies it measured at their true scale and
leaves the missing wedge out. Ranges that measure some lines twice and others
once (parallel between pi and 2 pi, fan-beam short scans) need redundancy
weights this module does not have, and are refused.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from .cache import cached_matrix
from .geometry import Geometry
from .linear import SparseMatrix

FILTERS = ("ram-lak", "shepp-logan", "cosine", "hann")

#: Part of the on-disk cache key of the back-projection matrix: bump it when
#: `backprojection_matrix` changes, or stale cached matrices would be reused.
BACKPROJECTION_VERSION = 2


def filter_window(name: str, freq: np.ndarray) -> np.ndarray:
    """Window over normalised frequency `freq` in [0, 1] (1 = cut-off)."""
    if name == "ram-lak":
        w = np.ones_like(freq)
    elif name == "shepp-logan":
        w = np.sinc(freq / 2)
    elif name == "cosine":
        w = np.cos(np.pi * freq / 2)
    elif name == "hann":
        w = np.cos(np.pi * freq / 2) ** 2
    else:
        raise ValueError(f"unknown FBP filter {name!r}; choose one of {list(FILTERS)}")
    return np.where(freq <= 1.0, w, 0.0)


def ramp_response(n_detectors: int, spacing: float, name: str, frequency_scaling: float) -> np.ndarray:
    """rfft-domain response of the windowed, band-limited ramp filter.

    Built from the spatial ramp kernel (not |f| sampled) so that the zero
    frequency is right; padded to avoid wrap-around.
    """
    if not 0 < frequency_scaling <= 1:
        raise ValueError(f"frequency_scaling must be in (0, 1], got {frequency_scaling}")
    padded = 2 ** math.ceil(math.log2(2 * n_detectors))
    n = np.fft.fftfreq(padded) * padded  # 0, 1, ..., -1 as integers
    h = np.zeros(padded)
    h[0] = 1 / (4 * spacing**2)
    odd = n % 2 == 1
    h[odd] = -1 / (np.pi * n[odd] * spacing) ** 2
    response = spacing * np.fft.rfft(h).real
    freq = np.fft.rfftfreq(padded) / (0.5 * frequency_scaling)
    return response * filter_window(name, freq)


def _iso_spacing(geometry: Geometry) -> float:
    """Detector spacing scaled to the rotation centre (virtual detector)."""
    return geometry.resolved_detector_spacing / geometry.magnification


def detector_weights(geometry: Geometry) -> np.ndarray:
    """Per-detector pre-weight: cos of the fan angle (1 for parallel beam)."""
    nd = geometry.resolved_detectors
    if geometry.kind == "parallel":
        return np.ones(nd)
    s = (np.arange(nd) - (nd - 1) / 2) * _iso_spacing(geometry)
    d = geometry.source_distance
    return d / np.sqrt(d**2 + s**2)


def angle_weight(geometry: Geometry) -> float:
    """Quadrature weight of one angle in the FBP sum, or ValueError for a range FBP cannot weight.

    Parallel beam up to pi: range / angles (the Riemann sum of the integral
    over the scanned angles). A full 2 pi scan, parallel or fan, sees every
    line twice: range / (2 angles), which is pi / angles again.
    """
    span, n_ang = geometry.resolved_angle_range, geometry.angles
    full = 2 * math.pi
    if geometry.kind == "parallel" and span <= math.pi:
        return span / n_ang
    if math.isclose(span, full, rel_tol=1e-12):
        return full / (2 * n_ang)
    needed = "at most pi or exactly 2 pi" if geometry.kind == "parallel" else "exactly 2 pi"
    raise ValueError(
        f"FBP of a {geometry.kind}-beam scan over angle_range={span:.6g} rad is not supported: "
        f"it needs redundancy weights (need {needed})"
    )


def backprojection_matrix(geometry: Geometry) -> sp.csr_matrix:
    """(n_pixels x n_data) weighted, interpolating back-projection, `angle_weight` per angle."""
    nd, n_ang = geometry.resolved_detectors, geometry.angles
    px, py = geometry.pixel_centres()
    n_pix = px.size
    scale = angle_weight(geometry)
    rows, cols, vals = [], [], []
    for a, v in enumerate(geometry.vectors()):
        if geometry.kind == "parallel":
            dx, dy, ux, uy = v[2], v[3], v[4], v[5]
            t = ((px - dx) * ux + (py - dy) * uy) / (ux * ux + uy * uy)
            weight = np.full(n_pix, scale)
        else:
            sx, sy, dx, dy, ux, uy = v
            rx, ry = px - sx, py - sy  # source -> pixel
            det = -rx * uy + ux * ry
            t = (rx * (dy - sy) - ry * (dx - sx)) / det
            dist = math.hypot(sx, sy)
            u_ratio = -(rx * sx + ry * sy) / dist / dist  # U = distance along central ray / D
            weight = scale / u_ratio**2
        idx = t + (nd - 1) / 2
        i0 = np.floor(idx).astype(np.int64)
        frac = idx - i0
        for offset, w in ((0, 1 - frac), (1, frac)):
            i = i0 + offset
            ok = (i >= 0) & (i < nd)
            rows.append(np.nonzero(ok)[0])
            cols.append(a * nd + i[ok])
            vals.append((weight * w)[ok])
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_pix, n_ang * nd)
    )
    return m.tocsr()


class FilteredBackProjection:
    """FBP for one geometry; call with a (B, angles*detectors) batch."""

    def __init__(self, geometry: Geometry) -> None:
        angle_weight(geometry)  # refuse an unsupported range before any work
        self.geometry = geometry
        self.spacing = _iso_spacing(geometry)
        self.pre_weight = torch.from_numpy(detector_weights(geometry))
        self.backprojection = SparseMatrix(
            cached_matrix(f"fbp-v{BACKPROJECTION_VERSION}-{geometry.key()}", lambda: backprojection_matrix(geometry))
        )
        self._responses: dict[tuple[str, float], np.ndarray] = {}

    def __call__(self, y: torch.Tensor, filter: str = "hann", frequency_scaling: float = 1.0) -> torch.Tensor:
        n_ang, nd = self.geometry.data_shape
        key = (filter, float(frequency_scaling))
        if key not in self._responses:
            self._responses[key] = ramp_response(nd, self.spacing, filter, frequency_scaling)
        response = torch.as_tensor(self._responses[key], dtype=y.dtype, device=y.device)
        padded = 2 * (response.numel() - 1)
        sino = y.reshape(-1, n_ang, nd) * self.pre_weight.to(y.device, y.dtype)
        filtered = torch.fft.irfft(torch.fft.rfft(sino, n=padded) * response, n=padded)[..., :nd]
        return self.backprojection(filtered.reshape(y.shape[0], -1))
