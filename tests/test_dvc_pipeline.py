"""End to end: `dvc repro` of a copy of this repository at the smoke scale.

Proves the DAG in dvc.yaml (simulate -> train -> evaluate) runs from what git
holds (tracked files plus new ones not ignored), that the metrics are
readable by DVC, and that a second run finds nothing to do.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from recongap.comparison import claim
from recongap.datasets import read_attrs
from recongap.posterior.store import code_fingerprint, load_item
from tasks.reference import CODE_MODULES
from tests.conftest import ROOT, copy_repo_at_smoke_scale


#: the default suite's DAG: one pipeline per forward kind, which covers each
#: kind of reference (ellipses on CT: MCMC only; single_pixel: the Gaussian
#: closed form; mri and blur: the mixture's; integration: the 1-D Gaussian
#: process's); the slow test runs the whole catalogue.
PIPELINES = ("ellipses", "single_pixel", "mri", "blur", "integration")
CATALOGUE = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
CLOSED_FORM = {  # by prior: exact methods beside the MCMC mean
    "gaussian_field": {"lmmse"}, "gaussian_mixture": {"exact_mean", "lmmse"}, "gaussian_process": {"lmmse"},
}
LEARNED = ("postproc", "lgd", "lpd", "cwgan")
#: methods the solve stages optimise per measurement, scored on the first solve.items.smoke (2) test items
SOLVED = {"dip": "solve", "adp": "solve", "gen_range": "solve_generative", "gen_soft": "solve_generative"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_repo_at_smoke_scale(tmp_path_factory.mktemp("repo"), PIPELINES)


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_SITE_CACHE_DIR"] = str(repo / ".dvc" / "tmp" / "site-cache")
    return subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, env=env)


def _stage_runs(pipelines: tuple[str, ...]) -> Counter:
    """How many MLflow runs each stage name has in the tests' store."""
    import mlflow

    runs = mlflow.search_runs(experiment_names=list(pipelines), output_format="list")
    return Counter(run.info.run_name for run in runs)


@pytest.fixture(scope="module")
def reproduced(repo) -> tuple[subprocess.CompletedProcess, Counter]:
    """The first `dvc repro` of the copy (every test here starts from it), and
    the MLflow stage runs counted before it."""
    runs_before = _stage_runs(PIPELINES)
    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    return first, runs_before


def _methods(pipeline: str) -> set[str]:
    """The methods scored on a pipeline: the classical ones of its forward kind, the trained ones."""
    ct = CATALOGUE["pipelines"][pipeline]["forward"].get("kind", "ct") == "ct"
    return {"fbp" if ct else "first", "tv", "linear_mmse", "pnp", *LEARNED}


