"""dvc.yaml lists, for every stage, all the code its command runs: otherwise a
change there leaves stale outputs that `dvc status` calls up to date.

Each stage's command is `python -m tasks.<stage> ...`; the first-party modules
it can import (at the top or inside a function) are found by walking the
import statements of the source, and each one's file must lie under one of the
stage's deps. The one check by DVC itself (a dependency's edit makes its stage
stale) is in tests/test_dvc_pipeline.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

FIRST_PARTY = ("recongap", "tasks")
#: Files a stage imports that cannot change its outputs, and why.
NO_EFFECT_ON_OUTPUTS = {
    "recongap/__init__.py": "the package docstring and version string",
    "tasks/__init__.py": "a docstring",
    "tasks/tracking.py": "logs to MLflow (train, reference, evaluate): no stage output depends on it; register lists it",
    "recongap/launcher.py": "finds the working tree (for tasks/tracking.py's default MLflow store)",
}


def module_file(module: str) -> Path | None:
    """The file of a first-party module (a package's __init__.py), or None."""
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """First-party modules named by any import statement of `path`, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]  # `from pkg import submodule`
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in FIRST_PARTY and module_file(n)}
    return found


def code_closure(module: str) -> set[str]:
    """Repository paths of every first-party file `module` may execute, with the
    __init__.py of each package on the way."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            prefix = ".".join(parts[:i])
            if prefix not in seen and module_file(prefix):
                seen.add(prefix)
                todo.append(prefix)
        path = module_file(name)
        if path is not None:
            todo += [m for m in imported_modules(path, name) if m not in seen]
    return {module_file(m).relative_to(ROOT).as_posix() for m in seen}


def stages() -> list[tuple[str, str, list[str]]]:
    """(stage, entry module, deps) for every command of dvc.yaml."""
    out = []
    for name, stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        commands = body["cmd"] if isinstance(body["cmd"], list) else [body["cmd"]]
        for command in commands:
            entry = re.match(r"python -m (\S+)", command)
            assert entry, f"dvc.yaml stage {name}: {command!r} is not `python -m tasks.<stage>`"
            out.append((name, entry.group(1), [d for d in body["deps"] if "${" not in d]))
    return out


@pytest.mark.parametrize(("stage", "module", "deps"), stages(), ids=lambda v: v if isinstance(v, str) and "." in v else None)
def test_every_file_a_stage_runs_is_one_of_its_deps(stage, module, deps):
    missing = sorted(
        f for f in code_closure(module)
        if f not in NO_EFFECT_ON_OUTPUTS and not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    )
    assert not missing, f"dvc.yaml stage {stage} runs {missing} but does not list them as deps"
    gone = [d for d in deps if not (ROOT / d).exists() and not d.startswith(("data/", "models/", "metrics"))]
    assert not gone, f"dvc.yaml stage {stage} lists deps that do not exist: {gone}"


def test_the_closure_follows_imports_inside_functions():
    """tasks.register imports tasks.serving only inside a function: it still counts."""
    assert {"tasks/serving.py", "recongap/reconstructors/lightning.py", "recongap/config/schema.py"} <= code_closure("tasks.register")
