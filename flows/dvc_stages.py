"""DVC stages as Prefect tasks: the order comes from DVC's graph, the work
from `dvc repro --single-item`, the up-to-date check from `dvc status`.

Nothing here knows what a stage does; dvc.yaml stays the one DAG.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import chdir, contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock
from prefect import task
from prefect.logging import get_run_logger
from prefect.states import Completed, State

from recongap.config import load_params

# Repositories the current process already holds the lock of (re-entrant per repo).
_HELD: dict[Path, int] = {}


def repo_root(path: str | Path | None = None) -> Path:
    """The DVC repository to work in: `path`, or the current directory."""
    root = Path(path or os.getcwd()).resolve()
    if not (root / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{root / 'dvc.yaml'}: not found; run the flow from the repository root or pass repo=")
    return root


@contextmanager
def repo_lock(root: Path) -> Iterator[None]:
    """One DVC run per repository at a time, across processes: two flows
    (a schedule and a manual run) would otherwise race on DVC's own lock."""
    if _HELD.get(root):
        _HELD[root] += 1
        try:
            yield
        finally:
            _HELD[root] -= 1
        return
    lock_file = root / ".dvc" / "tmp" / "prefect-flows.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_file):
        _HELD[root] = 1
        try:
            yield
        finally:
            _HELD[root] = 0


def stages_in_order(root: Path, targets: list[str] | None = None) -> list[str]:
    """Stage names in the order `dvc repro` would run them: DVC's own plan over
    its graph (targets with everything upstream; all stages when None)."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with chdir(root), Repo(str(root)) as repo:  # DVC resolves targets against the cwd
        graph = get_active_graph(repo.index.graph)
        chosen = None
        if targets:
            chosen = [stage for target in targets for stage in repo.stage.collect(target)]
        return [stage.name for stage in plan_repro(graph, chosen)]


def stages_downstream_of(root: Path, target: str) -> list[str]:
    """`target` and every stage depending on it, in DVC's order."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import get_active_graph, plan_repro

    with chdir(root), Repo(str(root)) as repo:  # DVC resolves targets against the cwd
        graph = get_active_graph(repo.index.graph)
        return [stage.name for stage in plan_repro(graph, repo.stage.collect(target), downstream=True)]


def stage_is_up_to_date(root: Path, stage: str) -> bool:
    """DVC's verdict: `dvc status` of this one stage reports nothing."""
    from dvc.repo import Repo

    with chdir(root), Repo(str(root)) as repo:  # DVC resolves targets against the cwd
        return not repo.status(targets=[stage])


def _stage_env() -> dict[str, str]:
    """The stages run with the interpreter that runs the flow (dvc.yaml calls `python`)."""
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


def stream(command: list[str], root: Path) -> None:
    """Run `command` in `root`, each output line to the Prefect logger; raise on failure."""
    logger = get_run_logger()
    logger.info("$ %s", " ".join(command))
    env = _stage_env()
    env.setdefault("DVC_SITE_CACHE_DIR", str(root / ".dvc" / "tmp" / "site-cache"))
    with subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            logger.info(line.rstrip())
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode} in {root}")


@task
def run_stage(stage: str, root: Path) -> State:
    """Reproduce one DVC stage alone; Completed named "Skipped" when DVC finds it up to date."""
    with repo_lock(root):
        if stage_is_up_to_date(root, stage):
            get_run_logger().info("%s is up to date (dvc status): skipped", stage)
            return Completed(name="Skipped", message=f"{stage}: up to date")
        stream([sys.executable, "-m", "dvc", "repro", "--single-item", stage], root)
    return Completed(message=f"{stage}: reproduced")


def stage_task(stage: str, root: Path):
    """`run_stage` named after the stage, with the retries of params.yaml."""
    orchestration = load_params(root / "params.yaml").orchestration
    return run_stage.with_options(
        name=stage,
        task_run_name=stage,
        retries=orchestration.retries,
        retry_delay_seconds=orchestration.retry_delay_seconds,
    )


def run_stages(stages: list[str], root: Path) -> dict[str, str]:
    """Run `stages` one after the other (DVC's order); stop at the first failure.

    Returns each stage's final state name (Completed / Skipped)."""
    outcome: dict[str, str] = {}
    with repo_lock(root):
        for stage in stages:
            state = stage_task(stage, root)(stage, root, return_state=True)
            outcome[stage] = state.name
            if not state.is_completed():
                raise RuntimeError(f"stage {stage} ended {state.name}: {state.message}")
    return outcome
