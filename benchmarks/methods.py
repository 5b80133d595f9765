"""Seconds per image of every method of a pipeline, side by side in one process.

    python -m benchmarks.methods ellipses --items 2

Each method is built as the evaluate stage builds it (classical ones with
their settings chosen on validation, trained ones from models/PIPELINE/,
per-measurement ones at the settings their solve stage chose, read from
models/PIPELINE/METHOD/chosen.json), then reconstructs the same first
`--items` test items one at a time; the median over items of the wall time
per image is printed, one JSON line per method. Batched methods are timed on
one item at a time too, so every figure is the cost of one image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from recongap.config import load_catalogue, load_params
from recongap.datasets import read_split
from recongap.methods import build_method, closed_form_methods, data_context, registered_methods, trained_model
from recongap.operators import operator_from
from recongap.solved import SolvedItems

from .common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--items", type=int, default=2)
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pipelines", default="pipelines.yaml")
    args = parser.parse_args()
    torch.set_num_threads(1)

    params, catalogue = load_params(args.params), load_catalogue(args.pipelines, args.pipeline)
    data, models = Path(args.data) / args.pipeline, Path(args.models) / args.pipeline
    test, val = read_split(data / "test.h5"), read_split(data / "val.h5")
    geometry = test.attrs["config"]["geometry"]
    operator = operator_from(geometry)
    checkpoints = lambda name: models / name / "best.ckpt"  # noqa: E731
    methods = list(registered_methods(
        [*catalogue.classical_methods_for(args.pipeline), *catalogue.trained_methods], checkpoints, params, geometry, operator, val,
        context=data_context(data, test.attrs["noise_std"]),
    ))
    prior = catalogue.pipelines[args.pipeline].prior.build(test.attrs["config"]["size"])
    methods += closed_form_methods(prior, operator, test.attrs["noise_std"], torch.from_numpy(test.measurements[:1]))[1]
    for name in catalogue.solved_methods:
        method = build_method(
            name, params, operator, lambda need: trained_model(need, checkpoints, geometry, lambda n: "train it first"),
            {"noise_std": lambda: test.attrs["noise_std"]},
        )
        chosen = SolvedItems(models / name).chosen()
        if chosen is None:
            parser.error(f"{models / name}: no settings chosen yet (run the solve stage of {args.pipeline}-{name} first)")
        method.choose(chosen)
        methods.append((name, method.solve, {}))

    y = torch.from_numpy(test.measurements[: args.items])
    for name, reconstruct, _ in methods:
        times = []
        for i in range(y.shape[0]):
            start = time.perf_counter()
            with torch.no_grad():  # the per-measurement methods enable gradients for their fits
                reconstruct(y[i : i + 1])
            times.append(time.perf_counter() - start)
        print(json.dumps({
            "benchmark": "methods", "pipeline": args.pipeline, "method": name, "items": len(times),
            "seconds_per_image": statistics.median(times), "scale": params.scale, "machine": machine(),
        }), flush=True)


if __name__ == "__main__":
    main()
