"""`regenerate` against a small DVC repository: DVC's order, skipping what
`dvc status` finds up to date, retries from params.yaml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

DVC_YAML = """
stages:
  second:
    cmd: python -c "import pathlib; p=pathlib.Path('b.txt'); p.write_text(pathlib.Path('a.txt').read_text() + 'b')"
    deps: [a.txt]
    outs: [b.txt]
  first:
    cmd: python -c "import pathlib; pathlib.Path('a.txt').write_text(pathlib.Path('input.txt').read_text() + 'a'); print('made a.txt')"
    deps: [input.txt]
    outs: [a.txt]
  flaky:
    cmd: python -c "import pathlib, sys; c=pathlib.Path('count'); n=int(c.read_text() if c.exists() else 0)+1; c.write_text(str(n)); pathlib.Path('f.txt').write_text('ok'); sys.exit(n < 2)"
    deps: [b.txt]
    outs: [f.txt]
"""


@pytest.fixture
def small_repo(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pipelines.yaml", tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["orchestration"] = {"retries": 1, "retry_delay_seconds": 0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "input.txt").write_text("x")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def test_order_comes_from_dvc(small_repo):
    from flows.dvc_stages import stages_downstream_of, stages_in_order

    assert stages_in_order(small_repo) == ["first", "second", "flaky"]
    assert stages_in_order(small_repo, ["second"]) == ["first", "second"]
    assert stages_downstream_of(small_repo, "second") == ["second", "flaky"]


@pytest.mark.slow  # three flow runs, ~10 DVC subprocesses: ~40 s on 2 cores
def test_regenerate_runs_then_skips_then_reruns_what_changed(small_repo):
    from flows.regenerate import regenerate

    first = regenerate(repo=str(small_repo))
    assert first == {"first": "Completed", "second": "Completed", "flaky": "Completed"}
    assert (small_repo / "b.txt").read_text() == "xab"
    assert (small_repo / "count").read_text() == "2"  # failed once, retried once (params.yaml)

    assert set(regenerate(repo=str(small_repo)).values()) == {"Skipped"}

    (small_repo / "input.txt").write_text("y")
    assert regenerate(["second"], repo=str(small_repo)) == {"first": "Completed", "second": "Completed"}
    assert (small_repo / "b.txt").read_text() == "yab"


@pytest.mark.slow
def test_failing_stage_fails_the_flow(small_repo):
    from flows.regenerate import regenerate

    (small_repo / "input.txt").unlink()
    with pytest.raises(RuntimeError, match="stage first ended Failed"):
        regenerate(repo=str(small_repo))
