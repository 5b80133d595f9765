"""Methods solved on the first test items only: scored there, compared with
every other method there, and reported beside the seed's published table."""

from __future__ import annotations

import torch

from recongap.evaluation import method_entry, score_solved
from recongap.reports.markdown import comparison_sections, method_label
from recongap.reports.results import seed_method_lines


def _estimates(x: torch.Tensor, noise: dict[str, float], g: torch.Generator) -> dict[str, torch.Tensor]:
    return {name: x + level * torch.randn(x.shape, generator=g, dtype=x.dtype) for name, level in noise.items()}


def test_solved_methods_are_scored_and_compared_on_their_items_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 6, 6, generator=g, dtype=torch.float64)
    phantom = torch.rand(1, 1, 6, 6, generator=g, dtype=torch.float64)
    variance = torch.full((8,), 0.01**2, dtype=torch.float64)  # an exact Bayes error per item
    full = _estimates(x, {"fbp": 0.2, "tv": 0.1, "linear_mmse": 0.05}, g)
    results = {name: method_entry(e, x, 0.1, {}, (phantom, phantom), variance) for name, e in full.items()}
    solved = {name: (e[:3], phantom, 5.0, {"iterations": 10}) for name, e in _estimates(x, {"gen_range": 0.12, "gen_soft": 0.08}, g).items()}
    estimates = dict(full)
    subset = score_solved(solved, x, phantom, variance, results, estimates, log=lambda line: None)

    assert subset["items"] == 3 and len(subset["pairs"]) == 10  # 5 methods, every pair once, on the 3 items
    assert all(c["mse_difference"]["items"] == 3 for c in subset["pairs"])
    assert results["gen_soft"]["items"] == 3 and "items" not in results["fbp"]
    assert results["gen_soft"]["normalized_error"]["mean"] > 1  # against the exact Bayes error of its own 3 items
    assert method_label("gen_soft", results["gen_soft"]) == "gen_soft (first 3 test items)"
    # the same figures on the same items whichever way they are computed
    fbp_on_three = ((full["fbp"][:3] - x[:3]) ** 2).flatten(1).mean(1).mean()
    assert abs(subset["methods"]["fbp"]["mse"]["mean"] - float(fbp_on_three)) < 1e-12

    summary = {
        "pipeline": "ellipses", "scale": "laptop", "test_items": 8, "problem": {"forward": "ct", "prior": "ellipses", "angles": 30},
        "methods": results, "comparisons": [], "subset_comparisons": subset,
    }
    lines = seed_method_lines(summary)
    ranked = [line.split(":")[0][2:] for line in lines if line.startswith("- ")]
    assert ranked == ["linear_mmse", "gen_soft", "gen_range"]  # closest to E[x|y] first, on the same 3 items
    assert "normalized error on the first 3 test items" in lines[1]
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| method | published, 10 angles | published, 30 angles | ours, 30 angles |"
    fbp_row = f"| zero filled (ours: FBP) | 16.58 | 24.25 | {subset['methods']['fbp']['psnr']['mean']:.2f} ± "
    assert table[2].startswith(fbp_row) and table[5].startswith("| gen_soft | 23.31 | 31.50 | ")
    sections = comparison_sections({**summary, "comparisons": subset["pairs"]})
    assert "### On the first 3 test items, with the methods optimised per measurement" in sections
