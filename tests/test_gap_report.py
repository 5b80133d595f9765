"""The gap table from reference item files: error bars, and unconverged items
never printed as a clean number."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recongap.config.schema import ReferenceParams
from recongap.evaluation import normalized_error
from recongap.metrics import mse
from recongap.posterior.store import ItemReference, item_path, save_item, summarize, write_summary
from recongap.reports.metrics import markdown_table
from recongap.gap import MCMCReference, add_mcmc_reference
from recongap.reports.gap import write_gap_reports
from recongap.reports.results import section

N, ITEMS = 8, 6


def _reference(directory, truth: torch.Tensor, rhats: list[float], multimodal: tuple[int, ...] = ()) -> None:
    g = np.random.default_rng(0)
    items = {}
    for i, rhat in enumerate(rhats):
        x = truth[i : i + 1].numpy()
        mean = x + 0.05 * g.standard_normal(x.shape)  # a posterior mean near the truth
        items[i] = ItemReference(
            mean=mean, std=np.full_like(x, 0.05), samples=np.stack([mean[0]] * 4),
            diagnostics={"rhat_max": rhat, "ess_min": 800.0, "ess_per_second": 50.0, "seconds": 16.0, "acceptance": 0.7,
                         "bayes_mse": {"variance": 0.05**2, "truth": float(((mean - x) ** 2).mean())},
                         "probe": {"multimodal": i in multimodal}},
        )
        save_item(item_path(directory, i), items[i], {"item": i})
    write_summary(directory, summarize(items, 1.01, 400))


def _summary(tmp_path, rhats: list[float], multimodal: tuple[int, ...] = (), exact_variance: torch.Tensor | None = None) -> dict:
    truth = torch.rand(ITEMS + 2, 1, N, N, generator=torch.Generator().manual_seed(1))
    _reference(tmp_path / "reference", truth, rhats, multimodal)
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(2))
    estimates = {"fbp": truth + 0.5 * noise, "tv": truth + 0.2 * noise}
    results = {
        name: {"psnr": {"mean": 20.0, "stderr": 0.1}, "ssim": {"mean": 0.5, "stderr": 0.01}, "mse": {"mean": 0.1, "stderr": 0.01},
               "seconds_per_image": 0.01, "chosen": {}, "shepp_logan": {"psnr": 18.0}}
        for name in estimates
    }
    mcmc = MCMCReference(tmp_path / "reference", truth, ReferenceParams())
    closed_form = None
    if exact_variance is not None:  # an exact posterior: the errors of each item against its own exact variance
        closed_form = {"kind": "closed_form", "bayes_mse": float(exact_variance.mean())}
        for name, estimate in estimates.items():
            results[name].update(normalized_error(mse(estimate, truth), exact_variance))
    reference = add_mcmc_reference(results, estimates, closed_form, mcmc, exact_variance)
    summary = {"pipeline": "ellipses", "scale": "smoke", "test_items": ITEMS + 2, "note": "n", "methods": results, "reference": reference}
    json.dumps(summary, allow_nan=False)  # DVC-readable: no NaN or inf
    write_gap_reports(tmp_path / "reports", summary)
    return summary


def test_converged_reference_gives_ordered_gaps_with_error_bars(tmp_path):
    summary = _summary(tmp_path, [1.001] * ITEMS)
    ref, methods = summary["reference"], summary["methods"]
    assert ref["kind"] == "mcmc" and ref["reliable"] and ref["items_flagged"] == [] and ref["items"] == ITEMS
    assert ref["bayes_mse"] == pytest.approx(0.05**2, rel=0.5) and ref["bayes_mse_stderr"] > 0
    fbp, tv, post = (methods[m]["reference_gap"] for m in ("fbp", "tv", "posterior_mean"))
    assert fbp["normalized_error"]["mean"] > tv["normalized_error"]["mean"] > 1
    # the MCMC mean against itself: gap = the Monte-Carlo bias std^2 / ESS removed from the Bayes MSE
    assert post["gap"]["mean"] == pytest.approx(0.05**2 / 800, rel=1e-3)
    assert post["normalized_error"]["mean"] == pytest.approx(1, abs=0.01)
    assert all(g["stderr"] > 0 for g in (fbp["mse"], fbp["normalized_error"], fbp["gap"]))
    table = (tmp_path / "reports" / "gap.md").read_text()
    assert "UNRELIABLE" not in table and "| fbp |" in table and "| 372.0 |" in table and f"{ITEMS} test items" in table
    assert (tmp_path / "reports" / "gap.png").stat().st_size > 1000
    # the second Bayes-error estimate and the probe, beside the first
    assert ref["bayes_mse_from_variance"]["mean"] == pytest.approx(0.05**2) and ref["items_probed"] == ITEMS
    assert ref["items_multimodal"] == [] and "from the posterior variance summed over pixels: 2.500e-03" in table
    assert f"{ITEMS} items probed" in table


def test_a_flagged_item_makes_every_table_say_unreliable(tmp_path):
    summary = _summary(tmp_path, [1.001, 1.2, *[1.001] * (ITEMS - 2)])
    assert summary["reference"]["items_flagged"] == [1] and not summary["reference"]["reliable"]
    assert all(not r["reference_gap"]["reliable"] for r in summary["methods"].values())
    gap_md = (tmp_path / "reports" / "gap.md").read_text()
    for text in (gap_md, markdown_table(summary), section(summary)):
        rows = [line for line in text.splitlines() if line.startswith("| fbp |")]
        assert rows and "UNRELIABLE (" in rows[0], text
    # in gap.md both the normalized error and the gap are marked
    fbp_row = next(line for line in gap_md.splitlines() if line.startswith("| fbp |"))
    assert fbp_row.count("UNRELIABLE (") == 2
    assert "1 of 6 reference items were flagged" in gap_md


def test_an_item_the_probe_calls_multimodal_makes_the_reference_unreliable(tmp_path):
    summary = _summary(tmp_path, [1.001] * ITEMS, multimodal=(2,))
    ref = summary["reference"]
    assert ref["items_multimodal"] == [2] and ref["items_flagged"] == [2] and not ref["reliable"]
    assert "1 flagged multimodal [2]" in (tmp_path / "reports" / "gap.md").read_text()


def test_with_an_exact_posterior_the_gap_table_rests_on_it_and_only_the_mcmc_row_is_flagged(tmp_path):
    variance = torch.full((ITEMS + 2,), 0.05**2, dtype=torch.float64)
    summary = _summary(tmp_path, [1.001, 1.2, *[1.001] * (ITEMS - 2)], exact_variance=variance)
    methods = summary["methods"]
    assert summary["reference"]["kind"] == "closed_form" and summary["reference"]["mcmc"]["items_flagged"] == [1]
    assert all("reference_gap" not in r for r in methods.values())  # the MCMC reference is checked, not the denominator
    fbp = methods["fbp"]["normalized_error"]
    assert fbp["mean"] == pytest.approx(0.5**2 / 0.05**2, rel=0.2) and fbp.get("reliable", True)
    # the MCMC mean (0.05 off the truth per pixel) against the exact Bayes error of its own items
    assert methods["posterior_mean"]["normalized_error"]["mean"] == pytest.approx(1, rel=0.2)
    assert methods["posterior_mean"]["normalized_error"]["reliable"] is False
    gap_md = (tmp_path / "reports" / "gap.md").read_text()
    assert f", {ITEMS + 2} test items)" in gap_md and "with E[x|y] the exact posterior mean" in gap_md
    rows = {line.split(" | ")[0][2:]: line for line in gap_md.splitlines() if line.startswith("| ") and "---" not in line}
    assert "UNRELIABLE" not in rows["fbp"] and rows["posterior_mean"].count("UNRELIABLE (") == 2
    assert "the row posterior_mean is marked UNRELIABLE" in gap_md
