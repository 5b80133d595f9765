"""docs/results.md: every pipeline's test figures beside the published ones
where it follows a published protocol, its paired comparisons, and whether
each step of the ordering one expects on ellipses holds, ties or fails."""

from __future__ import annotations

from ..comparison import claim
from .markdown import cell, comparison_sections, method_label, shepp_logan_cell

#: DIVal's published test PSNR / SSIM on its ellipses benchmark (128x128,
#: 30 angles, 2.5% noise); Leuschner et al., "Quantitative comparison of
#: deep learning-based image reconstruction methods for low-dose and
#: sparse-angle CT applications", J. Imaging 2021.
DIVAL_PUBLISHED = {
    "fbp": (24.18, 0.594),
    "tv": (27.96, 0.862),
    "postproc": (29.36, 0.899),
    "lgd": (30.30, 0.916),
    "lpd": (32.27, 0.940),
}
PUBLISHED = {"dival_ellipses": ("DIVal (published, 128x128)", DIVAL_PUBLISHED)}
#: What differs between a published table and ours, said under the table.
PUBLISHED_SETUP = {
    "dival_ellipses": (
        "DIVal's column is its published table: 128x128 images, 32 000 training and 3 200 test pairs, each method "
        "trained on its own schedule. Ours share the prior, the 30 parallel-beam angles, the 2.5% noise and the "
        "finer measurement grid; the image size, the training set and the budgets are those of the heading's scale "
        "(`laptop`: 64x64, 4096 training pairs, 2 epochs of postproc, 3 of lgd and lpd; README, \"Picking a scale\"), "
        "and the test images are others: the columns sit side by side, they are not paired."
    )
}
#: Duff, Campbell and Ehrhardt's PSNR (dB) on FastMRI knee images measured by
#: parallel-beam CT at 10 and 30 angles (seed talk 003): method -> (10, 30).
GENERATIVE_PUBLISHED = {"zero filled": (16.58, 24.25), "tv": (17.99, 30.26), "gen_range": (21.90, 28.47), "gen_soft": (23.31, 31.50)}
#: The methods of the seed talks beside the trained reconstructors (issue 21).
SEED_METHODS = ("linear_mmse", "pnp", "dip", "adp", "gen_range", "gen_soft")

#: The ordering Adler & Öktem's comparison leads one to expect on ellipses.
EXPECTED_ORDER = {"ellipses": ["fbp", "tv", "postproc", "lgd", "lpd"]}


def ordering_lines(summary: dict) -> list[str]:
    """Each step of the ordering one expects on this pipeline (worst first), as a
    paired claim on the test items: holds, tie or fails."""
    order, comparisons = EXPECTED_ORDER.get(summary["pipeline"]), summary.get("comparisons")
    if not order or not all(m in summary["methods"] for m in order):
        return []
    if not comparisons:
        return ["", "Expected ordering " + " < ".join(order) + ": not judged, the metrics file has no paired comparisons (re-run evaluate)."]
    compared = {c["better"] for c in comparisons} | {c["worse"] for c in comparisons}
    if not set(order) <= compared:
        return ["", "Expected ordering " + " < ".join(order) + f": not judged, {sorted(set(order) - compared)} not among the compared methods."]
    steps = [claim(comparisons, better, worse) for worse, better in zip(order, order[1:])]
    lines = ["", "Expected ordering (Adler & Öktem), each step a paired claim on test MSE: " + " < ".join(order) + ".", ""]
    lines += [f"- {c['better']} beats {c['worse']}: MSE lower by {cell(c['mse_difference'], '.2e')}, "
              f"PSNR higher by {cell(c['psnr_difference'], '.2f')} dB: **{c['verdict']}**" for c in steps]
    return lines


