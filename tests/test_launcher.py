"""The installed `recongap` command runs the tasks/cli.py of the working tree it is called in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

COMMAND = Path(sys.executable).parent / "recongap"


def test_the_command_finds_the_repository_from_a_subfolder():
    done = subprocess.run([str(COMMAND), "reconstruct", "--help"], cwd=ROOT / "docs", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--model" in done.stdout and "ellipses-lpd@champion" in done.stdout


def test_outside_a_repository_it_says_so(tmp_path):
    done = subprocess.run([str(COMMAND), "status"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "not inside a recongap working tree" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_subcommand_is_a_usage_error():
    done = subprocess.run([str(COMMAND)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "status" in done.stderr and "reconstruct" in done.stderr


def test_another_dvc_project_is_not_taken_for_a_recongap_tree(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    done = subprocess.run([str(COMMAND), "status"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "holds dvc.yaml but no tasks/cli.py" in done.stderr and "Traceback" not in done.stderr
