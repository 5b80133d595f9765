"""DVC stage `evaluate`: every method of a pipeline on its test split.

    python -m tasks.evaluate PIPELINE

Writes metrics/PIPELINE.json (DVC metrics) and reports/PIPELINE/{grid.png,
metrics.md}. FBP and TV parameters are chosen on the validation split here;
learned methods are loaded from models/PIPELINE/METHOD/best.ckpt.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from matplotlib.figure import Figure

from recongap.datasets import DataError, derived_seed, read_split
from recongap.evaluation import normalized_error, reconstruct_timed, score
from recongap.files import atomic_path, write_text_atomic
from recongap.metrics import mse, psnr
from recongap.posterior import GaussianPosterior, closed_form_posterior
from recongap.operators import Geometry, RayTransform
from recongap.priors import shepp_logan
from recongap.reconstructors import get_method
from recongap.reconstructors.cwgan import CWGANModule
from recongap.reconstructors.lightning import load_checkpoint
from recongap.uncertainty import assess_sampler

from . import tracking
from .common import load_configs, run_stage, stage_parser
from .gap import MCMCReference, add_mcmc_reference, marked, write_gap_reports

PSNR_NOTE = "PSNR data range: max - min of each ground-truth image"


def main() -> None:
    parser = stage_parser("Evaluate every method of one pipeline.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    pipe = catalogue.pipelines[args.pipeline]
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

    results, images, estimates = {}, {}, {}
    reference = None
    candidates = list(method_instances(args, params, catalogue, geometry, operator, val))
    exact, closed_forms, reference, variance = closed_form_methods(pipe.prior.build(geometry.size), operator, test.attrs["noise_std"], y)
    candidates += closed_forms
    for name, reconstruct, chosen in candidates:
        torch.manual_seed(derived_seed(0, f"evaluate-{name}"))  # cwgan draws z: same metrics on every run
        estimate, seconds = reconstruct_timed(reconstruct, y, settings.batch_size)
        with torch.no_grad():
            phantom_estimate = reconstruct(y_phantom)
        results[name] = {
            **score(estimate, x),
            "seconds_per_image": seconds,
            "chosen": chosen,
            "shepp_logan": {k: v["mean"] for k, v in score(phantom_estimate, phantom).items()},
        }
        if reference:
            results[name].update(normalized_error(mse(estimate, x), reference["bayes_mse"]))
        images[name] = estimate[: settings.report_items]
        estimates[name] = estimate
        print(f"{args.pipeline}/{name}: PSNR {results[name]['psnr']['mean']:.2f} dB, SSIM {results[name]['ssim']['mean']:.3f}")

    reference_dir = Path(args.models) / args.pipeline / "reference"
    if reference_dir.exists():
        reference = add_mcmc_reference(results, estimates, reference, MCMCReference(reference_dir, x, params.reference), variance)

    samplers = {name: r for name, r, _ in candidates if isinstance(r, CWGANModule)}
    for name, sampler in samplers.items():  # posterior samplers (cwgan): calibration and gallery
        options = getattr(params.methods, name)
        results[name]["calibration"] = assess_sampler(
            sampler.sample, y, x, options.samples, options.std_floor, settings.batch_size,
            Path(args.models) / args.pipeline / "reference", Path(args.reports) / args.pipeline / f"{name}_gallery.png",
            exact=exact,
        )
    summary = {"pipeline": args.pipeline, "scale": params.scale, "test_items": int(x.shape[0]), "note": PSNR_NOTE, "methods": results}
    if reference:
        summary["reference"] = reference
    write_text_atomic(Path(args.metrics) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    reports = Path(args.reports) / args.pipeline
    write_text_atomic(reports / "metrics.md", markdown_table(summary))
    save_grid(reports / "grid.png", x[: settings.report_items], images)
    if reference_dir.exists():
        write_gap_reports(reports, summary)
    tracking.log_evaluation(args.pipeline, summary, reports)


def closed_form_methods(prior, operator, noise_std: float, y: torch.Tensor):
    """For a prior with an exact posterior: (that posterior, the methods it adds
    as (name, reconstruct, {}), the `reference` entry, the exact posterior
    variance per test item or None); (None, [], None, None) otherwise.
    Gaussian field: the exact posterior mean, linear, is `lmmse`. Mixture: the
    exact mean (nonlinear in y) is `exact_mean`, and `lmmse` the best linear
    estimator from the prior's overall mean and covariance; the Bayes MSE is
    the exact posterior variance averaged over the test items."""
    exact = closed_form_posterior(prior, operator, noise_std)
    if isinstance(exact, GaussianPosterior):
        return exact, [("lmmse", exact, {})], {"kind": "closed_form", "bayes_mse": exact.bayes_mse()}, None
    if exact is None:
        return None, [], None, None
    variance = exact.pixel_variance(y.double()).flatten(1).mean(1)
    reference = {"kind": "closed_form", "bayes_mse": float(variance.mean()), "bayes_mse_stderr": float(variance.std() / variance.numel() ** 0.5)}
    return exact, [("exact_mean", exact, {}), ("lmmse", GaussianPosterior(prior, operator, noise_std), {})], reference, variance


def method_instances(args, params, catalogue, geometry, operator, val):
    """(name, reconstruct, parameters chosen on val) for every registered method."""
    for name in [*catalogue.classical_methods, *catalogue.trained_methods]:
        method = get_method(name)
        if method.learned:
            checkpoint = Path(args.models) / args.pipeline / name / "best.ckpt"
            if not checkpoint.exists():
                stage = tracking.train_stage(args.pipeline, name, catalogue.sampler_methods)
                raise DataError(f"{checkpoint}: no trained model (run `dvc repro {stage}`)")
            yield name, load_checkpoint(checkpoint, name, geometry), {}
        else:
            reconstruct = method.build(operator, **getattr(params.methods, name).model_dump())
            n = params.evaluate.fit_items
            chosen = reconstruct.fit(torch.from_numpy(val.measurements[:n]), torch.from_numpy(val.images[:n]))
            yield name, reconstruct, chosen


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
        f"| method | PSNR (dB) | SSIM | MSE |{gap_head} s / image | Shepp-Logan PSNR | chosen on val |",
        f"| --- | --- | --- | --- |{gap_rule} --- | --- | --- |",
    ]
    for name, r in summary["methods"].items():
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["chosen"].items())
        gap = f" {marked(r['normalized_error'])} |" if reference else ""
        lines.append(
            f"| {name} | {r['psnr']['mean']:.2f} ± {r['psnr']['stderr']:.2f} | {r['ssim']['mean']:.3f} ± {r['ssim']['stderr']:.3f} "
            f"| {r['mse']['mean']:.2e} |{gap} {r['seconds_per_image']:.2e} | {_shepp_logan(r)} | {chosen} |"
        )
    return "\n".join(lines) + "\n"


def _shepp_logan(result: dict) -> str:
    psnr_db = result["shepp_logan"].get("psnr")
    return "—" if psnr_db is None else f"{psnr_db:.2f}"


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
            ax.imshow(batch[r, 0].numpy(), cmap="gray", vmin=low, vmax=high)
            title = name if name == "truth" else f"{name} {float(psnr(batch[r:r+1], truth[r:r+1])):.1f} dB"
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


if __name__ == "__main__":
    run_stage(main)
