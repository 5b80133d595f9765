"""What `recongap reconstruct` makes of a .npy of measurements."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.cli import read_measurements


@pytest.mark.parametrize(
    "shape, read",
    [
        ((30, 45), (1, 1, 30, 45)),          # one CT sinogram (angles, detectors)
        ((4, 30, 45), (4, 1, 30, 45)),       # a batch of them
        ((4, 1, 64), (4, 1, 64)),            # 1-D data (integration): already (B, 1, points)
        ((4, 1, 1, 333), (4, 1, 1, 333)),    # single-pixel data, as evaluate holds them
    ],
)
def test_a_npy_gets_the_batch_and_channel_axes_it_lacks(tmp_path, shape, read):
    path = tmp_path / "y.npy"
    np.save(path, np.zeros(shape, dtype=np.float64))
    y = read_measurements(path)
    assert y.shape == read and y.dtype == np.float32
