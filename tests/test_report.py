"""The results report: published figures beside ours, and an honest ordering verdict."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from recongap.comparison import pairwise
from tests.conftest import ROOT


def _summary(pipeline: str, psnr: dict[str, float]) -> dict:
    """A metrics summary of 64 test items whose per-item PSNRs are the given
    means plus item difficulty shared by all methods and a little noise."""
    g = torch.Generator().manual_seed(0)
    difficulty = 3 * torch.randn(64, generator=g, dtype=torch.float64)
    item_psnr = {m: v + difficulty + 0.2 * torch.randn(64, generator=g, dtype=torch.float64) for m, v in psnr.items()}
    item_mse = {m: 10 ** (-p / 10) for m, p in item_psnr.items()}
    methods = {
        m: {"psnr": {"mean": v, "stderr": 0.1}, "ssim": {"mean": 0.9, "stderr": 0.01}, "mse": {"mean": 1e-3, "stderr": 1e-4},
            "seconds_per_image": 0.01, "chosen": {}, "shepp_logan": {"psnr": 20.0, "ssim": 0.8, "mse": 0.01}}
        for m, v in psnr.items()
    }
    return {"pipeline": pipeline, "scale": "laptop", "test_items": 64, "note": "PSNR note", "methods": methods,
            "comparisons": pairwise(item_mse, item_psnr)}


def test_report_judges_each_step_of_the_expected_ordering(tmp_path):
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
    steps = [line for line in text.splitlines() if line.startswith("- ")]
    verdicts = {line.split(":")[0][2:]: line.rsplit("**", 2)[1] for line in steps}
    assert verdicts == {"tv beats fbp": "holds", "postproc beats tv": "fails", "lgd beats postproc": "holds", "lpd beats lgd": "tie"}
    assert "| lpd | 30.00 ± 0.10 | 0.900 ± 0.010 | 1.0e-02 | 20.00 | 32.27 / 0.940 |" in text
    # what differs from the published table is said under it, and only there
    assert text.count("32 000 training and 3 200 test pairs") == 1 and "the budgets are those of the heading's scale" in text
    # every pipeline's paired ordering, step by step
    assert text.count("Ordering by test MSE, each method against the next") == 2
    orders = [line.split(": ")[1] for line in text.splitlines() if line.startswith("Ordering by test MSE")]
    assert orders[1].startswith("tv < ") and orders[1].endswith(" < postproc < fbp.")  # ellipses (after dival_ellipses); lgd and lpd tie
