"""The generalization-gap part of the `evaluate` stage: each method against the
MCMC reference posterior of models/PIPELINE/reference, and reports/PIPELINE/
{gap.md, gap.png}. Kept apart from tasks/evaluate.py, which calls it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from recongap.config.schema import ReferenceParams
from recongap.datasets import DataError
from recongap.evaluation import bayes_mse_estimate, gap_to_reference, normalized_error, reference_errors, score
from recongap.files import atomic_path, write_text_atomic
from recongap.metrics import mse
from recongap.posterior.store import SUMMARY_NAME, is_flagged, load_reference, mean_and_stderr

#: Normalized errors MSE / E||E[x|y] - x||^2 from J. Adler's talk "Deep learning
#: for inverse problems: where are we? how far can we go?" (128x128 ellipses,
#: 30 angles, 5% noise). Learned iterative is compared with lgd and lpd alike.
ADLER_PUBLISHED = {"fbp": 372.0, "tv": 56.0, "postproc": 42.2, "lgd": 5.2, "lpd": 5.2, "posterior_mean": 1.0}
UNRELIABLE = "UNRELIABLE"


class MCMCReference:
    """The reference posterior means of the first `items` test items, with
    per-item Bayes-error estimates and which items did not converge."""

    def __init__(self, directory: Path, truth: torch.Tensor, settings: ReferenceParams) -> None:
        if not (directory / SUMMARY_NAME).exists():
            raise DataError(f"{directory / SUMMARY_NAME}: reference summary missing (run `dvc repro reference@PIPELINE`)")
        try:
            items = load_reference(directory)
        except ValueError as e:
            raise DataError(str(e)) from None
        self.indices = sorted(items)
        if not self.indices or self.indices != list(range(len(self.indices))) or len(self.indices) > truth.shape[0]:
            raise DataError(f"{directory}: reference items {self.indices[:5]}... are not the first test items")
        if items[0].mean.shape[1:] != tuple(truth.shape[1:]):
            raise DataError(f"{directory}: reference means are {items[0].mean.shape[1:]}, test images {tuple(truth.shape[1:])}")
        self.settings = settings
        self.diagnostics = [items[i].diagnostics for i in self.indices]
        self.truth = truth[: len(self.indices)]
        self.mean = torch.from_numpy(np.concatenate([items[i].mean for i in self.indices]))
        std = torch.from_numpy(np.concatenate([items[i].std for i in self.indices]))
        ess = torch.tensor([float(d.get("ess_min") or float("nan")) for d in self.diagnostics])
        # an item without a finite ESS has no MCMC error bar: it is flagged below, and counts as ESS 1
        self.errors, self.mcmc_var = reference_errors(self.mean, std, self.truth, torch.nan_to_num(ess, nan=1.0).clamp_min(1.0))
        self.flagged = [i for i, d in zip(self.indices, self.diagnostics) if is_flagged(d, settings.rhat_max, settings.ess_min)]
        self.reliable = not self.flagged

    def entry(self) -> dict:
        """The `reference` entry of the metrics: Bayes MSE and convergence."""
        bayes = bayes_mse_estimate(self.errors, self.mcmc_var, self.settings.bootstrap_resamples, self.settings.seed)
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
        """A method's mse / normalized_error / gap on the reference items."""
        k = len(self.indices)
        out = gap_to_reference(
            mse(estimate[:k], self.truth), self.errors, self.mcmc_var, self.settings.bootstrap_resamples, self.settings.seed
        )
        return {**out, "items": k, "reliable": self.reliable}

    def as_method(self) -> dict:
        """The MCMC posterior mean itself, scored like the other methods."""
        seconds = [float(d.get("seconds") or math.nan) for d in self.diagnostics]
        return {
            **score(self.mean.to(self.truth.dtype), self.truth),
            "seconds_per_image": sum(seconds) / len(seconds),
            "chosen": {},
            "shepp_logan": {},  # the reference exists only for test items drawn from the prior
            "reference_gap": self.gap(self.mean.to(self.truth.dtype)),
        }


def _finite(value: float) -> float | str:
    """JSON has no inf/nan: name them."""
    return value if math.isfinite(value) else str(value)


def _cell(entry: dict, fmt: str) -> str:
    """A value ± its standard error, never clean when the reference is unreliable."""
    text = f"{entry['mean']:{fmt}} ± {entry['stderr']:{fmt}}"
    return text if entry.get("reliable", True) else f"{UNRELIABLE} ({text})"


