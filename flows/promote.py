"""`promote`: gated challenger-vs-champion promotion of one pipeline's models,
for a user to trigger from the Prefect UI (the decision is tasks.promote's)."""

from __future__ import annotations

import sys

from prefect import flow, task

from flows.dvc_stages import repo_root, stream
from recongap.config import load_catalogue


@task(name="promote")
def run_promote(pipeline: str, root) -> None:
    stream([sys.executable, "-m", "tasks.promote", pipeline], root)


@flow(name="promote", log_prints=True)
def promote(pipeline: str, repo: str | None = None) -> None:
    """Run `python -m tasks.promote PIPELINE` in the repository."""
    root = repo_root(repo)
    load_catalogue(root / "pipelines.yaml", pipeline)  # unknown pipeline: fail before any work
    run_promote(pipeline, root)


if __name__ == "__main__":
    promote(sys.argv[1])
