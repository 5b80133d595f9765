"""Scheduled retraining through a real Prefect server (no mock).

Starts `prefect server start` on a free loopback port with its own
PREFECT_HOME and its scheduler loop shortened to a second (Prefect's own
setting), creates the deployments with `python -m flows.deploy`, and waits
for the server's scheduler to create the auto-scheduled runs of
`retrain-ellipses` at the cron's next times. Then one of those runs, moved to
now, goes through `prefect worker start --run-once` to Completed at the smoke
scale on a copy of the repository. The server and the worker are always
stopped.
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
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from cronsim import CronSim

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
    """A copy of the repository at the smoke scale, retries off (a failure shows at once).
    Its catalogue: the scheduled ellipses and one other pipeline (which a retrain
    of ellipses must not touch), one trained method: what is under test is the
    schedule and the orchestration, the DAG of every method is test_dvc_pipeline's."""
    dest = copy_repo_at_smoke_scale(
        tmp_path_factory.mktemp("repo"), ("ellipses", "single_pixel"), learned_methods=["postproc"], sampler_methods=[]
    )
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("retries: 1 ", "retries: 0 ", 1))
    return dest


@pytest.fixture(scope="module")
def env(repo, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("prefect-home")
    env = os.environ.copy()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{_free_port()}/api",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(repo / ".dvc" / "tmp" / "site-cache"),
        MLFLOW_DISABLE_TELEMETRY="true",
        RECONGAP_CACHE_DIR=str(tmp_path_factory.mktemp("matrix-cache")),
        # the scheduler looks for deployments to schedule every second, not every minute
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",
    )
    # no PYTHONPATH: as for a user, the copy's flows and stages are found from
    # its working tree (only the recongap package is installed)
    for name in ("PYTHONPATH", "PREFECT_PROFILES_PATH", "MLFLOW_TRACKING_URI", "RECONGAP_ARTIFACT_LOCATION"):
        env.pop(name, None)  # the copy's own embedded stores
    return env


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    api = env["PREFECT_API_URL"]
    port = api.rsplit(":", 1)[1].split("/")[0]
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    log = log_path.open("w")
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
        yield api, log_path
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


def _scheduler_errors(log_path: Path) -> list[str]:
    """What the server log says of its scheduler failing: its own "Error
    scheduling deployment" lines, and the last line of every traceback that
    passes through the scheduler service (as the SQLAlchemy 2.1 failure did).
    Other tracebacks (a busy sqlite store under load) are not the scheduler's."""
    lines = log_path.read_text().splitlines()
    errors = [line for line in lines if "Error scheduling" in line]
    i = 0
    while i < len(lines):
        if lines[i].startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            block = lines[i : j + 1]
            if any("services/scheduler" in line or "scheduled_flow_runs" in line for line in block):
                errors.append(block[-1])
            i = j
        i += 1
    return errors


@pytest.fixture(scope="module")
def auto_scheduled(server, env, repo) -> tuple[dict, list[dict]]:
    """Deploys, then waits for the server's scheduler (not this test) to create
    runs of retrain-ellipses. Returns the deployment and its runs, earliest first."""
    api, log_path = server
    _run(env, repo, sys.executable, "-m", "flows.deploy", "--pool", POOL, timeout=180)
    deployment = _api(api, "/deployments/name/retrain/retrain-ellipses")
    query = {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"}
    deadline = time.monotonic() + 90  # the loop is 1 s; the first pass may wait for the server's start-up work
    while not (runs := _api(api, "/flow_runs/filter", query)) and time.monotonic() < deadline:
        time.sleep(1)
    return deployment, runs


def test_the_server_schedules_retrain_at_the_crons_next_times(server, auto_scheduled, repo):
    api, log_path = server
    deployment, runs = auto_scheduled
    cron = yaml.safe_load((repo / "pipelines.yaml").read_text())["schedules"]["ellipses"]
    assert [s["schedule"]["cron"] for s in deployment["schedules"] if s["active"]] == [cron]
    assert deployment["work_pool_name"] == POOL and deployment["parameters"] == {"pipeline": "ellipses"}
    names = {d["name"] for d in _api(api, "/deployments/filter", {})}
    assert {"retrain-ellipses", "promote-ellipses", "regenerate"} <= names

    assert len(runs) >= 3, (  # Prefect's scheduler keeps at least 3 runs ahead
        f"the scheduler created {len(runs)} runs of retrain-ellipses; server log:\n"
        + "\n".join(_scheduler_errors(log_path)[-20:])
    )
    assert all(r["auto_scheduled"] and r["state"]["type"] == "SCHEDULED" for r in runs)
    assert all(r["parameters"] == {"pipeline": "ellipses"} for r in runs)
    # the cron's next times after the earliest run's creation, in UTC
    created = min(datetime.fromisoformat(r["created"]) for r in runs)
    ticks = CronSim(cron, created.astimezone(timezone.utc).replace(tzinfo=None))
    expected = [next(ticks).replace(tzinfo=timezone.utc) for _ in runs]
    assert [datetime.fromisoformat(r["expected_start_time"]) for r in runs] == expected
    assert not _scheduler_errors(log_path), "\n".join(_scheduler_errors(log_path)[-20:])


def test_an_auto_scheduled_retrain_runs_through_a_worker(server, auto_scheduled, env, repo):
    api, _ = server
    _, runs = auto_scheduled
    assert runs, "the scheduler created no run to take"
    run = runs[0]
    now = datetime.now(timezone.utc).isoformat()
    moved = _api(api, f"/flow_runs/{run['id']}/set_state", {
        "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": now}}, "force": True,
    })
    assert moved["status"] == "ACCEPT", moved
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
    assert {"simulate@ellipses", "reference@ellipses", "train@ellipses-postproc", "evaluate@ellipses", "register@ellipses"} <= ran
    assert not any(name.endswith("@single_pixel") for name in ran)
    # no seed given: the run's own scheduled time is the new data seed
    seed = yaml.safe_load((repo / "pipelines.yaml").read_text())["pipelines"]["ellipses"]["seed"]
    finished = _api(api, f"/flow_runs/{run['id']}")
    assert seed == int(datetime.fromisoformat(finished["expected_start_time"]).timestamp()) != 20181
    assert json.loads((repo / "metrics" / "ellipses.json").read_text())["scale"] == "smoke"
    assert (repo / "models" / "ellipses" / "postproc" / "best.ckpt").exists()
    registry = json.loads((repo / "reports" / "registry" / "ellipses.json").read_text())
    catalogue = yaml.safe_load((repo / "pipelines.yaml").read_text())
    trained = [*catalogue["learned_methods"], *catalogue["sampler_methods"]]
    # every trained model of the pipeline was decided on and has a champion
    assert sorted(r["model"] for r in registry["models"]) == sorted(f"ellipses-{m}" for m in trained)
    # the copy's own MLflow store was empty: each model's first version became its champion
    assert all(r["champion"] == "1" and r["decision"] == "promoted: first version" for r in registry["models"]), registry
