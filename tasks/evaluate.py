"""DVC stage `evaluate`: every method of a pipeline on its test split.

    python -m tasks.evaluate PIPELINE

Writes metrics/PIPELINE.json (DVC metrics) and reports/PIPELINE/{grid.png,
metrics.md}. FBP and TV parameters are chosen on the validation split here;
learned methods are loaded from models/PIPELINE/METHOD/best.ckpt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from recongap.config import ConfigError, load_catalogue, load_params  # noqa: E402
from recongap.datasets import read_split  # noqa: E402
from recongap.evaluation import reconstruct_timed, score  # noqa: E402
from recongap.files import atomic_path, write_text_atomic  # noqa: E402
from recongap.metrics import psnr  # noqa: E402
from recongap.operators import Geometry, RayTransform  # noqa: E402
from recongap.priors import shepp_logan  # noqa: E402
from recongap.reconstructors import get_method  # noqa: E402
from recongap.reconstructors.lightning import load_checkpoint  # noqa: E402

from .common import run_stage  # noqa: E402

PSNR_NOTE = "PSNR data range: max - min of each ground-truth image"


def main() -> None:
    parser = argparse.ArgumentParser(description="Evaluate every method of one pipeline.")
    parser.add_argument("pipeline")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pipelines", default="pipelines.yaml")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()

    params = load_params(args.params)
    catalogue = load_catalogue(args.pipelines)
    if args.pipeline not in catalogue.pipelines:
        raise ConfigError(f"{args.pipelines}: no pipeline {args.pipeline!r} (defined: {sorted(catalogue.pipelines)})")
    settings = params.evaluate
    data = Path(args.data) / args.pipeline
    test, val = read_split(data / "test.h5"), read_split(data / "val.h5")
    geometry = Geometry(**test.attrs["config"]["geometry"])
    operator = RayTransform.from_geometry(geometry)
    y, x = torch.from_numpy(test.measurements), torch.from_numpy(test.images)

    # Shepp-Logan, never seen in training, with the pipeline's noise level
    phantom = shepp_logan(geometry.size)
    noise = torch.randn(1, 1, *geometry.data_shape, generator=torch.Generator().manual_seed(0))
    y_phantom = operator(phantom) + test.attrs["noise_std"] * noise

    methods = [*catalogue.classical_methods, *catalogue.learned_methods]
    results, images = {}, {}
    for name in methods:
        method = get_method(name)
        options = getattr(params.methods, name).model_dump()
        if method.learned:
            reconstruct = load_checkpoint(Path(args.models) / args.pipeline / name / "best.ckpt", name, geometry)
            chosen = {}
        else:
            reconstruct = method.build(operator, **options)
            n = settings.fit_items
            chosen = reconstruct.fit(torch.from_numpy(val.measurements[:n]), torch.from_numpy(val.images[:n]))
        estimate, seconds = reconstruct_timed(reconstruct, y, settings.batch_size)
        with torch.no_grad():
            phantom_estimate = reconstruct(y_phantom)
        results[name] = {
            **score(estimate, x),
            "seconds_per_image": seconds,
            "chosen": chosen,
            "shepp_logan": {k: v["mean"] for k, v in score(phantom_estimate, phantom).items()},
        }
        images[name] = estimate[: settings.report_items]
        print(f"{args.pipeline}/{name}: PSNR {results[name]['psnr']['mean']:.2f} dB, SSIM {results[name]['ssim']['mean']:.3f}")

    summary = {"pipeline": args.pipeline, "scale": params.scale, "test_items": int(x.shape[0]), "note": PSNR_NOTE, "methods": results}
    write_text_atomic(Path(args.metrics) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    reports = Path(args.reports) / args.pipeline
    write_text_atomic(reports / "metrics.md", markdown_table(summary))
    save_grid(reports / "grid.png", x[: settings.report_items], images)


def markdown_table(summary: dict) -> str:
    lines = [
        f"# {summary['pipeline']} — test split ({summary['test_items']} items, scale `{summary['scale']}`)",
        "",
        f"{summary['note']}; ± is one standard error over test items.",
        "",
        "| method | PSNR (dB) | SSIM | MSE | s / image | Shepp-Logan PSNR | chosen on val |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in summary["methods"].items():
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["chosen"].items())
        lines.append(
            f"| {name} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} | {r['ssim']['mean']:.3f} ± {r['ssim']['stderr']:.3f} "
            f"| {r['mse']['mean']:.2e} | {r['seconds_per_image']:.2e} | {r['shepp_logan']['psnr']:.2f} | {chosen} |"
        )
    return "\n".join(lines) + "\n"


def save_grid(path: Path, truth: torch.Tensor, images: dict[str, torch.Tensor]) -> None:
    """Rows: test items; columns: truth then each method, titled with its PSNR."""
    columns = [("truth", truth), *images.items()]
    rows = truth.shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(2 * len(columns), 2 * rows), squeeze=False)
    low, high = float(truth.min()), float(truth.max())
    for r in range(rows):
        for c, (name, batch) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(batch[r, 0].numpy(), cmap="gray", vmin=low, vmax=high)
            title = name if name == "truth" else f"{name} {float(psnr(batch[r:r+1], truth[r:r+1])):.1f} dB"
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    run_stage(main)
