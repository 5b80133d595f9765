"""Scheduled retraining through a real Prefect server (no mock).

Starts `prefect server start` on a free loopback port with its own
PREFECT_HOME, creates the deployments with `python -m flows.deploy`, checks
the ellipses schedule is on the server, triggers one `retrain` run of the
ellipses pipeline at the smoke scale on a copy of the repository, runs it with
`prefect worker start --run-once`, and waits for it to complete. The server
and the worker are always stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_repo_at_smoke_scale

POOL = "recongap-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group (server and its children), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository at the smoke scale, retries off (a failure shows at once)."""
    dest = copy_repo_at_smoke_scale(tmp_path_factory.mktemp("repo"))
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("retries: 1 ", "retries: 0 ", 1))
    return dest


@pytest.fixture(scope="module")
def env(repo, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("prefect-home")
    env = os.environ.copy()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(repo),  # the flows and stages of the copy, not of another checkout
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{_free_port()}/api",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(repo / ".dvc" / "tmp" / "site-cache"),
        MLFLOW_DISABLE_TELEMETRY="true",
        RECONGAP_CACHE_DIR=str(tmp_path_factory.mktemp("matrix-cache")),
    )
    for name in ("PREFECT_PROFILES_PATH", "MLFLOW_TRACKING_URI", "RECONGAP_ARTIFACT_LOCATION"):
        env.pop(name, None)  # the copy's own embedded stores
    return env


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    api = env["PREFECT_API_URL"]
    port = api.rsplit(":", 1)[1].split("/")[0]
    log = (tmp_path_factory.mktemp("logs") / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"prefect server exited: {Path(log.name).read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                    if json.loads(response.read()) is True:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no /api/health in 120 s: {Path(log.name).read_text()[-3000:]}"
            time.sleep(1)
        yield api
    finally:
        _stop(process)
        log.close()


def _api(api: str, path: str, body: dict | None = None, attempts: int = 5) -> object:
    """One REST call; a 502/503/429 (the server busy, e.g. its sqlite store
    locked while the cores are shared) is retried, as Prefect's own client does."""
    request = urllib.request.Request(
        f"{api}{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET",
    )
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            if e.code not in (429, 502, 503) or attempt == attempts - 1:
                raise
            time.sleep(2**attempt)


def _run(env, repo, *command: str, timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


def test_scheduled_retrain_runs_through_a_worker(server, env, repo):
    api = server
    _run(env, repo, sys.executable, "-m", "flows.deploy", "--pool", POOL, timeout=180)

    deployment = _api(api, "/deployments/name/retrain/retrain-ellipses")
    crons = [s["schedule"]["cron"] for s in deployment["schedules"] if s["active"]]
    assert crons == [yaml.safe_load((repo / "pipelines.yaml").read_text())["schedules"]["ellipses"]]
    assert deployment["work_pool_name"] == POOL and deployment["parameters"] == {"pipeline": "ellipses"}
    names = {d["name"] for d in _api(api, "/deployments/filter", {})}
    assert {"retrain-ellipses", "promote-ellipses", "regenerate"} <= names

    run = _api(api, f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"pipeline": "ellipses", "seed": 123}})
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--run-once"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        output, _ = worker.communicate(timeout=1200)  # ~3 min alone on 2 cores; more when the cores are shared
    finally:
        _stop(worker)
    deadline = time.monotonic() + 60
    while (state := _api(api, f"/flow_runs/{run['id']}")["state"])["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        assert time.monotonic() < deadline, f"flow run still {state['type']} after the worker exited:\n{output[-6000:]}"
        time.sleep(2)
    assert state["type"] == "COMPLETED", f"{state}\n{output[-6000:]}"

    # the stages ran: one task per stage downstream of simulate@ellipses, the data has the new seed
    tasks = _api(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}})
    ran = {t["name"] for t in tasks if t["state"]["type"] == "COMPLETED"}
    assert {"simulate@ellipses", "train@ellipses-lpd", "evaluate@ellipses", "register@ellipses"} <= ran
    assert not any(name.endswith("@gaussian_field") for name in ran)
    assert "seed: 123" in (repo / "pipelines.yaml").read_text()
    assert json.loads((repo / "metrics" / "ellipses.json").read_text())["scale"] == "smoke"
    assert (repo / "models" / "ellipses" / "lpd" / "best.ckpt").exists()
    registry = json.loads((repo / "reports" / "registry" / "ellipses.json").read_text())
    assert registry, "register@ellipses wrote no promotion summary"
