"""DVC stage `evaluate`: every method of a pipeline on its test split.

    python -m tasks.evaluate PIPELINE

Writes metrics/PIPELINE.json (DVC metrics) and reports/PIPELINE/{metrics.md,
grid.png, gap.md, gap.png, METHOD_gallery.png}. The classical methods of the
pipeline's forward kind (FBP for CT, the first reconstruction elsewhere, TV)
get their parameters chosen on the validation split here; learned methods are
loaded from models/PIPELINE/METHOD/best.ckpt, the MCMC reference from
models/PIPELINE/reference, and a prior with an exact posterior adds its
closed forms (lmmse, exact_mean).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from recongap.comparison import pairwise
from recongap.datasets import read_split
from recongap.evaluation import phantom_case, score_methods, score_solved
from recongap.files import write_text_atomic
from recongap.gap import MCMCReference, add_mcmc_reference
from recongap.methods import closed_form_methods, data_context, registered_methods
from recongap.metrics import mse, psnr
from recongap.operators import operator_from
from recongap.reconstructors.cwgan import CWGANModule
from recongap.reports.gap import write_gap_reports
from recongap.reports.metrics import markdown_table, save_grid
from recongap.solved import SolvedItems
from recongap.uncertainty import assess_sampler

from . import tracking
from .common import load_configs, run_stage, stage_parser

PSNR_NOTE = "PSNR data range: max - min of each ground-truth image"


def main() -> None:
    parser = stage_parser("Evaluate every method of one pipeline.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--reports", default="reports")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    settings = params.evaluate
    data, models, reports = Path(args.data) / args.pipeline, Path(args.models) / args.pipeline, Path(args.reports) / args.pipeline
    test, val = read_split(data / "test.h5"), read_split(data / "val.h5")
    geometry = test.attrs["config"]["geometry"]  # the operator's description
    operator = operator_from(geometry)
    y, x = torch.from_numpy(test.measurements), torch.from_numpy(test.images)

    for name, why in catalogue.not_applicable(args.pipeline).items():
        print(f"{args.pipeline}/{name}: skipped, it {why}")
    candidates = list(registered_methods(
        [*catalogue.classical_methods_for(args.pipeline), *catalogue.trained_methods], lambda name: models / name / "best.ckpt",
        params, geometry, operator, val,
        missing=lambda name: f"run `dvc repro {tracking.train_stage(args.pipeline, name, catalogue.sampler_methods, catalogue.prior_models)}`",
        context=data_context(data, test.attrs["noise_std"]),
    ))
    pipe = catalogue.pipelines[args.pipeline]
    prior = pipe.prior.build(test.attrs["config"]["size"])
    exact, closed_forms, reference, variance = closed_form_methods(prior, operator, test.attrs["noise_std"], y)
    candidates += closed_forms
    phantom = phantom_case(operator, test.attrs["noise_std"])
    results, estimates = score_methods(
        candidates, y, x, settings.batch_size, phantom, variance,
        log=lambda line: print(f"{args.pipeline}/{line}"),
    )
    comparisons = pairwise({n: mse(e, x) for n, e in estimates.items()}, {n: psnr(e, x) for n, e in estimates.items()}, variance)
    subset = None
    if catalogue.solved_methods:  # scored on the first solve.items test items, which they alone solved
        n = min(params.solve.items_at(params.scale), x.shape[0])
        solved = {
            name: SolvedItems(models / name).read(n, f"dvc repro {'solve_generative' if name in catalogue.generative_methods else 'solve'}@{args.pipeline}-{name}")
            for name in catalogue.solved_methods
        }
        subset = score_solved(solved, x, phantom[0], variance, results, estimates, log=lambda line: print(f"{args.pipeline}/{line}"))
    if (models / "reference").exists():
        reference = add_mcmc_reference(results, estimates, reference, MCMCReference(models / "reference", x, params.reference), variance)
    for name, sampler, _ in candidates:  # posterior samplers (cwgan): calibration and gallery
        if isinstance(sampler, CWGANModule):
            options = getattr(params.methods, name)
            results[name]["calibration"] = assess_sampler(
                sampler.sample, y, x, options.samples, options.std_floor, settings.batch_size,
                models / "reference", reports / f"{name}_gallery.png", exact=exact,
            )
    summary = {
        "pipeline": args.pipeline, "scale": params.scale, "test_items": int(x.shape[0]), "note": PSNR_NOTE,
        "problem": {"forward": pipe.forward.kind, "prior": pipe.prior.name, **({"angles": pipe.forward.angles} if pipe.forward.kind == "ct" else {})},
        **({"phantom": "step signal"} if len(operator.domain_shape) == 1 else {}),
        "methods": results, "comparisons": comparisons, **({"subset_comparisons": subset} if subset else {}),
        **({"reference": reference} if reference else {}),
    }
    write_text_atomic(Path(args.metrics) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_text_atomic(reports / "metrics.md", markdown_table(summary))
    shown = min(settings.report_items, *(e.shape[0] for e in estimates.values()))  # per-item methods solved the first items only
    save_grid(reports / "grid.png", x[:shown], {n: e[:shown] for n, e in estimates.items()})
    if (models / "reference").exists():
        write_gap_reports(reports, summary)
    tracking.log_evaluation(args.pipeline, summary, reports)


if __name__ == "__main__":
    run_stage(main)
