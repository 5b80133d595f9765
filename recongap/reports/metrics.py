"""reports/PIPELINE/metrics.md and grid.png: every method on the test split,
with the paired comparisons of recongap.comparison."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..files import atomic_path
from ..metrics import psnr
from .figures import show
from .markdown import bayes_bound_line, cell, comparison_sections, method_label, shepp_logan_cell


def markdown_table(summary: dict) -> str:
    reference = summary.get("reference")
    lines = [
        f"# {summary['pipeline']} — test split ({summary['test_items']} items, scale `{summary['scale']}`)",
        "",
        f"{summary['note']}; ± is one standard error over test items.",
    ]
    if reference:
        lines.append(
            f"Normalized error = MSE / E||E[x|y] - x||^2 with the Bayes MSE {reference['bayes_mse']:.3e} per pixel "
            f"from the {reference['kind'].replace('_', ' ')} posterior."
        )
    gap_head, gap_rule = (" normalized error |", " --- |") if reference else ("", "")
    lines += [
        "",
        f"| method | PSNR (dB) | SSIM | MSE |{gap_head} s / image | {summary.get('phantom', 'Shepp-Logan')} PSNR | chosen on val |",
        f"| --- | --- | --- | --- |{gap_rule} --- | --- | --- |",
    ]
    for name, r in summary["methods"].items():
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["chosen"].items())
        gap = f" {cell(r['normalized_error'])} |" if reference else ""
        lines.append(
            f"| {method_label(name, r)} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} | {r['ssim']['mean']:.3f} ± {r['ssim']['stderr']:.3f} "
            f"| {r['mse']['mean']:.2e} |{gap} {r['seconds_per_image']:.2e} | {shepp_logan_cell(r)} | {chosen} |"
        )
    lines += bayes_bound_line(summary) + comparison_sections(summary)
    return "\n".join(lines) + "\n"


def save_grid(path: Path, truth: torch.Tensor, images: dict[str, torch.Tensor]) -> None:
    """Rows: test items; columns: truth then each method, titled with its PSNR."""
    columns = [("truth", truth), *images.items()]
    rows = truth.shape[0]
    fig = Figure(figsize=(2 * len(columns), 2 * rows))
    axes = fig.subplots(rows, len(columns), squeeze=False)
    low, high = float(truth.min()), float(truth.max())
    for r in range(rows):
        for c, (name, batch) in enumerate(columns):
            ax = axes[r, c]
            show(ax, batch[r, 0], low, high, truth=None if name == "truth" else truth[r, 0])
            title = name if name == "truth" else f"{name} {float(psnr(batch[r:r+1], truth[r:r+1])):.1f} dB"
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
