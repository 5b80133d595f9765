"""MLflow for the stages: where the store is, one experiment per pipeline, and
the tags that tie a run to the code and data that made it.

The embedded default needs no server: `sqlite:///<repo>/mlflow.db` with
artifacts under `<repo>/mlartifacts`. `MLFLOW_TRACKING_URI` switches to a
server (whose own `--artifacts-destination` then decides where artifacts go);
`RECONGAP_ARTIFACT_LOCATION` overrides the artifact location of experiments
this project creates. Library code in recongap/ never imports this module.
"""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

import yaml

from recongap.config import ConfigError
from recongap.launcher import NotAWorkingTree, working_tree

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class TrackingUnavailable(ConfigError):
    """The configured MLflow store cannot be reached (stages exit with code 2)."""


def repo_root() -> Path:
    """The working tree the command acts on (recongap.launcher.working_tree)."""
    try:
        return working_tree()
    except NotAWorkingTree as e:
        raise ConfigError(str(e)) from None


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else the embedded sqlite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def portable_uri(uri: str) -> str:
    """`uri` as committed outputs should record it: a sqlite store inside the
    repository or the working directory by its relative path (an absolute
    one would name this machine), any other URI unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri[len(prefix):])
        try:
            bases = (repo_root(), Path.cwd())
        except ConfigError:
            bases = (Path.cwd(),)
        for base in bases:
            if path.is_absolute() and path.resolve().is_relative_to(base.resolve()):
                return prefix + path.resolve().relative_to(base.resolve()).as_posix()
    return uri


def artifact_location(pipeline: str) -> str | None:
    """Where a new experiment keeps artifacts; None lets a server decide."""
    base = os.environ.get("RECONGAP_ARTIFACT_LOCATION")
    if base:
        return f"{base.rstrip('/')}/{pipeline}"
    if tracking_uri().startswith("sqlite:"):
        return (repo_root() / "mlartifacts" / pipeline).as_uri()
    return None


def connect() -> str:
    """Point MLflow at the store, checking that a server answers; returns the URI."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as e:
            raise TrackingUnavailable(
                f"MLflow server {uri} (MLFLOW_TRACKING_URI) does not answer ({e}); start it with "
                f"`mlflow server --host 127.0.0.1 --port PORT --backend-store-uri ...`, or unset MLFLOW_TRACKING_URI "
                f"to use the embedded store sqlite:///{repo_root() / 'mlflow.db'}"
            ) from None
    elif uri.startswith("file:") or "://" not in uri:
        raise TrackingUnavailable(f"MLFLOW_TRACKING_URI={uri}: the file store is refused by MLflow 3; use sqlite:///PATH or a server")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(pipeline: str) -> str:
    """The pipeline's experiment, created with an explicit artifact location."""
    import mlflow

    connect()
    found = mlflow.get_experiment_by_name(pipeline)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(pipeline, artifact_location=artifact_location(pipeline))


def git_revision() -> str:
    """HEAD's commit, with '-dirty' when the worktree has changes; 'unknown' outside git."""
    try:
        root = repo_root()
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError, ConfigError):
        return "unknown"
    return rev + ("-dirty" if dirty.strip() else "")


def dvc_lock_hashes(stage: str, lock: Path | None = None) -> dict[str, str]:
    """{path: md5} of the deps of `stage` as recorded in dvc.lock (empty if not locked yet)."""
    lock = lock or repo_root() / "dvc.lock"
    if not lock.exists():
        return {}
    entry = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(stage, {})
    return {d["path"]: d.get("md5", "") for d in entry.get("deps", [])}


def train_stage(pipeline: str, method: str, sampler_methods: Iterable[str] = (), prior_models: Iterable[str] = ()) -> str:
    """The dvc.yaml stage that trains `method` on `pipeline`: samplers, which
    start from the trained postproc, and prior models (denoiser, vae) have
    stages of their own."""
    kind = "train_sampler" if method in sampler_methods else "train_prior" if method in prior_models else "train"
    return f"{kind}@{pipeline}-{method}"


def stage_tags(stage: str) -> dict[str, str]:
    """Tags every stage run carries: git revision and the dvc.lock hashes of its inputs."""
    tags = {"git_revision": git_revision(), "dvc_stage": stage}
    tags.update({f"dvc.dep.{path}": md5 for path, md5 in dvc_lock_hashes(stage).items()})
    return tags


def log_stage(
    pipeline: str,
    stage: str,
    params: dict | None = None,
    metrics: dict[str, float] | None = None,
    artifacts: Iterable[Path] = (),
) -> str:
    """One MLflow run for a finished stage: params, final metrics, the files that
    exist among `artifacts`. The one line a stage adds; returns the run id."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id(pipeline), run_name=stage, tags=stage_tags(stage)) as run:
        if params:
            mlflow.log_params(_flatten(params))
        if metrics:
            mlflow.log_metrics(metrics)
        for path in artifacts:
            if Path(path).exists():
                mlflow.log_artifact(str(path))
        return run.info.run_id


def lightning_logger(pipeline: str, stage: str):
    """Lightning's MLFlowLogger on this project's store (it needs an explicit URI)."""
    from lightning.pytorch.loggers import MLFlowLogger

    experiment_id(pipeline)  # creates it with our artifact location
    return MLFlowLogger(experiment_name=pipeline, run_name=stage, tracking_uri=tracking_uri(), tags=stage_tags(stage))


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


REPORT_ARTEFACTS = ("grid.png", "metrics.md", "gap.md", "gap.png")


def log_evaluation(pipeline: str, summary: dict, reports: Path) -> str:
    """The evaluate stage's run: per-method final metrics (`<method>.<metric>`)
    and the report artefacts present in `reports`."""
    metrics = {
        f"{method}.{key}": float(value["mean"])
        for method, result in summary["methods"].items()
        for key, value in result.items()
        if isinstance(value, dict) and "mean" in value
    }
    params = {"scale": summary["scale"], "test_items": summary["test_items"]}
    return log_stage(pipeline, f"evaluate@{pipeline}", params, metrics, [reports / name for name in REPORT_ARTEFACTS])
