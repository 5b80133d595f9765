"""Paired comparisons and verdicts, and the paired normalized error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from recongap.comparison import claim, compare, improvement_beyond_margin, ordering, paired_difference, pairwise, verdict
from recongap.evaluation import gap_to_reference, normalized_error


def _per_item(n: int = 64, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-item MSEs of three methods on items of very different difficulty:
    `good` is 10% better than `fair` on every item, `twin` is `fair` up to noise."""
    g = torch.Generator().manual_seed(seed)
    difficulty = torch.exp(torch.randn(n, generator=g, dtype=torch.float64))
    mse = {
        "fair": difficulty,
        "good": 0.9 * difficulty,
        "twin": difficulty * (1 + 0.01 * torch.randn(n, generator=g, dtype=torch.float64)),
    }
    return mse, {name: -10 * torch.log10(e) for name, e in mse.items()}


def test_paired_difference_is_the_mean_difference_with_its_standard_error():
    a, b = torch.tensor([1.0, 2.0, 4.0, 7.0]), torch.tensor([1.0, 1.0, 2.0, 3.0])
    d = paired_difference(a, b)
    assert d["mean"] == pytest.approx(1.75) and d["items"] == 4
    assert d["stderr"] == pytest.approx(np.std([0, 1, 2, 4], ddof=1) / 2)
    with pytest.raises(ValueError, match=r"\(4,\) against \(3,\)"):
        paired_difference(a, b[:3])


@pytest.mark.parametrize(("mean", "expected"), [(0.5, "holds"), (0.1, "tie"), (-0.1, "tie"), (-0.5, "fails")])
def test_verdict_has_three_outcomes_at_two_standard_errors(mean, expected):
    assert verdict({"mean": mean, "stderr": 0.2}) == expected
    assert verdict({"mean": mean, "stderr": math.nan}) == "tie"  # one item: no error bar, no win


def test_a_consistent_small_win_holds_although_the_separate_error_bars_overlap():
    mse, psnr = _per_item()
    # unpaired, good's and fair's means are within one standard error of each other...
    assert abs(float(mse["fair"].mean() - mse["good"].mean())) < float(mse["fair"].std() / math.sqrt(64))
    # ...paired, the 10% win on every item is plain
    c = compare("good", "fair", mse, psnr, bayes=torch.full((64,), 2.0, dtype=torch.float64))
    assert c["verdict"] == "holds" and c["psnr_difference"]["mean"] == pytest.approx(10 * math.log10(1 / 0.9))
    assert c["normalized_error_difference"]["mean"] == pytest.approx(c["mse_difference"]["mean"] / 2)
    assert compare("fair", "good", mse, psnr)["verdict"] == "fails"


def test_pairwise_orders_by_mean_mse_and_claims_turn_round():
    mse, psnr = _per_item()
    comparisons = pairwise(mse, psnr)
    assert len(comparisons) == 3 and ordering(comparisons)[0] == "good"
    twins = claim(comparisons, "fair", "twin")
    assert twins["verdict"] == "tie" and claim(comparisons, "twin", "fair")["verdict"] == "tie"
    worse = claim(comparisons, "fair", "good")
    assert worse["verdict"] == "fails" and worse["mse_difference"]["mean"] < 0 and worse["psnr_difference"]["mean"] < 0
    # with each item's Bayes error, the normalized-error difference turns round too
    exact = pairwise(mse, psnr, bayes=0.5 * mse["good"])
    ahead, behind = claim(exact, "good", "fair")["normalized_error_difference"], claim(exact, "fair", "good")["normalized_error_difference"]
    assert ahead["mean"] == pytest.approx(0.1 / 0.45) == pytest.approx(-behind["mean"]) and ahead["stderr"] == behind["stderr"]
    with pytest.raises(KeyError, match="'tv'"):
        claim(comparisons, "good", "tv")


