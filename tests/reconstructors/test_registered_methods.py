"""registered_methods turns a missing or refused checkpoint into a DataError naming the file."""

from __future__ import annotations

import pytest
import torch

from recongap.datasets import DataError
from recongap.methods import registered_methods
from recongap.operators import RayTransform
from recongap.reconstructors.lightning import ReconstructionModule


def test_missing_or_refused_checkpoint_is_a_data_error_naming_the_file(tmp_path):
    operator = RayTransform(16, angles=5)
    geometry = operator.geometry
    path = tmp_path / "lgd" / "best.ckpt"

    def methods(name: str) -> list:
        # learned methods need neither params nor validation data
        return list(registered_methods([name], lambda n: path, None, geometry, operator, None, lambda n: f"dvc repro train@x-{n}"))

    with pytest.raises(DataError, match=r"lgd/best.ckpt: no trained model \(dvc repro train@x-lgd\)"):
        methods("lgd")

    module = ReconstructionModule("lpd", geometry.resolved(), {"iterations": 1, "width": 4})
    path.parent.mkdir()
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    with pytest.raises(DataError, match=r"best.ckpt: checkpoint is for method 'lpd', asked for 'lgd'"):
        methods("lgd")
    ((name, loaded, chosen),) = methods("lpd")
    assert name == "lpd" and chosen == {} and not loaded.training
