"""The simulate stage entry point: determinism, noise level, attributes, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from recongap.datasets import read_split
from recongap.operators import Geometry, RayTransform
from tests.conftest import ROOT

SPLITS = ("train", "val", "test")


def _configs(tmp_path: Path, grid_factor: int = 1) -> tuple[Path, Path]:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "smoke"
    params["scales"]["smoke"] = {"size": 16, "splits": {"train": 12, "val": 6, "test": 4}}
    params["simulate"]["noise_calibration_samples"] = 16
    pipelines = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    pipelines["pipelines"]["ellipses"]["measurement_grid_factor"] = grid_factor
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(pipelines))
    return tmp_path / "params.yaml", tmp_path / "pipelines.yaml"


def _simulate(pipeline: str, params: Path, pipelines: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tasks.simulate", pipeline, "--params", str(params), "--pipelines", str(pipelines), "--out", str(out)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sim")
    params, pipelines = _configs(tmp)
    for run in ("a", "b"):
        for name in ("ellipses", "gaussian_field"):
            result = _simulate(name, params, pipelines, tmp / run)
            assert result.returncode == 0, result.stderr
    return tmp


def test_same_params_give_byte_identical_files(simulated):
    for name in ("ellipses", "gaussian_field"):
        for split in SPLITS:
            a = (simulated / "a" / name / f"{split}.h5").read_bytes()
            b = (simulated / "b" / name / f"{split}.h5").read_bytes()
            assert a == b, f"{name}/{split} differs between two runs"


def test_splits_have_their_own_seeds_and_the_config(simulated):
    splits = {s: read_split(simulated / "a" / "ellipses" / f"{s}.h5") for s in SPLITS}
    seeds = {s.attrs["seed"] for s in splits.values()}
    assert len(seeds) == 3
    assert [len(s.images) for s in splits.values()] == [12, 6, 4]
    attrs = splits["test"].attrs
    assert attrs["split"] == "test" and attrs["inverse_crime"] is True and attrs["measurement_grid_factor"] == 1
    assert attrs["config"]["pipeline_config"]["prior"]["mean_count"] == 50
    assert attrs["config"]["geometry"]["angles"] == 30 and attrs["config"]["scale"] == "smoke"


def test_data_are_the_images_projected_plus_noise_of_the_stated_std(simulated):
    split = read_split(simulated / "a" / "gaussian_field" / "train.h5")
    geometry = Geometry(**{k: v for k, v in split.attrs["config"]["geometry"].items()})
    op = RayTransform.from_geometry(geometry)
    clean = op(torch.from_numpy(split.images))
    residual = torch.from_numpy(split.measurements) - clean
    std = split.attrs["noise_std"]
    assert float(residual.std()) == pytest.approx(std, rel=0.05)
    # 5% of the mean |A x|, estimated on a separate calibration sample
    assert std == pytest.approx(0.05 * float(clean.abs().mean()), rel=0.15)


def test_finer_measurement_grid_is_recorded_and_changes_the_data(simulated, tmp_path):
    params, pipelines = _configs(tmp_path, grid_factor=2)
    assert _simulate("ellipses", params, pipelines, tmp_path / "out").returncode == 0
    fine = read_split(tmp_path / "out" / "ellipses" / "test.h5")
    crime = read_split(simulated / "a" / "ellipses" / "test.h5")
    assert fine.attrs["inverse_crime"] is False and fine.attrs["measurement_grid_factor"] == 2
    assert (fine.images == crime.images).all() and (fine.params == crime.params).all()
    gap = abs(fine.measurements - crime.measurements).max()
    assert 0 < gap < 0.5 * abs(crime.measurements).max()


def test_bad_config_fails_before_any_work(tmp_path):
    params, pipelines = _configs(tmp_path)
    text = pipelines.read_text().replace("relative_std: 0.05", "relative_std: -0.05", 1)
    pipelines.write_text(text)
    result = _simulate("ellipses", params, pipelines, tmp_path / "out")
    assert result.returncode == 2
    assert "pipelines.yaml" in result.stderr and "noise.relative_std" in result.stderr
    assert not (tmp_path / "out").exists()
