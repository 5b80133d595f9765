"""Ray-transform backends: ASTRA itself, and a pure-torch sparse system matrix.

Both take and return torch tensors of shape (B, n_pixels) / (B, n_data) and
are wrapped by `RayTransform`, which adds shapes, checks and autograd.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from .cache import cached_matrix
from .geometry import Geometry
from .linear import SparseMatrix

log = logging.getLogger(__name__)

#: ASTRA's CPU projector per geometry; the torch backend uses its matrix, so
#: the two backends share one projector model on the CPU.
CPU_PROJECTOR = {"parallel": "linear", "fan": "line_fanflat"}

_logged_astra_choice = False


class Backend(Protocol):
    name: str

    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def adjoint(self, y: torch.Tensor) -> torch.Tensor: ...


def system_matrix(geometry: Geometry, projector: str | None = None):
    """ASTRA's sparse system matrix (n_data x n_pixels), cached on disk."""
    import astra

    projector = projector or CPU_PROJECTOR[geometry.kind]

    def build():
        pid = astra.create_projector(projector, geometry.astra_proj_geom(), geometry.astra_vol_geom())
        mid = astra.projector.matrix(pid)
        try:
            return astra.matrix.get(mid)
        finally:
            astra.matrix.delete(mid)
            astra.projector.delete(pid)

    name = f"astra{astra.__version__}-{projector}-{geometry.key()}"
    return cached_matrix(name, build)


class TorchBackend:
    """Batched sparse matmul with ASTRA's CPU system matrix; CPU and GPU."""

    name = "torch"

    def __init__(self, geometry: Geometry, projector: str | None = None) -> None:
        self.projector = projector or CPU_PROJECTOR[geometry.kind]
        self.matrix = SparseMatrix(system_matrix(geometry, self.projector))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matrix.matmul(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.matrix.matmul(y, transpose=True)


class AstraBackend:
    """ASTRA's own projectors: CUDA when ASTRA sees a GPU, CPU otherwise.

    ASTRA computes in float32 on host arrays; other dtypes and devices are
    converted on the way in and out. The CUDA projector interpolates
    differently from the CPU 'linear' one, so results differ slightly.
    """

    name = "astra"

    def __init__(self, geometry: Geometry, projector: str | None = None) -> None:
        import astra

        global _logged_astra_choice
        self.geometry = geometry
        self.cuda = bool(astra.use_cuda())
        self.projector = projector or ("cuda" if self.cuda else CPU_PROJECTOR[geometry.kind])
        if not _logged_astra_choice:
            log.info("ASTRA backend uses the %s projector (%s)", self.projector, "GPU" if self.cuda else "CPU")
            _logged_astra_choice = True
        vol, proj = geometry.astra_vol_geom(), geometry.astra_proj_geom()
        self._pid = astra.create_projector(self.projector, proj, vol)
        self._vid = astra.data2d.create("-vol", vol, 0)
        self._sid = astra.data2d.create("-sino", proj, 0)
        suffix = "_CUDA" if self.projector == "cuda" else ""
        self._algs = {}
        for kind in ("FP", "BP"):
            cfg = astra.astra_dict(kind + suffix)
            cfg["ProjectorId"] = self._pid
            if kind == "FP":
                cfg["VolumeDataId"], cfg["ProjectionDataId"] = self._vid, self._sid
            else:
                cfg["ReconstructionDataId"], cfg["ProjectionDataId"] = self._vid, self._sid
            self._algs[kind] = astra.algorithm.create(cfg)

    def _run(self, kind: str, batch: torch.Tensor, src: int, dst: int, shapes: tuple[tuple[int, int], tuple[int, int]]) -> torch.Tensor:
        import astra

        (in_shape, out_shape), host = shapes, batch.detach().to("cpu", torch.float32).numpy()
        out = np.empty((host.shape[0], out_shape[0] * out_shape[1]), dtype=np.float32)
        for b in range(host.shape[0]):
            astra.data2d.store(src, host[b].reshape(in_shape))
            astra.algorithm.run(self._algs[kind])
            out[b] = astra.data2d.get_shared(dst).ravel()  # a view ASTRA reuses: copied here
        return torch.from_numpy(out).to(device=batch.device, dtype=batch.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        return self._run("FP", x, self._vid, self._sid, (g.image_shape, g.data_shape))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        return self._run("BP", y, self._sid, self._vid, (g.data_shape, g.image_shape))

    def __del__(self) -> None:
        try:
            import astra

            for aid in self._algs.values():
                astra.algorithm.delete(aid)
            astra.data2d.delete([self._vid, self._sid])
            astra.projector.delete(self._pid)
        except Exception:  # interpreter shutdown: ASTRA may already be gone
            pass


BACKENDS = {"torch": TorchBackend, "astra": AstraBackend}


def make_backend(name: str, geometry: Geometry, projector: str | None = None) -> Backend:
    """Backend by name; 'auto' takes the first of BACKENDS, fastest first."""
    if name == "auto":
        name = next(iter(BACKENDS))
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {['auto', *BACKENDS]}")
    return BACKENDS[name](geometry, projector)
