"""The generalization gap against a reference posterior: each method's excess
error over E[x|y], with E[x|y] from the MCMC reference of a pipeline (a folder
of per-item files, recongap.posterior.store) or, where the posterior is exact,
the closed form, beside which the MCMC reference is only checked."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .config.schema import ReferenceParams
from .datasets import DataError
from .evaluation import bayes_mse_estimate, gap_to_reference, normalized_error, reference_errors, score
from .metrics import mse
from .posterior.store import SUMMARY_NAME, is_flagged, mean_and_stderr, read_reference


class MCMCReference:
    """The reference posterior means of the first `items` test items, with
    per-item Bayes-error estimates and which items did not converge."""

    def __init__(self, directory: Path, truth: torch.Tensor, settings: ReferenceParams) -> None:
        if not (directory / SUMMARY_NAME).exists():
            raise DataError(f"{directory / SUMMARY_NAME}: reference summary missing (run `dvc repro reference@PIPELINE`)")
        reference = read_reference(directory, tuple(truth.shape[2:]), samples=False)
        if reference is None:
            raise DataError(f"{directory}: no reference items (run `dvc repro reference@PIPELINE`)")
        self.indices = reference.indices
        if self.indices != list(range(len(self.indices))) or len(self.indices) > truth.shape[0]:
            raise DataError(f"{directory}: reference items {self.indices[:5]}... are not the first test items")
        self.settings = settings
        self.diagnostics = reference.diagnostics
        self.truth = truth[: len(self.indices)]
        self.mean, std = reference.mean, reference.std
        ess = torch.tensor([float(d.get("ess_min") or float("nan")) for d in self.diagnostics])
        # an item without a finite ESS has no MCMC error bar: it is flagged below, and counts as ESS 1
        self.errors, self.mcmc_var = reference_errors(self.mean, std, self.truth, torch.nan_to_num(ess, nan=1.0).clamp_min(1.0))
        self.flagged = [i for i, d in zip(self.indices, self.diagnostics) if is_flagged(d, settings.rhat_max, settings.ess_min)]
        self.reliable = not self.flagged

    def entry(self) -> dict:
        """The `reference` entry of the metrics: Bayes MSE and convergence."""
        bayes = bayes_mse_estimate(self.errors, self.mcmc_var)
        rhat = [float(d["rhat_max"]) for d in self.diagnostics if d.get("rhat_max") is not None]
        ess = [float(d["ess_min"]) for d in self.diagnostics if d.get("ess_min") is not None]
        eps = [float(d["ess_per_second"]) for d in self.diagnostics if d.get("ess_per_second") is not None]
        seconds = [float(d["seconds"]) for d in self.diagnostics if d.get("seconds") is not None]
        return {
            "kind": "mcmc",
            "items": len(self.indices),
            "bayes_mse": bayes["mean"],
            "bayes_mse_stderr": bayes["stderr"],
            "bayes_mse_stderr_mcmc": bayes["stderr_mcmc"],
            "rhat_max": _finite(max(rhat, default=math.inf)),
            "ess_min": _finite(min(ess, default=0.0)),
            "ess_per_second_min": _finite(min(eps, default=0.0)),
            "seconds_per_item": _finite(sum(seconds) / len(seconds) if seconds else math.inf),
            "thresholds": {"rhat_max": self.settings.rhat_max, "ess_min": self.settings.ess_min},
            "items_flagged": self.flagged,
            "reliable": self.reliable,
        } | self._checks()

    def _checks(self) -> dict:
        """The second Bayes-error estimate (mean posterior variance; it should
        agree with bayes_mse, which rests on the truth) and the mode probe."""
        out = {}
        variances = [d["bayes_mse"]["variance"] for d in self.diagnostics if "bayes_mse" in d]
        if variances:
            out["bayes_mse_from_variance"] = mean_and_stderr(variances)
        probes = {i: d["probe"] for i, d in zip(self.indices, self.diagnostics) if "probe" in d}
        if probes:
            out["items_probed"] = len(probes)
            out["items_multimodal"] = [i for i, probe in probes.items() if probe["multimodal"]]
        checks = {i: d["closed_form"] for i, d in zip(self.indices, self.diagnostics) if "closed_form" in d}
        if checks:
            out["items_checked_against_closed_form"] = len(checks)
            out["items_disagreeing_with_closed_form"] = [i for i, c in checks.items() if not c["agrees"]]
        return out

    def gap(self, estimate: torch.Tensor) -> dict:
        """A method's mse / normalized_error / gap on the reference items (the
        first ones of them, for a method scored on fewer test items)."""
        k = min(len(self.indices), estimate.shape[0])
        out = gap_to_reference(mse(estimate[:k], self.truth[:k]), self.errors[:k], self.mcmc_var[:k])
        reliable = self.reliable if k == len(self.indices) else not (set(self.flagged) & set(self.indices[:k]))
        return {**out, "items": k, "reliable": reliable}

    def as_method(self) -> dict:
        """The MCMC posterior mean itself, scored like the other methods (on its
        own items, `items`)."""
        seconds = [float(d.get("seconds") or math.nan) for d in self.diagnostics]
        return {
            **score(self.mean.to(self.truth.dtype), self.truth),
            "seconds_per_image": sum(seconds) / len(seconds),
            "chosen": {},
            "shepp_logan": {},  # the reference exists only for test items drawn from the prior
            "items": len(self.indices),
        }


def _finite(value: float) -> float | str:
    """JSON has no inf/nan: name them."""
    return value if math.isfinite(value) else str(value)


def add_mcmc_reference(
    results: dict, estimates: dict[str, torch.Tensor], closed_form: dict | None, mcmc: MCMCReference,
    exact_variance: torch.Tensor | None = None,
) -> dict:
    """Add the method `posterior_mean` (the MCMC mean) and return the `reference`
    entry. Where the posterior is exact (`closed_form`, with each test item's
    exact posterior variance) it stays the denominator of every normalized
    error, the MCMC mean is scored against the exact Bayes MSE of its own items
    and its entry sits beside the closed form as a check of the sampler.
    Elsewhere each method gets its `reference_gap` against the MCMC reference,
    which becomes the denominator."""
    results["posterior_mean"] = mcmc.as_method()
    entry = mcmc.entry()
    if closed_form is not None:
        k = len(mcmc.indices)
        results["posterior_mean"].update(normalized_error(mse(mcmc.mean.to(mcmc.truth.dtype), mcmc.truth), exact_variance[:k]))
        for key in ("normalized_error", "gap"):  # the MCMC mean is only as good as its chains
            results["posterior_mean"][key]["reliable"] = mcmc.reliable
        return {**closed_form, "mcmc": entry, "mcmc_items": k}
    for name, estimate in [*estimates.items(), ("posterior_mean", mcmc.mean.to(mcmc.truth.dtype))]:
        results[name]["reference_gap"] = mcmc.gap(estimate)
    for r in results.values():
        g = r["reference_gap"]
        r["normalized_error"] = {**g["normalized_error"], "reliable": g["reliable"]}
        r["gap"] = {**g["gap"], "reliable": g["reliable"]}
    return entry
