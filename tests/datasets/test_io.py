"""Data files: round trip, atomic writes, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recongap.datasets import DataError, PairedDataset, Split, read_attrs, read_split, write_split


def _split(n: int = 3) -> Split:
    rng = np.random.default_rng(0)
    return Split(
        images=rng.random((n, 1, 8, 8), dtype=np.float32),
        measurements=rng.random((n, 1, 5, 12), dtype=np.float32),
        params=rng.random((n, 4, 6)),
        attrs={"config": {"a": 1}, "seed": 7, "split": "train"},
    )


def test_round_trip(tmp_path):
    path = tmp_path / "d" / "train.h5"
    write_split(path, _split())
    back = read_split(path)
    assert np.array_equal(back.images, _split().images) and np.array_equal(back.params, _split().params)
    assert back.attrs["config"] == {"a": 1} and back.attrs["seed"] == 7 and back.attrs["format_version"] == 1
    dataset = PairedDataset(path)
    y, x = dataset[1]
    assert len(dataset) == 3 and y.shape == (1, 5, 12) and x.shape == (1, 8, 8) and x.dtype == torch.float32


def test_truncated_file_names_the_file(tmp_path):
    path = tmp_path / "train.h5"
    write_split(path, _split())
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(DataError, match=str(path)):
        read_split(path)
    with pytest.raises(DataError, match="not found"):
        read_attrs(tmp_path / "absent.h5")


def test_inconsistent_or_nan_data_is_refused(tmp_path):
    bad = _split()
    bad.params = bad.params[:2]
    write_split(tmp_path / "a.h5", bad)
    with pytest.raises(DataError, match="a.h5: datasets disagree on the number of items"):
        read_split(tmp_path / "a.h5")
    nan = _split()
    nan.measurements[0, 0, 0, 0] = np.nan
    write_split(tmp_path / "b.h5", nan)
    with pytest.raises(DataError, match="b.h5: measurements contain NaN"):
        read_split(tmp_path / "b.h5")


def test_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    path = tmp_path / "train.h5"
    write_split(path, _split())
    before = path.read_bytes()
    broken = _split()
    broken.attrs = {"unstorable": object()}
    with pytest.raises(TypeError):
        write_split(path, broken)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.h5"]
