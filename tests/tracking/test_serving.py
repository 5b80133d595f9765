"""The registry flavour's predict, on a cwgan and on a point estimator."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recongap.config.schema import CWGANParams
from recongap.operators import RayTransform
from recongap.reconstructors.cwgan import CWGANModule
from recongap.reconstructors.lightning import ReconstructionModule
from tasks.serving import Reconstructor

SIZE = 16


def _loaded(tmp_path, module, method: str) -> Reconstructor:
    """A Reconstructor loaded the way MLflow does: from a checkpoint and config.json."""
    checkpoint, config = tmp_path / "best.ckpt", tmp_path / "config.json"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, checkpoint)
    config.write_text(json.dumps({"method": method, "geometry": module.hparams["geometry"]}))
    model = Reconstructor()
    model.load_context(SimpleNamespace(artifacts={"checkpoint": str(checkpoint), "config": str(config)}))
    return model


def _measurements(n: int) -> np.ndarray:
    x = torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return RayTransform(SIZE, angles=5)(x).numpy()


def test_cwgan_predicts_its_mean_or_samples_on_request(tmp_path):
    torch.manual_seed(0)
    geometry = RayTransform(SIZE, angles=5).geometry.resolved()
    tiny = CWGANParams(channels=4, depth=2, z_channels=2, critic_width=4, samples=4).model_dump()
    model = _loaded(tmp_path, CWGANModule("cwgan", geometry, tiny), "cwgan")
    y = _measurements(3)
    assert model.predict(None, y).shape == (3, 1, SIZE, SIZE)
    samples = model.predict(None, y, params={"samples": 5})
    assert samples.shape == (3, 5, 1, SIZE, SIZE)
    assert np.abs(samples[:, 0] - samples[:, 1]).max() > 0  # draws differ: z is used


def test_point_estimator_refuses_samples_and_bad_shapes(tmp_path):
    geometry = RayTransform(SIZE, angles=5).geometry.resolved()
    network = {"iterations": 2, "primal": 2, "dual": 2, "width": 4}
    model = _loaded(tmp_path, ReconstructionModule("lpd", geometry, network), "lpd")
    y = _measurements(2)
    assert model.predict(None, y).shape == (2, 1, SIZE, SIZE)
    with pytest.raises(ValueError, match="lpd is a point estimator"):
        model.predict(None, y, params={"samples": 3})
    with pytest.raises(ValueError, match=r"measurements of shape \(2, 5"):
        model.predict(None, y[:, 0])
