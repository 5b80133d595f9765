"""End to end: `dvc repro` of a copy of this repository at the smoke scale.

Proves the DAG in dvc.yaml (simulate -> train -> evaluate) runs from what git
holds (tracked files plus new ones not ignored), that the metrics are
readable by DVC, and that a second run finds nothing to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recongap.datasets import read_attrs
from tests.conftest import ROOT


def _repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [f for f in out.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("repo")
    for f in _repo_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("scale: laptop", "scale: smoke", 1))
    return dest


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(repo / ".dvc" / "tmp" / "site-cache")
    return subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, env=env)


PIPELINES = ("ellipses", "gaussian_field", "dival_ellipses")
METHODS = ("fbp", "tv", "postproc", "lgd", "lpd")


def test_repro_runs_the_whole_dag_then_does_nothing(repo):
    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    for pipeline in PIPELINES:
        for stage in ("simulate", "evaluate"):
            assert f"Running stage '{stage}@{pipeline}'" in first.stdout
        for split in ("train", "val", "test"):
            attrs = read_attrs(repo / "data" / pipeline / f"{split}.h5")
            assert attrs["config"]["scale"] == "smoke" and attrs["split"] == split
        for method in ("postproc", "lgd", "lpd"):
            assert f"Running stage 'train@{pipeline}-{method}'" in first.stdout
            assert (repo / "models" / pipeline / method / "best.ckpt").exists()
        metrics = json.loads((repo / "metrics" / f"{pipeline}.json").read_text())
        # the Gaussian field also gets its closed-form posterior mean, lmmse
        extra = {"lmmse"} if pipeline == "gaussian_field" else set()
        assert set(metrics["methods"]) == set(METHODS) | extra and metrics["scale"] == "smoke"
        for method in METHODS:
            assert 0 < metrics["methods"][method]["psnr"]["mean"] < 100
        assert (repo / "reports" / pipeline / "grid.png").stat().st_size > 1000
        assert "| lpd |" in (repo / "reports" / pipeline / "metrics.md").read_text()
        # register@PIPELINE leaves a champion for every learned method (tests' private MLflow store)
        registry = json.loads((repo / "reports" / "registry" / f"{pipeline}.json").read_text())
        assert {r["model"]: r["champion"] for r in registry["models"]} == {f"{pipeline}-{m}": "1" for m in ("postproc", "lgd", "lpd")}
    # FBP and TV are tuned on val even at this scale: TV beats FBP on ellipses
    ellipses = json.loads((repo / "metrics" / "ellipses.json").read_text())["methods"]
    assert ellipses["tv"]["psnr"]["mean"] > ellipses["fbp"]["psnr"]["mean"]
    # on the Gaussian field the exact posterior mean is in closed form: its
    # normalized error must be 1 up to sampling error over the test items
    gauss = json.loads((repo / "metrics" / "gaussian_field.json").read_text())
    lmmse = gauss["methods"]["lmmse"]["normalized_error"]
    assert gauss["reference"]["kind"] == "closed_form" and abs(lmmse["mean"] - 1) < 4 * lmmse["stderr"]
    assert all("normalized_error" in r for r in gauss["methods"].values())
    shown = _dvc(repo, "metrics", "show")
    assert shown.returncode == 0 and "methods.lpd.psnr.mean" in shown.stdout
    results = (repo / "docs" / "results.md").read_text()
    assert "## dival_ellipses — scale `smoke`" in results and "32.27 / 0.940" in results
    assert "Expected test PSNR ordering" in results

    second = _dvc(repo, "repro")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout


def test_params_change_reruns_only_what_depends_on_it(repo):
    pipelines = repo / "pipelines.yaml"
    pipelines.write_text(pipelines.read_text().replace("seed: 20182", "seed: 7", 1))
    status = _dvc(repo, "status")
    assert "simulate@gaussian_field" in status.stdout and "simulate@ellipses" not in status.stdout
