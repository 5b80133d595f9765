"""Registry, gated promotion and serving on a real sqlite MLflow store, with
a smoke-sized lpd trained by the real stages."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from recongap.config import ConfigError
from tests.conftest import ROOT

PIPELINE, METHOD = "ellipses", "lpd"
NAME = f"{PIPELINE}-{METHOD}"


def _env(tmp: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        PYTHONPATH=str(ROOT),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        RECONGAP_ARTIFACT_LOCATION=(tmp / "mlartifacts").as_uri(),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _run(tmp: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", *args, "--params", str(tmp / "params.yaml"), "--pipelines", str(tmp / "pipelines.yaml")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env(tmp))
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _paths(tmp: Path) -> list[str]:
    return ["--data", str(tmp / "data"), "--models", str(tmp / "models")]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Smoke data, one trained lpd, registered and promoted once."""
    tmp = tmp_path_factory.mktemp("registry")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "smoke"
    params["scales"]["smoke"] = {"size": 16, "splits": {"train": 8, "val": 4, "test": 4}, "epochs": 1}
    params["simulate"]["noise_calibration_samples"] = 8
    params["methods"]["lpd"] = {"iterations": 2, "primal": 2, "dual": 2, "width": 4}
    params["methods"]["denoiser"] = {"channels": 4, "depth": 1, "max_noise": 0.2}
    params["methods"]["vae"] = {"latent": 4, "channels": 4, "depth": 2, "recon_std": 0.1}
    params["train"].update(batch_size=4)
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    catalogue = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    catalogue["learned_methods"] = [METHOD]
    catalogue["sampler_methods"] = []  # cwgan would need a trained postproc
    (tmp / "pipelines.yaml").write_text(yaml.safe_dump(catalogue))
    _run(tmp, "tasks.simulate", PIPELINE, "--out", str(tmp / "data"))
    for model in (METHOD, "denoiser", "vae"):  # the prior models are registered too
        _run(tmp, "tasks.train", PIPELINE, model, "--data", str(tmp / "data"), "--out", str(tmp / "models"))
    _run(tmp, "tasks.register", PIPELINE, *_paths(tmp))
    _run(tmp, "tasks.promote", PIPELINE, "--data", str(tmp / "data"), "--out", str(tmp / "registry"))
    return tmp


