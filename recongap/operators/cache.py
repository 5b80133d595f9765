"""On-disk cache of system matrices, keyed by what determines them.

Building ASTRA's matrix for 128x128 takes a second or so and far more for
paper-scale geometries; every process of a pipeline would otherwise redo it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import scipy.sparse as sp

from ..files import atomic_path


def cache_dir() -> Path:
    """`$RECONGAP_CACHE_DIR`, else `$XDG_CACHE_HOME/recongap`, else ~/.cache/recongap."""
    env = os.environ.get("RECONGAP_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recongap"


def cached_matrix(name: str, build: Callable[[], sp.spmatrix]) -> sp.csr_matrix:
    """Load matrix `name` from the cache, or build it and store it atomically.

    An unreadable cache file is rebuilt rather than trusted.
    """
    path = cache_dir() / f"{name}.npz"
    if path.exists():
        try:
            return sp.load_npz(path).tocsr()
        except Exception:  # corrupt or truncated: rebuild below
            path.unlink(missing_ok=True)
    matrix = build().tocsr()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: save_npz would append .npz to a name
            sp.save_npz(f, matrix, compressed=False)
    return matrix