def gap_markdown(summary: dict) -> str:
    """reports/PIPELINE/gap.md: normalized errors beside Adler's published ones."""
    ref = summary["reference"]
    mcmc = ref if ref["kind"] == "mcmc" else ref["mcmc"]
    lines = [
        f"# {summary['pipeline']} — generalization gap (scale `{summary['scale']}`, {mcmc['items']} test items)",
        "",
        "normalized error = E||R(y) - x||^2 / E||E[x|y] - x||^2 and gap = E||R(y) - x||^2 - E||E[x|y] - x||^2 "
        "(per pixel), with E[x|y] the MCMC posterior mean of the very prior that made the data. "
        "± is one standard error: bootstrap over test items plus the Monte-Carlo error of the reference.",
        "",
        f"Bayes MSE {mcmc['bayes_mse']:.3e} ± {mcmc['bayes_mse_stderr']:.1e}; split R-hat max {mcmc['rhat_max']}, "
        f"bulk ESS min {mcmc['ess_min']} (thresholds R-hat <= {mcmc['thresholds']['rhat_max']}, "
        f"ESS >= {mcmc['thresholds']['ess_min']}).",
    ]
    if "bayes_mse_from_variance" in mcmc:
        v = mcmc["bayes_mse_from_variance"]
        lines += [
            "",
            f"The same Bayes MSE from the posterior variance summed over pixels: {v['mean']:.3e} ± {v['stderr']:.1e} "
            "(the figure above rests on ||mean - x*||^2; the two agree when the chains follow the posterior).",
        ]
    if "items_probed" in mcmc:
        lines += [
            "",
            f"Mode probe: {mcmc['items_probed']} items probed by chains from prior draws; "
            f"{len(mcmc['items_multimodal'])} flagged multimodal {mcmc['items_multimodal']}.",
        ]
    if "items_checked_against_closed_form" in mcmc:
        lines += [
            "",
            f"Against the exact posterior: {mcmc['items_checked_against_closed_form']} items checked (each image summary's MCMC mean "
            f"within 3 Monte Carlo standard errors of its exact value); {len(mcmc['items_disagreeing_with_closed_form'])} disagree "
            f"{mcmc['items_disagreeing_with_closed_form']}.",
        ]
    if not mcmc["reliable"]:
        lines += [
            "",
            f"**{UNRELIABLE}: {len(mcmc['items_flagged'])} of {mcmc['items']} reference items were flagged (unconverged, a better fit found by the mode probe, or disagreeing with the exact posterior) "
            f"(items {mcmc['items_flagged']}); every normalized error and gap below is marked {UNRELIABLE}.**",
        ]
    if ref["kind"] == "closed_form":
        spread = f" ± {ref['bayes_mse_stderr']:.1e} (the exact posterior variance averaged over the test items)" if "bayes_mse_stderr" in ref else ""
        lines += ["", f"Closed-form Bayes MSE (exact posterior): {ref['bayes_mse']:.3e}{spread}."]
    lines += [
        "",
        "| method | MSE | normalized error | gap | Adler's talk (128x128) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in summary["methods"].items():
        g = r.get("reference_gap")
        if not g:
            continue
        rel = {"reliable": g["reliable"]}
        published = ADLER_PUBLISHED.get(name)
        lines.append(
            f"| {name} | {_cell({**g['mse'], 'reliable': True}, '.3e')} | {_cell({**g['normalized_error'], **rel}, '.3g')} "
            f"| {_cell({**g['gap'], **rel}, '.2e')} | {published if published is not None else '—'} |"
        )
    lines += ["", "Adler's figures: FBP 372, TV 56.0, learned post-processing 42.2, learned iterative 5.2, conditional expectation 1."]
    return "\n".join(lines) + "\n"


def save_gap_chart(path: Path, summary: dict) -> None:
    """reports/PIPELINE/gap.png: normalized errors on a log scale with error bars,
    hatched when the reference is unreliable, Adler's figures as markers."""
    rows = [(n, r["reference_gap"]) for n, r in summary["methods"].items() if r.get("reference_gap")]
    fig = Figure(figsize=(1.2 * len(rows) + 2, 3.5))
    ax = fig.subplots()
    means = [max(g["normalized_error"]["mean"], 1e-3) for _, g in rows]
    errors = [g["normalized_error"]["stderr"] for _, g in rows]
    reliable = all(g["reliable"] for _, g in rows)
    ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color="tab:blue", hatch=None if reliable else "//", label="this run")
    published = [(i, ADLER_PUBLISHED[n]) for i, (n, _) in enumerate(rows) if n in ADLER_PUBLISHED]
    if published:
        ax.scatter(*zip(*published), color="tab:red", marker="_", s=400, zorder=3, label="Adler's talk (128x128)")
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(rows)), [n for n, _ in rows], fontsize=8)
    ax.set_ylabel("normalized error")
    title = f"{summary['pipeline']} ({summary['scale']})"
    ax.set_title(title if reliable else f"{title}: {UNRELIABLE}, flagged reference items", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def write_gap_reports(directory: Path, summary: dict) -> None:
    write_text_atomic(directory / "gap.md", gap_markdown(summary))
    save_gap_chart(directory / "gap.png", summary)


def add_mcmc_reference(
    results: dict, estimates: dict[str, torch.Tensor], closed_form: dict | None, mcmc: MCMCReference,
    exact_variance: torch.Tensor | None = None,
) -> dict:
    """Add each method's `reference_gap`, the method `posterior_mean`, and return
    the `reference` entry. Where a closed form exists (Gaussian prior) it stays
    the denominator of the top-level normalized errors and the MCMC entry sits
    beside it for comparison; elsewhere the MCMC reference is the denominator."""
    for name, estimate in estimates.items():
        results[name]["reference_gap"] = mcmc.gap(estimate)
    results["posterior_mean"] = mcmc.as_method()
    entry = mcmc.entry()
    if closed_form is not None:
        k = len(mcmc.indices)
        # where the exact posterior variance depends on y (a mixture), that of the same k items
        bayes = float(exact_variance[:k].mean()) if exact_variance is not None else closed_form["bayes_mse"]
        results["posterior_mean"].update(normalized_error(mse(mcmc.mean.to(mcmc.truth.dtype), mcmc.truth), bayes))
        for key in ("normalized_error", "gap"):  # the MCMC mean is only as good as its chains
            results["posterior_mean"][key]["reliable"] = mcmc.reliable
        return {**closed_form, "mcmc": entry, "mcmc_items": k}
    for r in results.values():
        g = r["reference_gap"]
        r["normalized_error"] = {**g["normalized_error"], "reliable": g["reliable"]}
        r["gap"] = {**g["gap"], "reliable": g["reliable"]}
    return entry


def marked(entry: dict, fmt: str = ".3f") -> str:
    """A table cell for a normalized error: UNRELIABLE when its reference is."""
    return _cell(entry, fmt)
