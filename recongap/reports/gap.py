"""reports/PIPELINE/gap.md and gap.png: every method's normalized error and gap
against the reference, beside the figures of Adler's talk where the problem is
his (ellipses, with an MCMC reference; not the Gaussian priors with exact posteriors)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..files import atomic_path, write_text_atomic
from .markdown import UNRELIABLE, cell

#: Normalized errors MSE / E||E[x|y] - x||^2 from J. Adler's talk "Deep learning
#: for inverse problems: where are we? how far can we go?" (128x128 ellipses,
#: 30 angles, 5% noise). Learned iterative is compared with lgd and lpd alike.
ADLER_PUBLISHED = {"fbp": 372.0, "tv": 56.0, "postproc": 42.2, "lgd": 5.2, "lpd": 5.2, "posterior_mean": 1.0}


def adler_applies(summary: dict) -> bool:
    """His figures are for ellipses on CT with an MCMC reference (a metrics file
    without `problem` predates the other forward kinds and priors: CT)."""
    problem = summary.get("problem", {})
    return (summary["reference"]["kind"] != "closed_form" and problem.get("forward", "ct") == "ct"
            and problem.get("prior", "ellipses") == "ellipses")


def gap_markdown(summary: dict) -> str:
    """reports/PIPELINE/gap.md: normalized errors and gaps, beside Adler's
    published figures where the problem is his (not on the Gaussian priors)."""
    ref = summary["reference"]
    exact = ref["kind"] == "closed_form"
    mcmc = ref["mcmc"] if exact else ref
    normalized = "normalized error = E||R(y) - x||^2 / E||E[x|y] - x||^2 and gap = E||R(y) - x||^2 - E||E[x|y] - x||^2 (per pixel), "
    if exact:
        spread = f" ± {ref['bayes_mse_stderr']:.1e}" if "bayes_mse_stderr" in ref else ""
        lines = [
            f"# {summary['pipeline']} — generalization gap (scale `{summary['scale']}`, {summary['test_items']} test items)",
            "",
            normalized + "with E[x|y] the exact posterior mean of the very prior that made the data, and "
            f"E||E[x|y] - x||^2 its exact posterior variance given each y (Bayes MSE {ref['bayes_mse']:.3e}{spread} per pixel). "
            "± is one standard error over test items, paired with the Bayes MSE of the same items.",
            "",
            "## The MCMC reference, checked against the exact posterior",
            "",
            f"Its first {mcmc['items']} test items; the row `posterior_mean` below is its mean, scored against the exact Bayes MSE of those items.",
            "",
        ]
    else:
        lines = [
            f"# {summary['pipeline']} — generalization gap (scale `{summary['scale']}`, {mcmc['items']} test items)",
            "",
            normalized + "with E[x|y] the MCMC posterior mean of the very prior that made the data. "
            "± is one standard error: paired over test items, plus the Monte-Carlo error of the reference.",
            "",
        ]
    lines += [
        f"MCMC Bayes MSE {mcmc['bayes_mse']:.3e} ± {mcmc['bayes_mse_stderr']:.1e}; split R-hat max {mcmc['rhat_max']}, "
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
        marks = "the row posterior_mean is" if exact else "every normalized error and gap below is"
        lines += [
            "",
            f"**{UNRELIABLE}: {len(mcmc['items_flagged'])} of {mcmc['items']} reference items were flagged (unconverged, a better fit found by the mode probe, or disagreeing with the exact posterior) "
            f"(items {mcmc['items_flagged']}); {marks} marked {UNRELIABLE}.**",
        ]
    if exact:
        lines += ["", "## Every method against the exact posterior mean"]
    adler = adler_applies(summary)
    head, rule = (" Adler's talk (128x128) |", " --- |") if adler else ("", "")
    lines += ["", f"| method | MSE | normalized error | gap |{head}", f"| --- | --- | --- | --- |{rule}"]
    for name, g in gap_rows(summary):
        rel = {"reliable": g["reliable"]}
        published = ADLER_PUBLISHED.get(name)
        cells = f" {published if published is not None else '—'} |" if adler else ""
        lines.append(
            f"| {name} | {cell(g['mse'], '.3e')} | {cell({**g['normalized_error'], **rel}, '.3g')} "
            f"| {cell({**g['gap'], **rel}, '.2e')} |{cells}"
        )
    if adler:
        figures = ", ".join(f"{name} {value:g}" for name, value in ADLER_PUBLISHED.items())
        lines += ["", f"Adler's figures (lgd and lpd both stand for his learned iterative scheme): {figures}."]
    return "\n".join(lines) + "\n"


def gap_rows(summary: dict) -> list[tuple[str, dict]]:
    """(method, {mse, normalized_error, gap, reliable}) for the gap table: against
    the exact posterior where there is one (over all test items; the MCMC mean
    over its own), else against the MCMC reference on its items."""
    if summary["reference"]["kind"] == "closed_form":
        return [
            (name, {"mse": r["mse"], "normalized_error": r["normalized_error"], "gap": r["gap"],
                    "reliable": r["normalized_error"].get("reliable", True)})
            for name, r in summary["methods"].items() if "normalized_error" in r
        ]
    return [(name, r["reference_gap"]) for name, r in summary["methods"].items() if r.get("reference_gap")]


def save_gap_chart(path: Path, summary: dict) -> None:
    """reports/PIPELINE/gap.png: normalized errors on a log scale with error bars,
    a row hatched when its reference is unreliable, Adler's figures as markers
    (ellipses only)."""
    rows = gap_rows(summary)
    fig = Figure(figsize=(1.2 * len(rows) + 2, 3.5))
    ax = fig.subplots()
    means = [max(g["normalized_error"]["mean"], 1e-3) for _, g in rows]
    errors = [g["normalized_error"]["stderr"] for _, g in rows]
    reliable = all(g["reliable"] for _, g in rows)
    bars = ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color="tab:blue", label="this run")
    for bar, (_, g) in zip(bars, rows):  # a flagged row hatched, the others not
        bar.set_hatch(None if g["reliable"] else "//")
    adler = adler_applies(summary)
    published = [(i, ADLER_PUBLISHED[n]) for i, (n, _) in enumerate(rows) if n in ADLER_PUBLISHED and adler]
    if published:
        ax.scatter(*zip(*published), color="tab:red", marker="_", s=400, zorder=3, label="Adler's talk (128x128)")
    ax.set_yscale("log")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(rows)), [n for n, _ in rows], fontsize=8)
    ax.set_ylabel("normalized error")
    title = f"{summary['pipeline']} ({summary['scale']})"
    ax.set_title(title if reliable else f"{title}: hatched rows {UNRELIABLE} (flagged reference items)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def write_gap_reports(directory: Path, summary: dict) -> None:
    write_text_atomic(directory / "gap.md", gap_markdown(summary))
    save_gap_chart(directory / "gap.png", summary)