def _check_whole_dag(repo: Path, first: subprocess.CompletedProcess, runs_before: Counter, pipelines: tuple[str, ...]) -> None:
    """What one `dvc repro` of the copy must have made for each of `pipelines`."""
    for pipeline in pipelines:
        methods, prior = _methods(pipeline), CATALOGUE["pipelines"][pipeline]["prior"]["name"]
        closed_form = CLOSED_FORM.get(prior, set())
        for stage in ("simulate", "evaluate"):
            assert f"Running stage '{stage}@{pipeline}'" in first.stdout
        for split in ("train", "val", "test"):
            attrs = read_attrs(repo / "data" / pipeline / f"{split}.h5")
            assert attrs["config"]["scale"] == "smoke" and attrs["split"] == split
        trained = [("train", "postproc"), ("train", "lgd"), ("train", "lpd"), ("train_sampler", "cwgan"), ("train_prior", "denoiser"), ("train_prior", "vae")]
        for stage, method in trained:
            assert f"Running stage '{stage}@{pipeline}-{method}'" in first.stdout
            assert (repo / "models" / pipeline / method / "best.ckpt").exists()
        for method, stage in SOLVED.items():
            assert f"Running stage '{stage}@{pipeline}-{method}'" in first.stdout
            assert len(list((repo / "models" / pipeline / method / "items").glob("*.npy"))) == 3  # 2 test items and the phantom
        # cwgan's generator started from this run's postproc checkpoint
        started_from = json.loads((repo / "models" / pipeline / "cwgan" / "config.json").read_text())["init_sha256"]
        assert started_from == hashlib.sha256((repo / "models" / pipeline / "postproc" / "best.ckpt").read_bytes()).hexdigest()
        metrics = json.loads((repo / "metrics" / f"{pipeline}.json").read_text())
        # every pipeline gets its MCMC posterior mean; the Gaussian ones also their closed forms
        assert set(metrics["methods"]) == methods | set(SOLVED) | {"posterior_mean"} | closed_form and metrics["scale"] == "smoke"
        assert all(metrics["methods"][m]["items"] == 2 and "items" not in metrics["methods"][name] for m in SOLVED for name in methods)
        assert metrics["methods"]["pnp"]["chosen"]["fixed_point_residual"] >= 0
        # the reference stage: per-item files and a diagnostics summary
        assert f"Running stage 'reference@{pipeline}'" in first.stdout
        reference_dir = repo / "models" / pipeline / "reference"
        assert len(list(reference_dir.glob("item_*.npz"))) == 2 and (reference_dir / "summary.json").exists()
        mcmc = metrics["reference"]["mcmc"] if closed_form else metrics["reference"]
        assert mcmc["kind"] == "mcmc" and mcmc["items"] == 2 and mcmc["bayes_mse"] > 0 and mcmc["bayes_mse_stderr"] > 0
        assert {"rhat_max", "ess_min", "items_flagged", "reliable"} <= set(mcmc)
        assert mcmc["reliable"] == (mcmc["items_flagged"] == [])
        # started at the truth, probed for modes, both Bayes-error estimates, and the code that made each item
        assert mcmc["items_probed"] == 2 and mcmc["bayes_mse_from_variance"]["items"] == 2
        # where the posterior is exact, each item's chains are checked against it (and flagged where they disagree)
        assert mcmc.get("items_checked_against_closed_form") == (2 if closed_form else None)
        item, fingerprint = load_item(reference_dir / "item_00000.npz")
        assert item.diagnostics["start"] == "truth" and {"variance", "truth"} <= set(item.diagnostics["bayes_mse"])
        assert isinstance(item.diagnostics["probe"]["multimodal"], bool)
        assert fingerprint["code_sha256"] == code_fingerprint(importlib.import_module(m) for m in CODE_MODULES)
        for name, r in metrics["methods"].items():
            if closed_form:  # every method against the exact posterior; the MCMC mean flagged with its chains
                assert "reference_gap" not in r and r["normalized_error"]["stderr"] > 0
                assert r["normalized_error"].get("reliable", True) == (name != "posterior_mean" or mcmc["reliable"])
                continue
            gap = r["reference_gap"]
            assert gap["reliable"] == mcmc["reliable"] and gap["items"] == 2
            assert all(gap[k]["stderr"] >= 0 for k in ("mse", "normalized_error", "gap"))
        # every pair of methods compared on the test items, the MCMC mean (its own items) and the solved methods aside;
        # on the items solved, every pair with them
        n = len(metrics["methods"]) - 1 - len(SOLVED)
        assert len(metrics["comparisons"]) == n * (n - 1) // 2
        subset = metrics["subset_comparisons"]
        assert subset["items"] == 2 and len(subset["pairs"]) == (n + len(SOLVED)) * (n + len(SOLVED) - 1) // 2
        assert all(c["mse_difference"]["items"] == 2 for c in subset["pairs"])
        if closed_form:  # nothing beats the exact posterior mean beyond its error bar
            best = metrics["reference"]["estimator"]
            assert all(claim(metrics["comparisons"], best, m)["verdict"] != "fails" for m in methods)
            assert all(claim(subset["pairs"], best, m)["verdict"] != "fails" for m in SOLVED)
        gap_md = (repo / "reports" / pipeline / "gap.md").read_text()
        adler = prior == "ellipses" and CATALOGUE["pipelines"][pipeline]["forward"].get("kind", "ct") == "ct"
        assert "| posterior_mean |" in gap_md and ("| 372.0 |" in gap_md) == adler  # Adler's figures: CT ellipses only
        assert ("UNRELIABLE" in gap_md) == (not mcmc["reliable"])
        assert (repo / "reports" / pipeline / "gap.png").stat().st_size > 1000
        for method in methods:
            assert 0 < metrics["methods"][method]["psnr"]["mean"] < 100
        assert (repo / "reports" / pipeline / "grid.png").stat().st_size > 1000
        # the posterior sampler: calibration from its K samples, and its gallery
        calibration = metrics["methods"]["cwgan"]["calibration"]
        assert 0 <= calibration["coverage_90"] <= 1 and calibration["mean_pixel_std"] > 0
        assert calibration["mcmc"]["items"] == 2  # compared with the MCMC reference on the items it covers
        if closed_form:  # and with the exact posterior
            assert calibration["exact"]["std_ratio"] > 0 and 0 <= calibration["exact"]["coverage_90_of_exact_draws"] <= 1
        assert (repo / "reports" / pipeline / "cwgan_gallery.png").stat().st_size > 1000
        assert "| lpd |" in (repo / "reports" / pipeline / "metrics.md").read_text()
        # register@PIPELINE leaves a champion for every learned method (tests' private MLflow store)
        registry = json.loads((repo / "reports" / "registry" / f"{pipeline}.json").read_text())
        assert {r["model"]: r["champion"] for r in registry["models"]} == {f"{pipeline}-{m}": "1" for m in LEARNED}
        # where the exact posterior mean is known in closed form, its normalized error is 1 up to sampling error
        if closed_form:
            exact = metrics["methods"][metrics["reference"]["estimator"]]["normalized_error"]
            relative = metrics["reference"].get("bayes_mse_stderr", 0) / metrics["reference"]["bayes_mse"]
            assert metrics["reference"]["kind"] == "closed_form" and abs(exact["mean"] - 1) < 4 * exact["stderr"] + 4 * relative
    if "ellipses" in pipelines:  # FBP and TV are tuned on val even at this scale: TV beats FBP on ellipses
        ellipses = json.loads((repo / "metrics" / "ellipses.json").read_text())["methods"]
        assert ellipses["tv"]["psnr"]["mean"] > ellipses["fbp"]["psnr"]["mean"]
    shown = _dvc(repo, "metrics", "show")
    assert shown.returncode == 0 and "methods.lpd.psnr.mean" in shown.stdout
    results = (repo / "docs" / "results.md").read_text()
    assert "Paired over the 8 test items" in results
    if "dival_ellipses" in pipelines:
        assert "## dival_ellipses — scale `smoke`" in results and "32.27 / 0.940" in results
    if "ellipses" in pipelines:
        assert "Expected ordering (Adler & Öktem), each step a paired claim" in results

    # every train, reference and evaluate stage that ran logged one MLflow run
    runs_after = _stage_runs(pipelines)
    for pipeline in pipelines:
        for stage in (f"train@{pipeline}-lpd", f"train_sampler@{pipeline}-cwgan", f"reference@{pipeline}", f"evaluate@{pipeline}"):
            assert runs_after[stage] == runs_before[stage] + 1, stage

    second = _dvc(repo, "repro")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    assert _stage_runs(pipelines) == runs_after  # stages DVC skips log nothing


