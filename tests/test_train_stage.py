"""The train stage entry point: resume an interrupted run, restart a finished one or a new config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def _write_params(tmp: Path, lr: float) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "smoke"
    params["scales"]["smoke"] = {"size": 16, "splits": {"train": 8, "val": 4, "test": 2}, "epochs": 1}
    params["simulate"]["noise_calibration_samples"] = 8
    params["methods"]["lgd"] = {"iterations": 2, "memory": 1, "width": 4}
    params["train"].update(batch_size=4, lr=lr)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", *args, "--params", str(tmp / "params.yaml"), "--pipelines", str(ROOT / "pipelines.yaml")]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    _write_params(tmp, lr=1e-3)
    assert _run(tmp, "tasks.simulate", "ellipses", "--out", str(tmp / "data")).returncode == 0
    result = _run(tmp, "tasks.train", "ellipses", "lgd", "--data", str(tmp / "data"), "--out", str(tmp / "models"))
    assert result.returncode == 0, result.stderr[-2000:]
    return tmp


def test_outputs_and_resolved_config(trained):
    out = trained / "models" / "ellipses" / "lgd"
    assert (out / "best.ckpt").exists() and (out / "last.ckpt").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "lgd" and config["network"]["width"] == 4 and config["geometry"]["size"] == 16
    log = (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert "val_psnr" in log


def test_a_finished_run_leaves_no_in_progress_marker(trained):
    assert not (trained / "models" / "ellipses" / "lgd" / "in_progress").exists()


def test_an_interrupted_run_resumes_from_last_checkpoint(trained):
    out = trained / "models" / "ellipses" / "lgd"
    (out / "in_progress").write_text("")  # what a run stopped before its end leaves
    before = (out / "last.ckpt").read_bytes()
    result = _run(trained, "tasks.train", "ellipses", "lgd", "--data", str(trained / "data"), "--out", str(trained / "models"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Restoring states from the checkpoint" in result.stderr + result.stdout
    assert (out / "last.ckpt").read_bytes() == before  # its last epoch had ended: nothing retrained
    assert not (out / "in_progress").exists()


def test_a_finished_run_is_trained_again_not_resumed(trained):
    # DVC reruns a finished stage only when its code or data changed; resuming
    # would keep the old weights. Folders trained before the marker existed
    # count as finished.
    out = trained / "models" / "ellipses" / "lgd"
    (out / "best.ckpt").write_bytes(b"old weights")
    result = _run(trained, "tasks.train", "ellipses", "lgd", "--data", str(trained / "data"), "--out", str(trained / "models"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Restoring states" not in result.stderr + result.stdout
    assert (out / "best.ckpt").read_bytes() != b"old weights" and not (out / "in_progress").exists()


def test_changed_config_starts_afresh(trained):
    out = trained / "models" / "ellipses" / "lgd"
    (out / "in_progress").write_text("")  # interrupted, but with another config: not resumed
    _write_params(trained, lr=5e-4)
    result = _run(trained, "tasks.train", "ellipses", "lgd", "--data", str(trained / "data"), "--out", str(trained / "models"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Restoring states" not in result.stderr + result.stdout
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 5e-4 and not (out / "in_progress").exists()


def test_unknown_method_is_refused(trained):
    result = _run(trained, "tasks.train", "ellipses", "unet", "--data", str(trained / "data"), "--out", str(trained / "models"))
    assert result.returncode == 2 and "'unet' is not among learned_methods" in result.stderr


def test_init_is_refused_for_a_method_trained_from_scratch(trained):
    checkpoint = trained / "models" / "ellipses" / "lgd" / "best.ckpt"
    args = ("--data", str(trained / "data"), "--out", str(trained / "models"), "--init", str(checkpoint))
    result = _run(trained, "tasks.train", "ellipses", "lgd", *args)
    assert result.returncode == 2 and "only sampler_methods start from a trained model" in result.stderr


def test_cwgan_refuses_to_start_from_a_missing_or_foreign_checkpoint(trained):
    out = trained / "models_cwgan"
    missing = _run(trained, "tasks.train", "ellipses", "cwgan", "--data", str(trained / "data"), "--out", str(out), "--init", str(trained / "nope.ckpt"))
    assert missing.returncode == 2 and "nope.ckpt: no such checkpoint" in missing.stderr
    earlier = out / "ellipses" / "cwgan"  # a previous run's outputs, whose config the bad --init would change
    earlier.mkdir(parents=True)
    (earlier / "config.json").write_text("{}")
    (earlier / "last.ckpt").write_bytes(b"weights")
    lgd = trained / "models" / "ellipses" / "lgd" / "best.ckpt"
    foreign = _run(trained, "tasks.train", "ellipses", "cwgan", "--data", str(trained / "data"), "--out", str(out), "--init", str(lgd))
    assert foreign.returncode == 2 and "checkpoint is for method 'lgd', asked for 'postproc'" in foreign.stderr
    assert (earlier / "last.ckpt").read_bytes() == b"weights" and (earlier / "config.json").read_text() == "{}"  # refused before touching them
