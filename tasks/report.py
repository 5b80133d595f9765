"""DVC stage `report`: docs/results.md from every metrics/<pipeline>.json.

    python -m tasks.report

Puts our test figures beside the published ones where a pipeline follows a
published protocol, and states whether the expected method ordering holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recongap.files import write_text_atomic

from .common import run_stage

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
#: The ordering Adler & Öktem's comparison leads one to expect on ellipses.
EXPECTED_ORDER = {"ellipses": ["fbp", "tv", "postproc", "lgd", "lpd"]}


def ordering_line(pipeline: str, methods: dict) -> str | None:
    order = EXPECTED_ORDER.get(pipeline)
    if not order or not all(m in methods for m in order):
        return None
    psnr = [methods[m]["psnr"]["mean"] for m in order]
    holds = all(a < b for a, b in zip(psnr[:3], psnr[1:4])) and psnr[3] <= psnr[4]
    verdict = "holds" if holds else "does **not** hold"
    return f"Expected test PSNR ordering FBP < TV < postproc < lgd <= lpd: {verdict}."


def _shepp_logan(result: dict) -> str:
    psnr_db = result["shepp_logan"].get("psnr")  # absent for the MCMC posterior mean
    return "—" if psnr_db is None else f"{psnr_db:.2f}"


def section(summary: dict) -> str:
    pipeline, methods = summary["pipeline"], summary["methods"]
    title, published = PUBLISHED.get(pipeline, (None, {}))
    reference = summary.get("reference")
    header = "| method | PSNR (dB) | SSIM | s / image | Shepp-Logan PSNR |"
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
        flagged = name == "posterior_mean" and r.get("reference_gap", {}).get("reliable") is False
        row = (
            f"| {name + ' (MCMC, flagged: UNRELIABLE)' if flagged else name} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} | {r['ssim']['mean']:.3f} ± {r['ssim']['stderr']:.3f} "
            f"| {r['seconds_per_image']:.1e} | {_shepp_logan(r)} |"
        )
        if reference:
            ne = r["normalized_error"]
            cell = f"{ne['mean']:.3f} ± {ne['stderr']:.3f}"
            # an unconverged MCMC reference never yields a clean number
            row += f" {cell} |" if ne.get("reliable", True) else f" UNRELIABLE ({cell}) |"
        if published:
            p = published.get(name)
            row += f" {p[0]:.2f} / {p[1]:.3f} |" if p else " — |"
        lines.append(row)
    if reference:
        lines += ["", f"Normalized error = MSE / Bayes MSE, the Bayes MSE ({reference['bayes_mse']:.3e} per pixel) from the {reference['kind'].replace('_', ' ')} posterior."]
    order = ordering_line(pipeline, methods)
    if order:
        lines += ["", order]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Write docs/results.md from the metrics files.")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--out", default="docs/results.md")
    args = parser.parse_args()
    summaries = [json.loads(p.read_text()) for p in sorted(Path(args.metrics).glob("*.json"))]
    parts = [
        "# Results",
        "",
        "Written by `python -m tasks.report` (the `report` stage of `dvc repro`) from the committed",
        "metrics files; every figure below comes from the run that wrote them, at the scale named.",
        "Published figures are quoted for comparison, at their own (paper) scale.",
        "",
    ]
    parts += [section(s) + "\n" for s in summaries] or ["No metrics yet: run `dvc repro`.\n"]
    write_text_atomic(args.out, "\n".join(parts))


if __name__ == "__main__":
    run_stage(main)
