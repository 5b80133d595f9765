"""Create the Prefect deployments, in one command:

    python -m flows.deploy [--pool recongap] [--repo .]

Writes prefect.yaml from pipelines.yaml (a `retrain-NAME` deployment per
pipeline, on its cron when `schedules:` names it; `promote-NAME` to trigger by
hand; `regenerate` for the whole DAG), creates the process work pool when it
does not exist, then runs `prefect --no-prompt deploy --all`. It talks to the
server of PREFECT_API_URL (a `prefect server start`, or Prefect Cloud).
prefect.yaml is generated, not committed: it holds this checkout's path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect import __version__ as prefect_version
from prefect.settings import get_current_settings

from recongap.config import load_catalogue
from recongap.files import write_text_atomic


def prefect_config(root: Path, pool: str) -> dict:
    """prefect.yaml's content for the repository at `root`."""
    catalogue = load_catalogue(root / "pipelines.yaml")
    work_pool = {"name": pool}
    deployments = []
    for name in catalogue.pipelines:
        retrain = {
            "name": f"retrain-{name}",
            "description": f"New data for {name}, dvc repro of what depends on it, then promote.",
            "entrypoint": "flows/retrain.py:retrain",
            "parameters": {"pipeline": name},
            "work_pool": work_pool,
            "tags": ["recongap", name],
        }
        if name in catalogue.schedules:
            retrain["schedules"] = [{"cron": catalogue.schedules[name], "timezone": "UTC", "active": True}]
        deployments.append(retrain)
        deployments.append(
            {
                "name": f"promote-{name}",
                "description": f"Gated challenger-vs-champion promotion of the {name} models.",
                "entrypoint": "flows/promote.py:promote",
                "parameters": {"pipeline": name},
                "work_pool": work_pool,
                "tags": ["recongap", name],
            }
        )
    deployments.append(
        {
            "name": "regenerate",
            "description": "dvc repro of the whole DAG, one task per stage.",
            "entrypoint": "flows/regenerate.py:regenerate",
            "work_pool": work_pool,
            "tags": ["recongap"],
        }
    )
    return {
        "name": "recongap",
        "prefect-version": prefect_version,
        # the worker runs the flows in this checkout (a process work pool)
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": str(root)}}],
        "deployments": deployments,
    }


def _prefect(*args: str, root: Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=root, check=check, env=os.environ.copy())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create the recongap deployments on the Prefect server.")
    parser.add_argument("--pool", default="recongap", help="work pool the deployments run on (created as a process pool if missing)")
    parser.add_argument("--repo", default=".", help="repository root")
    args = parser.parse_args(argv)
    root = Path(args.repo).resolve()
    if not get_current_settings().api.url:
        sys.exit(
            "error: no Prefect server configured: run `prefect server start`, then "
            "`prefect config set PREFECT_API_URL=http://127.0.0.1:4200/api` (or log in to Prefect Cloud)"
        )

    write_text_atomic(root / "prefect.yaml", yaml.safe_dump(prefect_config(root, args.pool), sort_keys=False))
    if _prefect("work-pool", "inspect", args.pool, root=root, check=False).returncode != 0:
        _prefect("work-pool", "create", args.pool, "--type", "process", root=root)
    _prefect("--no-prompt", "deploy", "--all", root=root)


if __name__ == "__main__":
    main()
