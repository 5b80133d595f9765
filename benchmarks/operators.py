"""Forward and adjoint throughput of every RayTransform backend, side by side.

    python -m benchmarks.operators            # CPU: 128x128, 30 angles, batch 64
    python -m benchmarks.operators --repeats 3

Prints one JSON line: images/s per backend and direction, and each backend's
ratio to ASTRA. With a GPU it adds ASTRA CUDA vs the torch backend on the GPU
at 256x256, 256 angles, batch 128.
"""

from __future__ import annotations

import argparse
import json

import torch

from recongap.operators import BACKENDS, RayTransform

from .common import machine, median_seconds


def throughput(size: int, angles: int, batch: int, device: str, repeats: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, size, size, generator=gen).to(device)
    out: dict[str, dict[str, float]] = {}
    for name in BACKENDS:
        op = RayTransform(size, angles=angles, backend=name)
        y = op(x)  # builds caches before timing
        sync = device == "cuda"
        with torch.no_grad():
            out[name] = {
                "forward": batch / median_seconds(lambda: op(x), repeats, sync=sync),
                "adjoint": batch / median_seconds(lambda: op.adjoint(y), repeats, sync=sync),
            }
    ratios = {
        name: {d: out[name][d] / out["astra"][d] for d in ("forward", "adjoint")} for name in out if name != "astra"
    }
    return {
        "setting": {"size": size, "angles": angles, "batch": batch, "geometry": "parallel", "device": device},
        "images_per_s": {k: {d: round(v, 1) for d, v in dv.items()} for k, dv in out.items()},
        "ratio_to_astra": {k: {d: round(v, 2) for d, v in dv.items()} for k, dv in ratios.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = {"benchmark": "operators", "machine": machine(), "cpu": throughput(128, 30, 64, "cpu", args.repeats)}
    if torch.cuda.is_available():
        result["gpu"] = throughput(256, 256, 128, "cuda", args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