def test_normalized_error_pairs_each_item_with_its_own_bayes_error():
    g = torch.Generator().manual_seed(3)
    bayes = torch.exp(torch.randn(200, generator=g, dtype=torch.float64))  # exact posterior variance per item
    errors = bayes * (1 + 0.05 * torch.randn(200, generator=g, dtype=torch.float64))  # the Bayes estimator's own errors
    paired = normalized_error(errors, bayes)["normalized_error"]
    unpaired = normalized_error(errors, float(bayes.mean()))["normalized_error"]
    assert paired["mean"] == pytest.approx(unpaired["mean"]) == pytest.approx(float(errors.mean() / bayes.mean()))
    assert paired["stderr"] < unpaired["stderr"] / 5
    # the delta-method error of the ratio of means agrees with a paired bootstrap of it
    boot = stats.bootstrap((errors.numpy(), bayes.numpy()), lambda e, b, axis: e.mean(axis) / b.mean(axis),
                           paired=True, vectorized=True, n_resamples=4000, random_state=0)
    assert paired["stderr"] == pytest.approx(boot.standard_error, rel=0.15)
    # one Bayes figure for every item: the ratio's error is the errors' standard error over it
    assert unpaired["stderr"] == pytest.approx(float(errors.std() / math.sqrt(200) / bayes.mean()))


def test_gap_to_an_mcmc_reference_is_paired_plus_the_reference_error():
    g = torch.Generator().manual_seed(4)
    bayes = torch.exp(torch.randn(100, generator=g, dtype=torch.float64))
    method = 1.3 * bayes * (1 + 0.1 * torch.randn(100, generator=g, dtype=torch.float64))
    exact = gap_to_reference(method, bayes, torch.zeros(100))
    assert exact["gap"]["mean"] == pytest.approx(float((method - bayes).mean()))
    assert exact["gap"]["stderr"] == pytest.approx(float((method - bayes).std() / 10))
    # pairing: far tighter than the two means' separate errors
    assert exact["gap"]["stderr"] < float(method.std() / 10) / 2
    boot = stats.bootstrap((method.numpy(), bayes.numpy()), lambda e, b, axis: e.mean(axis) / b.mean(axis),
                           paired=True, vectorized=True, n_resamples=4000, random_state=0)
    assert exact["normalized_error"]["stderr"] == pytest.approx(boot.standard_error, rel=0.15)
    # the reference's own Monte-Carlo error adds in quadrature
    noisy = gap_to_reference(method, bayes, torch.full((100,), 0.09))  # se of the mean Bayes MSE: sqrt(9)/100
    assert noisy["gap"]["stderr"] == pytest.approx(math.hypot(exact["gap"]["stderr"], 0.03))
    assert noisy["mse"] == exact["mse"]
    with pytest.raises(ValueError, match="must cover the same items"):
        gap_to_reference(method[:5], bayes, torch.zeros(100))


def test_promotion_needs_the_margin_cleared_beyond_two_paired_standard_errors():
    mse, _ = _per_item()
    champion = mse["fair"]
    # 10% lower on every item: clears a 1% margin, not a 20% one
    assert improvement_beyond_margin(mse["good"], champion, 0.01)["verdict"] == "holds"
    assert improvement_beyond_margin(mse["good"], champion, 0.20)["verdict"] == "fails"
    # better by the same amount on every item: the relative improvement still has an error bar (the champion's mean is estimated)
    constant = improvement_beyond_margin(champion - 0.05 * float(champion.mean()), champion, 0.0)["improvement"]
    assert constant["mean"] == pytest.approx(0.05) and constant["stderr"] > 0
    # the same to 1%, item by item: never enough
    assert improvement_beyond_margin(mse["twin"], champion, 0.01)["verdict"] != "holds"
    # worse: fails
    assert improvement_beyond_margin(champion, mse["good"], 0.0)["verdict"] == "fails"
    with pytest.raises(ValueError, match="margin -0.1"):
        improvement_beyond_margin(champion, champion, -0.1)


def test_one_item_is_a_tie_and_a_non_finite_error_is_refused():
    one = paired_difference(torch.tensor([2.0]), torch.tensor([1.0]))
    assert one["items"] == 1 and math.isnan(one["stderr"]) and verdict(one) == "tie"
    mse = {"a": torch.tensor([1.0, float("nan")]), "b": torch.tensor([1.0, 2.0])}
    with pytest.raises(ValueError, match="method a: a non-finite MSE"):
        pairwise(mse, {"a": torch.ones(2), "b": torch.ones(2)})
