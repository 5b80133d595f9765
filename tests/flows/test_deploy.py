"""prefect.yaml as generated from pipelines.yaml, and bad input refused before any work."""

from __future__ import annotations

import shutil

import pytest
import yaml

from flows.deploy import prefect_config
from recongap.config import ConfigError
from tests.conftest import ROOT


def test_deployments_follow_the_catalogue(tmp_path):
    for name in ("pipelines.yaml", "params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path)
    catalogue = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    config = prefect_config(tmp_path, "pool-a")
    by_name = {d["name"]: d for d in config["deployments"]}
    assert set(by_name) == {f"{kind}-{p}" for p in catalogue["pipelines"] for kind in ("retrain", "promote")} | {"regenerate"}
    for pipeline in catalogue["pipelines"]:
        retrain = by_name[f"retrain-{pipeline}"]
        assert retrain["entrypoint"] == "flows/retrain.py:retrain" and retrain["parameters"] == {"pipeline": pipeline}
        assert retrain["work_pool"] == {"name": "pool-a"}
        expected = catalogue["schedules"].get(pipeline)
        assert [s["cron"] for s in retrain.get("schedules", [])] == ([expected] if expected else [])
    assert config["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(tmp_path)


def test_bad_schedule_or_pipeline_fails_before_work(tmp_path):
    from flows.retrain import retrain

    for name in ("pipelines.yaml", "params.yaml", "dvc.yaml"):
        shutil.copy(ROOT / name, tmp_path)
    with pytest.raises(ConfigError, match="no pipeline 'nope'"):
        retrain.fn("nope", seed=1, repo=str(tmp_path))  # the flow's body, without a Prefect run
    (tmp_path / "pipelines.yaml").write_text((ROOT / "pipelines.yaml").read_text().replace('"0 3 * * 1"', '"61 3 * * 1"'))
    with pytest.raises(ConfigError, match=r"(?s)pipelines.yaml.*schedules: .*ellipses: .61 3 \* \* 1. is not a cron expression"):
        prefect_config(tmp_path, "pool-a")
    with pytest.raises(FileNotFoundError, match="dvc.yaml"):
        retrain.fn("ellipses", repo=str(tmp_path / "elsewhere"))