def test_repro_runs_the_whole_dag_then_does_nothing(repo, reproduced):
    _check_whole_dag(repo, *reproduced, PIPELINES)


@pytest.mark.slow
def test_repro_of_the_whole_catalogue(tmp_path):
    """Every pipeline of pipelines.yaml, at the smoke scale (`make test-slow`)."""
    pipelines = tuple(CATALOGUE["pipelines"])
    repo = copy_repo_at_smoke_scale(tmp_path)
    runs_before = _stage_runs(pipelines)
    first = _dvc(repo, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    _check_whole_dag(repo, first, runs_before, pipelines)


def test_params_change_reruns_only_what_depends_on_it(repo, reproduced):
    pipelines, params = repo / "pipelines.yaml", repo / "params.yaml"
    originals = {path: path.read_text() for path in (pipelines, params)}
    try:
        pipelines.write_text(originals[pipelines].replace("seed: 20201", "seed: 7", 1))
        status = _dvc(repo, "status")
        assert "simulate@single_pixel" in status.stdout and "simulate@ellipses" not in status.stdout
        # cwgan tracks only the train keys it reads: a new lr retrains the MSE-trained methods, not it
        params.write_text(originals[params].replace("  lr: 1.0e-3                 # Adam", "  lr: 5.0e-4                 # Adam", 1))
        status = _dvc(repo, "status")
        assert "train@ellipses-lpd" in status.stdout and "train_sampler@ellipses-cwgan" not in status.stdout
    finally:
        for path, text in originals.items():
            path.write_text(text)


def test_an_edit_of_the_config_schema_or_the_serving_code_makes_its_stages_stale(repo, reproduced):
    """Each stage lists the code it runs (tests/test_stage_dependencies.py): an
    edit of the config schema makes every stage that validates a config stale,
    one of the serving module only the stage that registers models."""
    def stale_stages() -> set[str]:
        status = _dvc(repo, "status", "--json")
        assert status.returncode == 0, status.stderr
        return set(json.loads(status.stdout))

    before = stale_stages()  # whatever another test left changed
    schema, serving = repo / "recongap" / "config" / "schema.py", repo / "tasks" / "serving.py"
    for path in (schema, serving):
        original = path.read_text()
        path.write_text(original + "\n# an edit\n")
        try:
            stale = stale_stages()
        finally:
            path.write_text(original)
        if path == schema:
            for stage in ("simulate", "reference", "evaluate", "register"):
                assert f"{stage}@ellipses" in stale, (stage, sorted(stale))
            assert {"train@ellipses-lpd", "train_sampler@ellipses-cwgan", "report"} <= stale
        else:
            assert stale - before == {f"register@{pipeline}" for pipeline in PIPELINES}, sorted(stale - before)
