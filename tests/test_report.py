"""The results report: published figures beside ours, and an honest ordering verdict."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def _summary(pipeline: str, psnr: dict[str, float]) -> dict:
    methods = {
        m: {"psnr": {"mean": v, "stderr": 0.1}, "ssim": {"mean": 0.9, "stderr": 0.01}, "mse": {"mean": 1e-3, "stderr": 1e-4},
            "seconds_per_image": 0.01, "chosen": {}, "shepp_logan": {"psnr": 20.0, "ssim": 0.8, "mse": 0.01}}
        for m, v in psnr.items()
    }
    return {"pipeline": pipeline, "scale": "laptop", "test_items": 64, "note": "PSNR note", "methods": methods}


def test_report_states_whether_the_ordering_holds(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    good = {"fbp": 25.0, "tv": 28.0, "postproc": 29.0, "lgd": 30.0, "lpd": 30.0}
    bad = {**good, "tv": 31.0}
    (metrics / "ellipses.json").write_text(json.dumps(_summary("ellipses", bad)))
    (metrics / "dival_ellipses.json").write_text(json.dumps(_summary("dival_ellipses", good)))
    out = tmp_path / "results.md"
    cmd = [sys.executable, "-m", "tasks.report", "--metrics", str(metrics), "--out", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True)
    text = out.read_text()
    assert "ordering FBP < TV < postproc < lgd <= lpd: does **not** hold" in text
    assert "| lpd | 30.00 ± 0.10 | 0.900 ± 0.010 | 1.0e-02 | 20.00 | 32.27 / 0.940 |" in text
