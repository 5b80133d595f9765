"""Validation PSNR of the generative regularisers at several Adam rates, the
other settings held: how far their fixed step budget gets.

    python -m benchmarks.generative_rate integration --items 8 --rates 0.05 0.2 0.5

Each of gen_range and gen_soft is built as its solve stage builds it (the
trained vae of models/PIPELINE/, params.yaml's iterations), set to one
middle setting of its grid (below), and solves the first `--items`
validation items at each rate (and `--iterations` steps, if given); one
JSON line per method and rate. This is
how params.yaml's `lr` of both was screened: a budget of `iterations` steps
that stops short shows as a PSNR that climbs with the rate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from recongap.config import load_params
from recongap.datasets import read_split
from recongap.methods import build_method, trained_model
from recongap.metrics import psnr
from recongap.operators import operator_from

from .common import machine

#: one setting of each method's grid, held while the rate varies
SETTINGS = {"gen_range": {"weight": 1.0}, "gen_soft": {"distance_std": 0.05, "latent_weight": 1.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    parser.add_argument("--iterations", type=int, help="Adam steps (default: params.yaml's)")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(1)

    params = load_params(args.params)
    val = read_split(Path(args.data) / args.pipeline / "val.h5")
    geometry = val.attrs["config"]["geometry"]
    operator, models = operator_from(geometry), Path(args.models) / args.pipeline
    y, x = torch.from_numpy(val.measurements[: args.items]), torch.from_numpy(val.images[: args.items])
    for name, settings in SETTINGS.items():
        method = build_method(
            name, params, operator, lambda need: trained_model(need, lambda n: models / n / "best.ckpt", geometry, lambda n: "train it first"),
            {"noise_std": lambda: val.attrs["noise_std"]},
        )
        method.choose(settings)
        method.iterations = args.iterations or method.iterations
        for rate in args.rates:
            method.lr = rate
            start = time.perf_counter()
            estimate = method.solve(y)
            print(json.dumps({
                "benchmark": "generative_rate", "pipeline": args.pipeline, "method": name, "settings": settings,
                "lr": rate, "iterations": method.iterations, "items": y.shape[0],
                "val_psnr": float(psnr(estimate, x).mean()), "seconds": time.perf_counter() - start,
                "scale": params.scale, "machine": machine(),
            }), flush=True)


if __name__ == "__main__":
    main()
