"""Paired comparisons of methods scored on the same test items, and verdicts.

Two methods evaluated on the same items differ far less than their separate
standard errors suggest (an item hard for one is hard for the other), so a
claim that one beats the other rests on the per-item differences: their mean,
and its standard error over items. A claim then holds (beyond Z standard
errors in its favour), fails (beyond Z against it) or is a tie.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

#: Standard errors a difference must clear to count as a win (about 95% two-sided).
Z = 2.0

Verdict = Literal["holds", "tie", "fails"]


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Mean of a - b over the same items and its standard error over items."""
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"paired values must be per item and cover the same items: {tuple(a.shape)} against {tuple(b.shape)}")
    d = a.double() - b.double()
    n = d.numel()
    stderr = float(d.std() / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": float(d.mean()), "stderr": stderr, "items": n}


def verdict(difference: dict[str, float], z: float = Z) -> Verdict:
    """The claim "difference > 0": holds beyond z standard errors, fails beyond
    z the other way, otherwise a tie (also with one item, no error bar)."""
    mean, stderr = difference["mean"], difference["stderr"]
    if not math.isfinite(stderr):
        return "tie"
    if mean > z * stderr:
        return "holds"
    return "fails" if mean < -z * stderr else "tie"


def ratio_of_means(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """mean(a) / mean(b) over the same items, with the ratio estimator's
    standard error (delta method): sd(a - R b) / (sqrt(n) mean(b))."""
    a, b = a.double(), b.double()
    n, base = a.numel(), float(b.mean())
    if base == 0:
        raise ValueError("ratio of means: the denominator's mean is 0")
    ratio = float(a.mean()) / base
    stderr = float((a - ratio * b).std() / (math.sqrt(n) * base)) if n > 1 else math.nan
    return {"mean": ratio, "stderr": stderr, "items": n}


def compare(
    better: str, worse: str, mse: dict[str, torch.Tensor], psnr: dict[str, torch.Tensor], bayes: torch.Tensor | None = None
) -> dict:
    """The claim "`better` has a lower MSE than `worse`" from per-item MSE and
    PSNR: the MSE difference (worse - better, positive when the claim is right)
    decides the verdict; the PSNR difference (better - worse) is given beside
    it, and, given each item's exact Bayes error `bayes`, the difference of the
    normalized errors mean(mse) / mean(bayes), with the ratio's standard error."""
    d_mse = paired_difference(mse[worse], mse[better])
    out = {
        "better": better,
        "worse": worse,
        "mse_difference": d_mse,
        "psnr_difference": paired_difference(psnr[better], psnr[worse]),
        "verdict": verdict(d_mse),
    }
    if bayes is not None:
        out["normalized_error_difference"] = ratio_of_means(mse[worse].double() - mse[better].double(), bayes)
    return out


def pairwise(mse: dict[str, torch.Tensor], psnr: dict[str, torch.Tensor], bayes: torch.Tensor | None = None) -> list[dict]:
    """Every pair of methods once, as the claim that the one with the lower mean
    MSE beats the other; the pairs of methods adjacent in that order come first,
    best first. `bayes`: each item's exact Bayes error, where there is one."""
    for name in mse:
        if not (torch.isfinite(mse[name]).all() and torch.isfinite(psnr[name]).all()):
            raise ValueError(f"method {name}: a non-finite MSE or PSNR on some test item; it cannot be compared")
    order = sorted(mse, key=lambda name: float(mse[name].mean()))
    pairs = [(order[i], order[j]) for gap in range(1, len(order)) for i in range(len(order) - gap) for j in [i + gap]]
    return [compare(a, b, mse, psnr, bayes) for a, b in pairs]


def ordering(comparisons: list[dict]) -> list[str]:
    """The methods from the lowest mean MSE to the highest."""
    adjacent = comparisons[: len(_methods(comparisons)) - 1]
    return [adjacent[0]["better"], *(c["worse"] for c in adjacent)] if adjacent else []


def claim(comparisons: list[dict], better: str, worse: str) -> dict:
    """The claim "`better` beats `worse`" from `pairwise`'s list, turned round
    when the list holds it the other way (a tie stays a tie, holds becomes fails)."""
    for c in comparisons:
        if (c["better"], c["worse"]) == (better, worse):
            return c
        if (c["better"], c["worse"]) == (worse, better):
            flipped = {"holds": "fails", "tie": "tie", "fails": "holds"}[c["verdict"]]
            negated = {k: {**v, "mean": -v["mean"]} for k, v in c.items() if k.endswith("_difference")}
            return {**c, **negated, "better": better, "worse": worse, "verdict": flipped}
    raise KeyError(f"no paired comparison of {better!r} and {worse!r} (methods compared: {sorted(_methods(comparisons))})")


def _methods(comparisons: list[dict]) -> set[str]:
    return {c["better"] for c in comparisons} | {c["worse"] for c in comparisons}


def improvement_beyond_margin(challenger: torch.Tensor, champion: torch.Tensor, margin: float) -> dict:
    """The claim "the challenger's per-item errors are lower than the champion's
    on the same items by more than `margin` (a fraction) of the champion's mean":
    the relative improvement 1 - mean(challenger) / mean(champion), with the
    ratio's paired standard error, and the verdict on improvement - margin > 0.
    A relative margin means the same at every error level (0.01 of the MSE is
    0.04 dB of PSNR, whatever the PSNR)."""
    if margin < 0:
        raise ValueError(f"margin {margin}: must be >= 0")
    ratio = ratio_of_means(challenger, champion)
    relative = {**ratio, "mean": 1 - ratio["mean"]}
    return {"improvement": relative, "margin": margin, "verdict": verdict({**relative, "mean": relative["mean"] - margin})}
