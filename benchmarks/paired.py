"""Two methods of one pipeline compared item by item on its test split.

    python -m benchmarks.paired ellipses lgd lpd
    python -m benchmarks.paired ellipses postproc tv
    python -m benchmarks.paired gaussian_mixture lgd lmmse   # lmmse, exact_mean: the closed forms evaluate adds

The metrics file gives each method's mean PSNR with its own standard error;
two methods scored on the same test items differ far less than those errors
suggest, so an ordering claim needs the paired difference. Builds each
method as the evaluate stage does (learned: models/<pipeline>/<method>/best.ckpt;
classical: parameters chosen on the first `evaluate.fit_items` validation
items) and prints one JSON line: mean PSNR difference A - B, its standard
error over items, and on how many items A wins.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from recongap.config import load_catalogue, load_params
from recongap.datasets import read_split
from recongap.evaluation import reconstruct_timed
from recongap.metrics import psnr
from recongap.operators import Geometry, RayTransform
from tasks.evaluate import closed_form_methods, method_instances


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
    geometry = Geometry(**test.attrs["config"]["geometry"])
    y, x = torch.from_numpy(test.measurements), torch.from_numpy(test.images)
    operator = RayTransform.from_geometry(geometry)
    # the closed forms evaluate adds (lmmse, exact_mean) where the prior has one: cheap, so built first
    closed_forms = closed_form_methods(pipe.prior.build(geometry.size), operator, test.attrs["noise_std"], y)[1]
    known = [*catalogue.classical_methods, *catalogue.trained_methods, *(name for name, _, _ in closed_forms)]
    for name in (args.a, args.b):
        if name not in known:
            parser.error(f"{args.pipelines}: {name!r} is not a method of {args.pipeline} ({known})")
    candidates = [*method_instances(args, params, catalogue, geometry, operator, val), *closed_forms]
    per_item = {}
    for name, reconstruct, _ in candidates:
        if name in (args.a, args.b):
            torch.manual_seed(0)  # cwgan draws z
            estimate, _ = reconstruct_timed(reconstruct, y, params.evaluate.batch_size)
            per_item[name] = psnr(estimate, x)
    diff = per_item[args.a] - per_item[args.b]
    print(json.dumps({
        "benchmark": "paired", "pipeline": args.pipeline, "a": args.a, "b": args.b, "items": len(diff),
        "psnr_a": round(float(per_item[args.a].mean()), 3), "psnr_b": round(float(per_item[args.b].mean()), 3),
        "difference": round(float(diff.mean()), 3),
        "stderr": round(float(diff.std() / math.sqrt(len(diff))), 3),
        "a_wins": int((diff > 0).sum()),
    }))


if __name__ == "__main__":
    main()
