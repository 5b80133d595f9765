"""Markdown for the reports: figures with their error bars, the UNRELIABLE
mark, and the paired comparisons, written the same way in every report."""

from __future__ import annotations

from ..comparison import Z, claim, ordering, verdict

UNRELIABLE = "UNRELIABLE"


def cell(entry: dict, fmt: str = ".3f") -> str:
    """A value ± its standard error; marked UNRELIABLE (never a clean number)
    when the entry says its reference is not reliable."""
    text = f"{entry['mean']:{fmt}} ± {entry['stderr']:{fmt}}"
    return text if entry.get("reliable", True) else f"{UNRELIABLE} ({text})"


def method_label(name: str, result: dict) -> str:
    """A method's name in a table; the MCMC posterior mean says what it is, on
    how many items it was scored, and when its chains were flagged."""
    if name != "posterior_mean":  # a per-item method (the solve stage's) says on how many items it was scored
        return f"{name} (first {result['items']} test items)" if "items" in result else name
    items = f", first {result['items']} test items" if "items" in result else ""
    flagged = ", flagged: UNRELIABLE" if result.get("normalized_error", {}).get("reliable") is False else ""
    return f"{name} (MCMC{items}{flagged})"


def shepp_logan_cell(result: dict) -> str:
    """The Shepp-Logan PSNR, or — where there is none (the MCMC mean)."""
    psnr_db = result["shepp_logan"].get("psnr")
    return "—" if psnr_db is None else f"{psnr_db:.2f}"


def _row(c: dict) -> str:
    d_ne = c.get("normalized_error_difference")
    ne = f" {cell(d_ne, '.3f')} |" if d_ne else ""
    return (
        f"| {c['better']} beats {c['worse']} | {cell(c['mse_difference'], '.2e')} |{ne} "
        f"{cell(c['psnr_difference'], '.2f')} | {c['verdict']} |"
    )


def _table(rows: list[dict]) -> list[str]:
    exact = "normalized_error_difference" in rows[0]
    ne_head, ne_rule = (" normalized error lower by |", " --- |") if exact else ("", "")
    return [
        f"| claim | MSE lower by |{ne_head} PSNR higher by (dB) | verdict |",
        f"| --- | --- |{ne_rule} --- | --- |",
        *(_row(c) for c in rows),
    ]


def comparison_sections(summary: dict) -> list[str]:
    """The paired comparisons of a metrics summary as Markdown lines: the
    ordering by test MSE, each step of it judged; where the posterior is exact,
    its mean against every method and, on a mixture, every method against the
    best linear estimator. Empty when the summary has no comparisons."""
    comparisons = summary.get("comparisons")
    if not comparisons:
        return []
    items = comparisons[0]["mse_difference"]["items"]
    lines = _ordered(
        comparisons, summary,
        f"Paired over the {items} test items: a claim holds when the per-item MSE difference clears {Z:g} standard "
        f"errors in its favour, fails when it clears them against it, and is a tie otherwise.",
    )
    subset = summary.get("subset_comparisons")
    if subset:
        lines += ["", f"### On the first {subset['items']} test items, with the methods optimised per measurement"]
        lines += _ordered(subset["pairs"], summary, f"Every method paired over the first {subset['items']} test items, the ones the per-item methods solved.")
    return lines


def _ordered(comparisons: list[dict], summary: dict, intro: str) -> list[str]:
    """The ordering by MSE with each step judged, then the exact posterior
    mean against every method and every method against the best linear one."""
    order = ordering(comparisons)
    lines = [
        "",
        intro,
        "",
        f"Ordering by test MSE, each method against the next: {' < '.join(order)}.",
        "",
        *_table(comparisons[: len(order) - 1]),
    ]
    reference = summary.get("reference") or {}
    best, linear = reference.get("estimator"), reference.get("linear_estimator")
    if best in order:
        lines += ["", f"The exact posterior mean (`{best}`) against every method:", ""]
        lines += _table([claim(comparisons, best, m) for m in order if m != best])
    if linear in order and linear != best:
        lines += ["", f"Every method against the best linear estimator (`{linear}`), what nonlinearity buys:", ""]
        lines += _table([claim(comparisons, m, linear) for m in order if m != linear])
    return lines


def bayes_bound_line(summary: dict) -> list[str]:
    """Where the Bayes MSE is exact, whether every normalized error is >= 1
    within its error bar (the gap below 0 by more than Z standard errors would
    be a bug: nothing beats E[x|y] in mean squared error)."""
    reference = summary.get("reference") or {}
    if reference.get("kind") != "closed_form":
        return []
    below = [name for name, r in summary["methods"].items() if "gap" in r and r["gap"].get("reliable", True) and verdict(r["gap"]) == "fails"]
    text = ", ".join(below) if below else "none"
    return ["", f"Normalized errors below 1 by more than {Z:g} standard errors (impossible for an exact Bayes MSE): {text}."]
