"""`retrain`: the scheduled job of one pipeline.

1. New data: a new data seed is written to `pipelines.NAME.seed` in
   pipelines.yaml. A seed rather than new files because the data are simulated
   from the prior: a seed is all it takes, and dvc.lock then records which seed
   made the data in use. Unless given, the seed is the run's scheduled time in
   seconds, so each scheduled run gets fresh data and a re-run of the same
   scheduled run gets the same data. The file is edited in place (comments
   kept), as `dvc exp run -S` would do, but without `dvc exp`: that needs a git
   commit and writes experiment refs, where a worker's checkout just moves on.
2. `dvc repro` of exactly the stages DVC's graph puts downstream of
   `simulate@NAME` (simulate, train, evaluate, register, report), one task each.
3. Promotion: the `register@NAME` stage registers every trained model as a new
   version (alias challenger) and then runs `tasks.promote`, so promotion is
   the last of those stages. Running tasks.promote once more from this flow
   would rewrite that stage's output and leave it stale in DVC's eyes; the
   `promote` flow is there to trigger it by hand from the UI.

    python -m flows.retrain ellipses [SEED]
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, task
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from ruamel.yaml import YAML

from flows.dvc_stages import repo_lock, repo_root, run_stages, stages_downstream_of
from recongap.config import load_catalogue
from recongap.files import atomic_path


def scheduled_seed() -> int:
    """The seed of a run started without one: its scheduled start, in seconds."""
    return int(flow_run.scheduled_start_time.timestamp())


@task(name="new-data-seed")
def set_data_seed(catalogue_path: Path, pipeline: str, seed: int) -> None:
    """Write `seed` to pipelines.NAME.seed, keeping the file's comments and layout."""
    yaml = YAML()  # round-trip mode
    data = yaml.load(catalogue_path)
    previous = data["pipelines"][pipeline]["seed"]
    data["pipelines"][pipeline]["seed"] = seed
    with atomic_path(catalogue_path) as tmp:
        yaml.dump(data, tmp)
    load_catalogue(catalogue_path, pipeline)  # still valid
    get_run_logger().info("%s: data seed %s -> %s", pipeline, previous, seed)


@flow(name="retrain", log_prints=True)
def retrain(pipeline: str, seed: int | None = None, repo: str | None = None) -> dict[str, str]:
    """New data for `pipeline`, reproduce what depends on it (up to register
    and promote).

    Returns each reproduced stage's final state name."""
    root = repo_root(repo)
    catalogue_path = root / "pipelines.yaml"
    load_catalogue(catalogue_path, pipeline)  # unknown pipeline: fail before any work
    if seed is None:
        seed = scheduled_seed()
    if seed < 0:
        raise ValueError(f"seed must be >= 0 (got {seed})")
    with repo_lock(root):
        set_data_seed(catalogue_path, pipeline, seed)
        outcome = run_stages(stages_downstream_of(root, f"simulate@{pipeline}"), root)
    return outcome


if __name__ == "__main__":
    print(retrain(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