def _client(tmp: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_version_is_champion_with_recorded_psnr(store):
    client = _client(store)
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert str(champion.version) == "1" and str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"
    assert champion.tags["promotion_decision"] == "promoted: first version"
    assert np.isfinite(float(champion.tags["test_psnr"]))
    summary = json.loads((store / "registry" / f"{PIPELINE}.json").read_text())
    assert summary["models"][0]["champion"] == "1"
    assert summary["tracking_uri"] == f"sqlite:///{store / 'mlflow.db'}"  # outside the repository: kept as it is


def test_prior_models_are_registered_and_serve_their_task(store):
    """pnp's denoiser and the generative regularisers' VAE: versions with their
    own task's test PSNR, loadable as pyfunc models (noisy images -> denoised,
    latents -> images), not promoted (reports/registry lists the learned methods)."""
    import mlflow

    client = _client(store)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    images = np.random.default_rng(0).random((2, 1, 16, 16), dtype=np.float32)
    for model, example, shape in (("denoiser", images, (2, 1, 16, 16)), ("vae", np.zeros((3, 4), np.float32), (3, 1, 16, 16))):
        version = client.get_model_version_by_alias(f"{PIPELINE}-{model}", "challenger")
        assert np.isfinite(float(version.tags["test_psnr"])) and version.tags["dvc_stage"] == f"train_prior@{PIPELINE}-{model}"
        served = mlflow.pyfunc.load_model(f"models:/{PIPELINE}-{model}/{version.version}")
        assert served.predict(example).shape == shape
    with pytest.raises(Exception, match="shape"):  # latents of the wrong size: refused (by the signature or the model)
        served.predict(np.zeros((3, 5), np.float32))
    summary = json.loads((store / "registry" / f"{PIPELINE}.json").read_text())
    assert [m["model"] for m in summary["models"]] == [NAME]


def test_champion_loads_in_a_new_process_with_recorded_psnr(store):
    """models:/NAME@champion in a fresh interpreter, outside the repository
    (only the recongap package installed), reproduces the registration PSNR."""
    script = (
        "import sys, json, mlflow, numpy as np, torch\n"
        "from recongap.datasets import read_split\nfrom recongap.evaluation import score\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "test = read_split(sys.argv[1])\n"
        "out = model.predict(test.measurements.astype(np.float32))\n"
        "import importlib.util\n"
        "print(json.dumps({'shape': list(out.shape), 'psnr': score(torch.from_numpy(out), torch.from_numpy(test.images))['psnr']['mean'],\n"
        "                  'tasks_importable': importlib.util.find_spec('tasks') is not None}))\n"
    )
    env = _env(store)
    del env["PYTHONPATH"]  # this repository is not importable there
    result = subprocess.run(
        [sys.executable, "-c", script, str(store / "data" / PIPELINE / "test.h5")], cwd=store, capture_output=True, text=True, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    recorded = float(_client(store).get_model_version_by_alias(NAME, "champion").tags["test_psnr"])
    assert got["shape"] == [4, 1, 16, 16] and not got["tasks_importable"]
    assert got["psnr"] == pytest.approx(recorded, abs=1e-3)


def test_register_again_is_a_no_op(store):
    result = _run(store, "tasks.register", PIPELINE, *_paths(store))
    assert "nothing new" in result.stdout
    assert len(_client(store).search_model_versions(f"name='{NAME}'")) == 1


def _register_degraded(store: Path) -> None:
    """Register a checkpoint with perturbed weights (a worse model) as challenger."""
    checkpoint = store / "models" / PIPELINE / METHOD / "best.ckpt"
    original = checkpoint.read_bytes()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    generator = torch.Generator().manual_seed(0)
    for key, value in state["state_dict"].items():
        if value.is_floating_point():
            state["state_dict"][key] = value + 0.5 * torch.randn(value.shape, generator=generator)
    torch.save(state, checkpoint)
    try:
        _run(store, "tasks.register", PIPELINE, *_paths(store))
    finally:
        checkpoint.write_bytes(original)


def _promote(store: Path) -> subprocess.CompletedProcess:
    return _run(store, "tasks.promote", PIPELINE, "--data", str(store / "data"), "--out", str(store / "registry"))


def test_degraded_challenger_is_refused_on_the_validation_split(store):
    """A worse challenger is registered, and promotion keeps the champion; the
    figures it compared are the validation MSEs of the two registered versions."""
    import mlflow

    from recongap.evaluation import errors_on_split

    _register_degraded(store)
    result = _promote(store)
    client = _client(store)
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert str(challenger.version) == "2" and str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert challenger.tags["promotion_decision"].startswith("refused: validation MSE lower than champion v1's by -")
    assert challenger.tags["promotion_criterion"] == "validation_mse" and float(challenger.tags["promotion_margin"]) == 0.01
    mlflow.set_registry_uri(f"sqlite:///{store / 'mlflow.db'}")
    val_file = store / "data" / PIPELINE / "val.h5"
    for version, tag in (("1", "champion_validation_mse"), ("2", "challenger_validation_mse")):
        model = mlflow.pyfunc.load_model(f"models:/{NAME}/{version}")
        mses = errors_on_split(METHOD, lambda y: torch.from_numpy(model.predict(y.numpy())), val_file)[0]
        assert float(challenger.tags[tag]) == pytest.approx(float(mses.mean()), rel=1e-5)  # validation, not test
    assert float(challenger.tags["challenger_validation_mse"]) > float(challenger.tags["champion_validation_mse"])
    assert "refused" in result.stdout
    summary = json.loads((store / "registry" / f"{PIPELINE}.json").read_text())["models"][0]
    assert summary["verdict"] == "fails" and summary["improvement"]["items"] == 4


def test_a_champion_that_no_longer_loads_is_reported_and_replaced(store):
    """Its checkpoint artefact corrupted, the old champion cannot be scored: the
    stage says so and promotes the challenger instead of crashing."""
    import hashlib

    _register_degraded(store)
    client = _client(store)
    digest = client.get_model_version(NAME, "1").tags["checkpoint_sha256"]
    artefact = next(p for p in (store / "mlartifacts").rglob("*.ckpt") if hashlib.sha256(p.read_bytes()).hexdigest() == digest)
    original = artefact.read_bytes()
    artefact.write_bytes(b"not a checkpoint")
    try:
        result = _promote(store)
    finally:
        artefact.write_bytes(original)
        client.set_registered_model_alias(NAME, "champion", "1")  # as the other tests expect
    decision = client.get_model_version(NAME, "2").tags["promotion_decision"]
    assert decision.startswith("promoted: champion v1 does not load (") and decision.endswith("); replaced")
    assert "champion is version 2" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_champion_answers_a_scoring_request(store):
    from recongap.datasets import read_split

    port = _free_port()
    cmd = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(cmd, cwd=store, env=_env(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping in 90 s"
                time.sleep(1)
        y = read_split(store / "data" / PIPELINE / "test.h5").measurements[:2]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": y.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    assert predictions.shape == (2, 1, 16, 16) and np.isfinite(predictions).all()


def test_train_and_register_runs_are_tracked(store):
    """The train stage logged params and per-epoch val_psnr through MLFlowLogger, tagged with the git revision."""
    client = _client(store)
    experiment = client.get_experiment_by_name(PIPELINE)
    assert experiment.artifact_location.startswith((store / "mlartifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id], f"tags.mlflow.runName = 'train@{PIPELINE}-{METHOD}'")
    assert len(runs) == 1
    run = runs[0]
    assert "val_psnr" in run.data.metrics and run.data.tags["git_revision"] != "unknown"
    assert any(key.endswith("width") and value == "4" for key, value in run.data.params.items())


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.cli", *args], cwd=ROOT, capture_output=True, text=True, env=_env(tmp))


def test_cli_reconstructs_with_the_champion(store):
    out = store / "recon.npy"
    result = _cli(store, "reconstruct", "--model", f"{NAME}@champion", "--input", str(store / "data" / PIPELINE / "test.h5"), "--output", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(out).shape == (4, 1, 16, 16)


def test_a_version_pickled_before_models_from_code_still_loads_from_the_repository(store):
    """Versions registered before 2 Dec 2026 pickled tasks.serving.Reconstructor
    by reference: the installed `recongap` command, run inside the repository, loads them."""
    models = store / "models" / PIPELINE / METHOD
    script = (
        "import mlflow\nfrom tasks.serving import Reconstructor\n"
        "with mlflow.start_run():\n"
        f"    mlflow.pyfunc.log_model(name='model', python_model=Reconstructor(), registered_model_name='{NAME}-pickled',\n"
        f"        artifacts={{'checkpoint': '{models / 'best.ckpt'}', 'config': '{models / 'config.json'}'}})\n"
        f"mlflow.MlflowClient().set_registered_model_alias('{NAME}-pickled', 'old', '1')\n"
    )
    logged = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=_env(store))
    assert logged.returncode == 0, logged.stderr[-3000:]
    env = _env(store)
    del env["PYTHONPATH"]  # only what the `recongap` command itself puts on the path
    out = store / "pickled.npy"
    test_file = str(store / "data" / PIPELINE / "test.h5")
    done = subprocess.run([str(Path(sys.executable).parent / "recongap"), "reconstruct", "--model", f"{NAME}-pickled@old",
                           "--input", test_file, "--output", str(out)], cwd=ROOT / "docs", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert np.load(out).shape == (4, 1, 16, 16)


def test_cli_errors_say_what_to_run(store):
    test_file = str(store / "data" / PIPELINE / "test.h5")
    alias = _cli(store, "reconstruct", "--model", f"{NAME}@best", "--input", test_file, "--output", str(store / "x.npy"))
    assert alias.returncode == 2 and "has no alias 'best'" in alias.stderr and "tasks.promote" in alias.stderr
    missing = _cli(store, "reconstruct", "--model", "ellipses-unet@champion", "--input", test_file, "--output", str(store / "x.npy"))
    assert missing.returncode == 2 and "no registered model 'ellipses-unet'" in missing.stderr and "dvc repro register@ellipses" in missing.stderr
    env = _env(store)
    env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{_free_port()}"
    cmd = [sys.executable, "-m", "tasks.register", PIPELINE, *_paths(store), "--params", str(store / "params.yaml"), "--pipelines", str(store / "pipelines.yaml")]
    server = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert server.returncode == 2 and "does not answer" in server.stderr and "mlflow server" in server.stderr
    assert "Traceback" not in server.stderr


def test_cli_status_lists_the_champion(store):
    result = _cli(store, "status")
    assert result.returncode == 0, result.stderr[-3000:]
    # its DVC line agrees with DVC's own command on the same repository
    dvc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--json"], cwd=ROOT, capture_output=True, text=True, env=_env(store))
    assert dvc.returncode == 0, dvc.stderr[-2000:]
    stale = json.loads(dvc.stdout)
    assert ("DVC: everything up to date" if not stale else f"DVC: {len(stale)} stale stage(s)") in result.stdout
    assert f"{NAME}@champion = version 1, test PSNR" in result.stdout
    assert "ellipses-lgd: no champion (run `dvc repro register@ellipses`)" in result.stdout


def test_the_recongap_command_works_from_a_subfolder_of_the_tree(store):
    """The installed command finds the tree's pipelines.yaml and DVC project from docs/ too."""
    env = _env(store)
    del env["PYTHONPATH"]
    done = subprocess.run([str(Path(sys.executable).parent / "recongap"), "status"], cwd=ROOT / "docs", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("DVC: ") and f"{NAME}@champion = version 1" in done.stdout
    assert "ellipses-lgd: no champion" in done.stdout


def test_a_store_inside_the_repository_is_recorded_by_its_relative_path(tmp_path):
    """reports/registry/*.json is committed: the default store at the
    repository root must not put this machine's path in it."""
    from tasks.tracking import portable_uri

    assert portable_uri(f"sqlite:///{ROOT / 'mlflow.db'}") == "sqlite:///mlflow.db"
    assert portable_uri(f"sqlite:///{tmp_path / 'mlflow.db'}") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert portable_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert portable_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_the_working_tree_is_found_from_the_current_directory(tmp_path, monkeypatch):
    """Not from where the module is installed: the tree holding dvc.yaml at or above the cwd."""
    from tasks.tracking import repo_root, tracking_uri

    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tree / "a" / "b")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert repo_root() == tree.resolve() and tracking_uri() == f"sqlite:///{tree.resolve() / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no dvc.yaml here or above"):
        repo_root()
