"""The `recongap` command as installed: only this package is installed, so the
command finds the working tree it is called in (the nearest folder holding
dvc.yaml, from the current directory up) and runs that tree's tasks/cli.py.
Stage entry points, flows and benchmarks stay in the repository, never in
site-packages, where other projects' modules named `tasks` or `flows` live."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


class NotAWorkingTree(RuntimeError):
    """The current directory is not inside a recongap repository."""


def working_tree(start: Path | None = None) -> Path:
    """The nearest folder holding dvc.yaml, from `start` (default: the current directory) up."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    raise NotAWorkingTree(f"{here}: not inside a recongap working tree (no dvc.yaml here or above); run from the repository")


def main() -> None:
    try:
        root = working_tree()
        if not (root / "tasks" / "cli.py").is_file():
            raise NotAWorkingTree(f"{root} holds dvc.yaml but no tasks/cli.py: not a recongap working tree")
    except NotAWorkingTree as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.path.insert(0, str(root))
    importlib.import_module("tasks.cli").main()  # by name: the tree's own tasks/, known only now
