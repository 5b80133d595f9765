"""Training throughput of the learned methods, side by side.

    python -m benchmarks.training                 # laptop scale: 64x64, batch 32
    python -m benchmarks.training --size 128      # paper scale

Prints one JSON line: optimiser steps/s (forward, backward, Adam step) per
method with the network hyper-parameters of params.yaml, on random data.
"""

from __future__ import annotations

import argparse
import json

import torch

from recongap.config import load_params
from recongap.operators import RayTransform
from recongap.reconstructors import build_network

from .common import machine, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["postproc", "lgd", "lpd"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    params = load_params()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    op = RayTransform(args.size, angles=30)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 1, args.size, args.size, generator=gen).to(device)
    y = op(x)
    steps = {}
    for name in args.methods:
        net = build_network(name, op, **getattr(params.methods, name).model_dump()).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad()
            ((net(y) - x) ** 2).mean().backward()
            opt.step()

        steps[name] = round(1.0 / median_seconds(step, args.repeats, warmup=1, sync=device == "cuda"), 3)
    print(json.dumps({
        "benchmark": "training",
        "machine": machine(),
        "setting": {"size": args.size, "angles": 30, "batch": args.batch, "device": device},
        "steps_per_s": steps,
    }))


if __name__ == "__main__":
    main()
