"""`regenerate`: the DVC DAG as a Prefect flow, one task per stage.

The order is DVC's plan for `dvc repro`, read from dvc.yaml through DVC's API;
each task runs `dvc repro --single-item STAGE` and shows as "Skipped" when
`dvc status` finds the stage up to date. Stages run one at a time under a
repository lock, so DVC never races with itself.

    python -m flows.regenerate                 # the whole DAG
    python -m flows.regenerate ellipses        # one pipeline (its stages and what they need)
    python -m flows.regenerate train@ellipses-lpd evaluate@ellipses
"""

from __future__ import annotations

import sys

from prefect import flow

from flows.dvc_stages import repo_root, run_stages, stages_in_order
from recongap.config import load_catalogue


def pipeline_targets(root, target: str) -> list[str]:
    """A pipeline name becomes its `...@NAME` / `...@NAME-METHOD` stages; anything else is a DVC target."""
    catalogue = load_catalogue(root / "pipelines.yaml")
    if target not in catalogue.pipelines:
        return [target]
    stages = stages_in_order(root)
    return [s for s in stages if s.endswith(f"@{target}") or any(s.endswith(f"@{target}-{m}") for m in [*catalogue.trained_models, *catalogue.solved_methods])]


@flow(name="regenerate", log_prints=True)
def regenerate(targets: list[str] | None = None, repo: str | None = None) -> dict[str, str]:
    """Reproduce the DAG (or `targets`: pipeline names, stage names) in DVC's order.

    Returns each stage's final state name: Completed, or Skipped when up to date."""
    root = repo_root(repo)
    wanted = [stage for target in targets or [] for stage in pipeline_targets(root, target)]
    return run_stages(stages_in_order(root, wanted or None), root)


if __name__ == "__main__":
    print(regenerate(sys.argv[1:] or None))
