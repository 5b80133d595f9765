"""Shared fixtures: a private matrix cache and the repository root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one thread each, inherited by the
    # stages they start. With torch's default (a thread per core) two workers
    # on 2 cores took 26.1 CPU-minutes and 912 s against 12.2 and 435 s
    # (docs/benchmarks.md, "The test suite").
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402  (after the thread count is set)

ROOT = Path(__file__).resolve().parents[1]

# The two modules that run the smoke DAG and a Prefect retrain take most of the
# suite's time: collected first, `make test` (pytest-xdist, --dist loadfile
# --no-loadscope-reorder) starts each on its own worker while the short tests
# fill in around them.
LONGEST_FIRST = ("test_dvc_pipeline.py", "test_prefect_server.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order


def copy_repo_at_smoke_scale(dest: Path, pipelines: tuple[str, ...] | None = None, **catalogue: object) -> Path:
    """What git holds (tracked files and new ones not ignored) copied to `dest`,
    made a git repository, with `scale: smoke` in params.yaml; with
    `pipelines`, the catalogue keeps only those (and their schedules), and
    `catalogue` keys (e.g. learned_methods) replace the catalogue's."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for f in listed.splitlines():
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("scale: laptop", "scale: smoke", 1))
    if pipelines is not None or catalogue:
        path = dest / "pipelines.yaml"
        data = yaml.safe_load(path.read_text())
        if pipelines is not None:
            data["pipelines"] = {name: data["pipelines"][name] for name in pipelines}
            data["schedules"] = {name: cron for name, cron in data.get("schedules", {}).items() if name in pipelines}
        data.update(catalogue)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests build their own system matrices instead of trusting ~/.cache."""
    os.environ["RECONGAP_CACHE_DIR"] = str(tmp_path_factory.mktemp("matrix-cache"))


@pytest.fixture(scope="session", autouse=True)
def _private_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Stages under test log to a throw-away sqlite store, never the repo's mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.environ["RECONGAP_ARTIFACT_LOCATION"] = (store / "mlartifacts").as_uri()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """PSNR in dB with the truth's value range as data range."""
    mse = float(((estimate - truth) ** 2).mean())
    data_range = float(truth.max() - truth.min())
    return 10 * torch.log10(torch.tensor(data_range**2 / mse)).item()
