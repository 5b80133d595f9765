"""`recongap`: what a user does by hand, beside `dvc repro` and the Prefect UI.

    recongap status                      stale DVC stages, champions and their metrics
    recongap reconstruct --model ellipses-lpd@champion --input FILE.h5|.npy --output FILE.npy
    recongap report                      docs/results.md from metrics/, and the champions
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from recongap.config import ConfigError, load_catalogue
from recongap.datasets import DataError, read_split
from recongap.files import atomic_path

from . import tracking


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def stale_stages() -> dict[str, list]:
    """{stage: what changed} for every stage DVC would re-run in the working tree."""
    from dvc.repo import Repo

    with Repo(str(tracking.repo_root())) as repo:
        return repo.status()


def champions(pipelines_file: Path) -> list[dict]:
    """One row per learned model of the catalogue: its champion version and tags."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    tracking.connect()
    client = MlflowClient()
    catalogue = load_catalogue(pipelines_file)
    rows = []
    for pipeline in catalogue.pipelines:
        for method in catalogue.trained_methods:
            name = f"{pipeline}-{method}"
            try:
                version = client.get_model_version_by_alias(name, "champion")
            except MlflowException:
                rows.append({"model": name, "champion": None})
                continue
            rows.append({"model": name, "champion": str(version.version), "test_psnr": version.tags.get("test_psnr"),
                         "decision": version.tags.get("promotion_decision")})
    return rows


def _print_champions(pipelines_file: Path) -> None:
    print(f"Champions in {tracking.tracking_uri()}:")
    for row in champions(pipelines_file):
        if row["champion"] is None:
            pipeline = row["model"].rsplit("-", 1)[0]
            print(f"  {row['model']}: no champion (run `dvc repro register@{pipeline}`)")
        else:
            print(f"  {row['model']}@champion = version {row['champion']}, test PSNR {row['test_psnr']} dB")


def _describe(changes: list) -> str:
    """DVC's status entry for a stage as 'path (what), ...'."""
    parts = []
    for change in changes:
        if isinstance(change, dict):
            for paths in change.values():
                if isinstance(paths, dict):
                    parts += [f"{path} ({what if isinstance(what, str) else 'modified'})" for path, what in paths.items()]
        else:
            parts.append(str(change))
    return ", ".join(parts)


def status(pipelines: Path) -> None:
    """Which DVC stages are stale, which models are champions (with their metrics)."""
    try:
        stale = stale_stages()
        print("DVC: everything up to date" if not stale else f"DVC: {len(stale)} stale stage(s) (run `dvc repro`):")
        for stage, changes in sorted(stale.items()):
            print(f"  {stage}: {_describe(changes)}")
        _print_champions(pipelines)
    except (ConfigError, DataError) as e:
        _fail(str(e))


def load_registered(model: str):
    """models:/NAME@ALIAS (or NAME/VERSION) as a pyfunc, with errors that say what to run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    tracking.connect()
    name, sep, alias = model.partition("@")
    if not sep:
        raise ConfigError(f"--model {model!r}: write NAME@ALIAS, e.g. ellipses-lpd@champion")
    client = MlflowClient()
    if not client.search_registered_models(f"name='{name}'"):
        pipeline = name.rsplit("-", 1)[0]
        raise ConfigError(
            f"no registered model {name!r} in {tracking.tracking_uri()} (run `dvc repro register@{pipeline}` "
            f"or `python -m tasks.register {pipeline}`)"
        )
    try:
        client.get_model_version_by_alias(name, alias)
    except MlflowException:
        known = sorted({a for v in client.search_model_versions(f"name='{name}'") for a in v.aliases})
        raise ConfigError(
            f"model {name!r} has no alias {alias!r} (it has: {', '.join(known) or 'none'}); "
            f"run `python -m tasks.promote {name.rsplit('-', 1)[0]}` to set champion"
        ) from None
    return mlflow.pyfunc.load_model(f"models:/{name}@{alias}")


def read_measurements(path: Path) -> np.ndarray:
    """Measurements (B, 1, *data shape) from a split file (.h5) or an array (.npy):
    an array of that shape is taken as is; a 2-D image-like measurement
    (angles, detectors) or a batch of them (B, angles, detectors) gets its
    axes added. 1-D data (integration) come as (B, 1, points), kept as is."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.suffix == ".h5":
        return read_split(path).measurements.astype(np.float32)
    if path.suffix == ".npy":
        y = np.load(path).astype(np.float32)
        if y.ndim == 2:
            return y[None, None]
        return y[:, None] if y.ndim == 3 and y.shape[1] != 1 else y  # (B, 1, N): 1-D data, as is
    raise DataError(f"{path}: expected a .h5 split or a .npy array of measurements")


def reconstruct(model: str, input: Path, output: Path, samples: int = 0) -> None:
    """Reconstruct measurements with a registered model."""
    try:
        y = read_measurements(input)
        loaded = load_registered(model)
        x = loaded.predict(y, params={"samples": samples} if samples else None)
    except (ConfigError, DataError, ValueError) as e:
        _fail(str(e))
    with atomic_path(output) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, x)
    print(f"{output}: {x.shape[0]} reconstruction(s) of shape {tuple(x.shape[1:])} from {model}")


def report(pipelines: Path) -> None:
    """Write docs/results.md from metrics/ (the `report` stage), then list the champions."""
    root = tracking.repo_root()  # the stage reads metrics/ and writes docs/results.md there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "tasks.report"], cwd=root, env=env)
    if done.returncode != 0:
        raise SystemExit(done.returncode)
    print("docs/results.md written from metrics/")
    try:
        _print_champions(pipelines)
    except (ConfigError, DataError) as e:
        _fail(str(e))


def parser() -> argparse.ArgumentParser:
    """`recongap COMMAND ...`: one subcommand per function above."""
    top = argparse.ArgumentParser(prog="recongap", description="recongap: learned CT reconstruction, measured against E[x|y].")
    commands = top.add_subparsers(dest="command", required=True)
    catalogue = {"type": Path, "default": None, "help": "the pipeline catalogue (default: the working tree's pipelines.yaml)"}
    commands.add_parser("status", help=status.__doc__).add_argument("--pipelines", **catalogue)
    commands.add_parser("report", help=report.__doc__).add_argument("--pipelines", **catalogue)
    rec = commands.add_parser("reconstruct", help=reconstruct.__doc__)
    rec.add_argument("--model", required=True, help="registered model and alias, e.g. ellipses-lpd@champion")
    rec.add_argument("--input", required=True, type=Path, help="measurements: a data/<pipeline>/*.h5 split or a .npy array")
    rec.add_argument("--output", required=True, type=Path, help="where the reconstructions go (.npy)")
    rec.add_argument("--samples", type=int, default=0, help="posterior samples per measurement (models that can sample)")
    return top


def main(argv: list[str] | None = None) -> None:
    args = vars(parser().parse_args(argv))
    try:
        if "pipelines" in args and args["pipelines"] is None:
            args["pipelines"] = tracking.repo_root() / "pipelines.yaml"
    except ConfigError as e:
        _fail(str(e))
    {"status": status, "report": report, "reconstruct": reconstruct}[args.pop("command")](**args)


if __name__ == "__main__":
    main()