def seed_method_lines(summary: dict) -> list[str]:
    """The seed talks' other methods on this pipeline, closest to E[x|y] first,
    scored on the same items (the first ones, which the per-measurement
    methods solved), with seconds per image; on CT, the generative
    regularisers beside Duff, Campbell and Ehrhardt's table."""
    methods, subset = summary["methods"], summary.get("subset_comparisons") or {}
    on_items = subset.get("methods", {})

    def normalized(m: str) -> dict | None:  # on the subset where it has an exact Bayes error, else on the MCMC reference's items
        return on_items.get(m, {}).get("normalized_error") or methods[m].get("normalized_error")

    present = [m for m in SEED_METHODS if m in methods and normalized(m)]
    if not present:
        return []
    ranked = sorted(present, key=lambda m: normalized(m)["mean"])
    where = f"the first {subset['items']} test items" if subset else "the test items"
    if not any("normalized_error" in r for r in on_items.values()) and "reference_gap" in methods[ranked[0]]:
        where = f"the first {methods[ranked[0]]['reference_gap']['items']} test items, those of the MCMC reference"
    lines = [
        "", f"The seed talks' other methods, closest to E[x|y] first: normalized error on {where}, and seconds per image "
        "(evaluate's batched timing for linear_mmse and pnp, the solve stage's one item at a time for the others; "
        "`python -m benchmarks.methods` times all of them alike):", "",
    ]
    lines += [f"- {m}: {cell(normalized(m))}, {methods[m]['seconds_per_image']:.2g} s / image" for m in ranked]
    kind = summary.get("problem", {}).get("forward")
    if kind == "ct" and {"gen_range", "gen_soft"} <= set(on_items):
        ours = {"zero filled": "fbp", "tv": "tv", "gen_range": "gen_range", "gen_soft": "gen_soft"}
        lines += [
            "", f"Generative regularisers beside Duff, Campbell and Ehrhardt's table (PSNR in dB; ours on the first {subset['items']} test items):", "",
            f"| method | published, 10 angles | published, 30 angles | ours, {summary['problem'].get('angles', '?')} angles |", "| --- | --- | --- | --- |",
        ]
        for name, (ten, thirty) in GENERATIVE_PUBLISHED.items():
            r = on_items.get(ours[name])
            here = f"{r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f}" if r else "—"
            lines.append(f"| {name}{' (ours: FBP)' if name == 'zero filled' else ''} | {ten:.2f} | {thirty:.2f} | {here} |")
        lines += ["", (
            "What differs: their images are FastMRI knee slices measured by CT, their generator their own, their noise and image "
            "size not stated on the slides; ours are this pipeline's images, scan and noise "
            "at the heading's scale, our VAE trained on its training split, FBP with its filter chosen on validation in place "
            "of their zero-filled reconstruction, and both regularisers' weights chosen on validation items. Their table has "
            "range above TV at 10 angles and below it at 30, and soft above both at both; the columns are not paired."
        )]
    return lines


def section(summary: dict) -> str:
    pipeline, methods = summary["pipeline"], summary["methods"]
    title, published = PUBLISHED.get(pipeline, (None, {}))
    reference = summary.get("reference")
    header = f"| method | PSNR (dB) | SSIM | s / image | {summary.get('phantom', 'Shepp-Logan')} PSNR |"
    rule = "| --- | --- | --- | --- | --- |"
    if reference:
        header += " normalized error |"
        rule += " --- |"
    if published:
        header += f" {title} PSNR / SSIM |"
        rule += " --- |"
    lines = [
        f"## {pipeline} — scale `{summary['scale']}`, {summary['test_items']} test items",
        "",
        f"From `metrics/{pipeline}.json`. {summary['note']}; ± is one standard error over test items.",
        "",
        header,
        rule,
    ]
    for name, r in methods.items():
        row = (
            f"| {method_label(name, r)} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} | {r['ssim']['mean']:.3f} ± {r['ssim']['stderr']:.3f} "
            f"| {r['seconds_per_image']:.1e} | {shepp_logan_cell(r)} |"
        )
        if reference:
            row += f" {cell(r['normalized_error'])} |"  # an unconverged MCMC reference never yields a clean number
        if published:
            p = published.get(name)
            row += f" {p[0]:.2f} / {p[1]:.3f} |" if p else " — |"
        lines.append(row)
    if published:
        lines += ["", PUBLISHED_SETUP[pipeline]]
    if reference:
        lines += ["", f"Normalized error = MSE / Bayes MSE, the Bayes MSE ({reference['bayes_mse']:.3e} per pixel) from the {reference['kind'].replace('_', ' ')} posterior."]
    lines += ordering_lines(summary) + seed_method_lines(summary) + comparison_sections(summary)
    return "\n".join(lines)


def results_markdown(summaries: list[dict]) -> str:
    """The whole of docs/results.md from the metrics summaries."""
    parts = [
        "# Results",
        "",
        "Written by `python -m tasks.report` (the `report` stage of `dvc repro`) from the committed",
        "metrics files; every figure below comes from the run that wrote them, at the scale named.",
        "Published figures are quoted for comparison, at their own (paper) scale.",
        "",
    ]
    parts += [section(s) + "\n" for s in summaries] or ["No metrics yet.\n"]
    return "\n".join(parts)
