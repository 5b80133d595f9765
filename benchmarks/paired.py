"""Two methods of one pipeline compared item by item on its test split.

    python -m benchmarks.paired ellipses lgd lpd
    python -m benchmarks.paired ellipses postproc tv
    python -m benchmarks.paired gaussian_mixture lgd lmmse   # lmmse, exact_mean: the closed forms evaluate adds

The evaluate stage writes every pair of a pipeline's methods to its metrics
file (`comparisons`, verdicts on the per-item MSE); this tool scores two
methods again from any models folder (`--models`), for experiments with
models the pipeline did not train. Builds each method as the evaluate stage
does (learned: models/<pipeline>/<method>/best.ckpt; classical: parameters
chosen on the first `evaluate.fit_items` validation items) and prints one JSON
line: mean PSNR difference A - B, its standard error over items, on how many
items A wins, and the verdict on "A beats B" in PSNR (recongap.comparison).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from recongap.comparison import paired_difference, verdict
from recongap.config import load_catalogue, load_params
from recongap.datasets import read_split
from recongap.evaluation import reconstruct_timed, scoring_seed
from recongap.metrics import psnr
from recongap.operators import operator_from
from recongap.methods import closed_form_methods, data_context, registered_methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pipelines", default="pipelines.yaml")
    args = parser.parse_args()
    params, catalogue = load_params(args.params), load_catalogue(args.pipelines, args.pipeline)
    pipe = catalogue.pipelines[args.pipeline]
    data = Path(args.data) / args.pipeline
    test, val = read_split(data / "test.h5"), read_split(data / "val.h5")
    geometry = test.attrs["config"]["geometry"]  # the operator's description
    y, x = torch.from_numpy(test.measurements), torch.from_numpy(test.images)
    operator = operator_from(geometry)
    # the closed forms evaluate adds (lmmse, exact_mean) where the prior has one: cheap, so built first
    closed_forms = closed_form_methods(pipe.prior.build(test.attrs["config"]["size"]), operator, test.attrs["noise_std"], y)[1]
    classical = catalogue.classical_methods_for(args.pipeline)
    known = [*classical, *catalogue.trained_methods, *(name for name, _, _ in closed_forms)]
    for name in (args.a, args.b):
        if name not in known:
            parser.error(f"{args.pipelines}: {name!r} is not a method of {args.pipeline} ({known})")
    trained = [*classical, *catalogue.trained_methods]
    models = Path(args.models) / args.pipeline
    candidates = [
        *registered_methods(trained, lambda name: models / name / "best.ckpt", params, geometry, operator, val, context=data_context(data, test.attrs["noise_std"])),
        *closed_forms,
    ]
    per_item = {}
    for name, reconstruct, _ in candidates:
        if name in (args.a, args.b):
            torch.manual_seed(scoring_seed(name))  # cwgan draws z, as in evaluate
            estimate, _ = reconstruct_timed(reconstruct, y, params.evaluate.batch_size)
            per_item[name] = psnr(estimate, x)
    diff = paired_difference(per_item[args.a], per_item[args.b])
    print(json.dumps({
        "benchmark": "paired", "pipeline": args.pipeline, "a": args.a, "b": args.b, "items": diff["items"],
        "psnr_a": round(float(per_item[args.a].mean()), 3), "psnr_b": round(float(per_item[args.b].mean()), 3),
        "difference": round(diff["mean"], 3), "stderr": round(diff["stderr"], 3),
        "a_wins": int((per_item[args.a] > per_item[args.b]).sum()), "verdict": verdict(diff),
    }))


if __name__ == "__main__":
    main()
