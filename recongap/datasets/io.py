"""Paired-data files: one HDF5 file per split, written atomically, read with checks.

Layout of `<split>.h5`:
    images        (n, 1, size, size)         float32, the ground truth x ((n, 1, size) for 1-D signals)
    measurements  (n, 1, *data shape)        float32, y = A x + noise (CT: angles, detectors)
    params        (n, *prior parameter shape) float64, the prior draw behind x
    attrs         config (JSON), seed, split, noise_std, measurement_grid_factor,
                  inverse_crime, format_version, recongap_version
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .. import __version__
from ..files import atomic_path

FORMAT_VERSION = 1
REQUIRED = ("images", "measurements", "params")


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or inconsistent; the message names it."""


@dataclass
class Split:
    images: np.ndarray
    measurements: np.ndarray
    params: np.ndarray
    attrs: dict


def write_split(path: str | Path, split: Split) -> None:
    """Write a split to `path` via a temporary file and rename: never half-written."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("images", data=split.images.astype(np.float32))
            f.create_dataset("measurements", data=split.measurements.astype(np.float32))
            f.create_dataset("params", data=split.params.astype(np.float64))
            attrs = {"format_version": FORMAT_VERSION, "recongap_version": __version__, **split.attrs}
            for k, v in attrs.items():
                f.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(f"{path}: data file not found (run `dvc repro` to simulate it)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 data file ({e})") from None


def read_attrs(path: str | Path) -> dict:
    """The split's attributes, with `config` decoded from JSON."""
    path = Path(path)
    with _open(path) as f:
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    if "config" in attrs:
        attrs["config"] = json.loads(attrs["config"])
    return attrs


def read_split(path: str | Path) -> Split:
    """Load and check a whole split into memory."""
    path = Path(path)
    with _open(path) as f:
        missing = [k for k in REQUIRED if k not in f]
        if missing:
            raise DataError(f"{path}: missing dataset(s) {missing}; expected {list(REQUIRED)}")
        try:
            arrays = {k: f[k][()] for k in REQUIRED}
        except OSError as e:
            raise DataError(f"{path}: corrupt data ({e})") from None
    n = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(n.values())) != 1:
        raise DataError(f"{path}: datasets disagree on the number of items: {n}")
    if arrays["images"].ndim not in (3, 4) or arrays["measurements"].ndim not in (3, 4):
        raise DataError(
            f"{path}: images and measurements must be (n, 1, H, W) or, for 1-D signals, (n, 1, N); got "
            f"{arrays['images'].shape} and {arrays['measurements'].shape}"
        )
    for k in ("images", "measurements"):
        if not np.isfinite(arrays[k]).all():
            raise DataError(f"{path}: {k} contain NaN or inf")
    return Split(attrs=read_attrs(path), **arrays)


class PairedDataset(Dataset):
    """(measurement, image) pairs of one split, as float32 tensors, held in memory."""

    def __init__(self, path: str | Path) -> None:
        split = read_split(path)
        self.path = Path(path)
        self.attrs = split.attrs
        self.images = torch.from_numpy(split.images)
        self.measurements = torch.from_numpy(split.measurements)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.measurements[i], self.images[i]
