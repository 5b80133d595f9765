"""Forward and adjoint throughput of every operator, side by side.

    python -m benchmarks.operators            # CPU: 128x128, 30 angles, batch 64
    python -m benchmarks.operators --repeats 3
    python -m benchmarks.operators --only kinds

Prints one JSON line: images/s per RayTransform backend and direction, and
each backend's ratio to ASTRA; then (`kinds`) every other forward problem at
64x64 (integration: 256 points), batch 64, against the obvious alternative:
single-pixel and integration against multiplying by their dense matrix, MRI
and blur against numpy's FFT. With a GPU it adds ASTRA CUDA vs the torch
backend on the GPU at 256x256, 256 angles, batch 128, and the kinds there.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from recongap.operators import BACKENDS, Blur, Integration, LinearOperator, RayTransform, SinglePixel, UndersampledFourier

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


def _dense(op: LinearOperator, device: str) -> torch.Tensor:
    """A as a dense (n_range, n_domain) float32 matrix on `device`."""
    n = int(np.prod(op.domain_shape))
    basis = torch.eye(n, dtype=torch.float32).reshape(n, 1, *op.domain_shape)
    return op(basis).reshape(n, -1).T.contiguous().to(device)


def _numpy_fft(op: LinearOperator):
    """The same forward map through numpy's FFT, on the CPU."""
    if isinstance(op, UndersampledFourier):
        kept = op.kept_indices.numpy()

        def forward(x: torch.Tensor) -> np.ndarray:
            k = np.fft.fft2(x.numpy().reshape(-1, op.size, op.size), norm="ortho").reshape(x.shape[0], -1)[:, kept]
            return np.concatenate([k.real, k.imag], axis=1)

        return forward
    transfer = op.transfer.numpy()
    return lambda x: np.fft.ifft2(np.fft.fft2(x.numpy().reshape(-1, op.size, op.size)) * transfer).real


def kinds(device: str, repeats: int) -> dict:
    """images/s forward and adjoint of each kind, and forward against its alternative."""
    operators = {
        "single_pixel (64x64, M=333)": (SinglePixel(64, 333), "dense matrix"),
        "mri (64x64, cartesian x4)": (UndersampledFourier.cartesian(64, 4), "numpy fft"),
        "blur (64x64, gaussian std 2)": (Blur.gaussian(64, 2.0), "numpy fft"),
        "integration (256 points)": (Integration(256), "dense matrix"),
    }
    sync, batch, out = device == "cuda", 64, {}
    for name, (op, alternative) in operators.items():
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 1, *op.domain_shape, generator=gen).to(device)
        with torch.no_grad():
            y = op(x)
            forward = batch / median_seconds(lambda: op(x), repeats, sync=sync)
            adjoint = batch / median_seconds(lambda: op.adjoint(y), repeats, sync=sync)
            if alternative == "dense matrix":
                a, flat = _dense(op, device), x.reshape(batch, -1)
                other = batch / median_seconds(lambda: flat @ a.T, repeats, sync=sync)
            elif device == "cpu":
                numpy_forward = _numpy_fft(op)
                other = batch / median_seconds(lambda: numpy_forward(x), repeats)
            else:
                other = None  # numpy's FFT runs on the CPU only
        out[name] = {
            "forward": round(forward, 1), "adjoint": round(adjoint, 1),
            alternative: None if other is None else round(other, 1),
            "forward_over_" + alternative.replace(" ", "_"): None if other is None else round(forward / other, 2),
        }
    return {"batch": batch, "device": device, "images_per_s": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", choices=("ct", "kinds"), help="the ray transform's backends, or the other kinds; default both")
    args = parser.parse_args()
    result: dict = {"benchmark": "operators", "machine": machine()}
    if args.only != "kinds":
        result["cpu"] = throughput(128, 30, 64, "cpu", args.repeats)
        if torch.cuda.is_available():
            result["gpu"] = throughput(256, 256, 128, "cuda", args.repeats)
    if args.only != "ct":
        result["kinds"] = {"cpu": kinds("cpu", args.repeats)}
        if torch.cuda.is_available():
            result["kinds"]["cuda"] = kinds("cuda", args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
