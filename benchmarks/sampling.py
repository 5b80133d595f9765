"""Posterior sampling time of the conditional WGAN: K samples per test item.

    python -m benchmarks.sampling                 # laptop scale: 64x64, K from params.yaml
    python -m benchmarks.sampling --size 128 --samples 100

Prints one JSON line: seconds per test item to draw K samples (FBP of y,
then K generator passes), with an untrained generator of the sizes in
params.yaml `methods.cwgan` (the time does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json

import torch

from recongap.config import load_params
from recongap.operators import RayTransform
from recongap.reconstructors.cwgan import CWGANModule

from .common import machine, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--items", type=int, default=8, help="test items per timed call")
    parser.add_argument("--samples", type=int, default=None, help="K (default: params.yaml methods.cwgan.samples)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    options = load_params().methods.cwgan.model_dump()
    k = args.samples or options["samples"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    op = RayTransform(args.size, angles=30)
    module = CWGANModule("cwgan", op.geometry.resolved(), options).eval().to(device)
    x = torch.rand(args.items, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    y = op(x).to(device)

    def draw() -> None:
        with torch.no_grad():
            module.sample(y, k, torch.Generator().manual_seed(0))

    seconds = median_seconds(draw, args.repeats, warmup=1, sync=device == "cuda")
    print(json.dumps({
        "benchmark": "sampling",
        "machine": machine(),
        "setting": {"method": "cwgan", "size": args.size, "angles": 30, "items": args.items, "samples": k, "device": device},
        "seconds_per_item": round(seconds / args.items, 4),
    }))


if __name__ == "__main__":
    main()
