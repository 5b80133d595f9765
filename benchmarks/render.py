"""Where the MCMC reference's time goes: one potential and gradient of 8
chains on the laptop `ellipses` posterior (64x64, about 50 ellipses each),
split into rendering, projecting and differentiating, and the rendering
gradient by autograd against the hand-written backward, side by side.

    python -m benchmarks.render [--size 64] [--rows 8] [--repeats 5]

Prints one JSON line: median seconds of each piece and the ratio
autograd / hand-written for render + backward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import torch

from recongap.datasets.simulate import calibrate_noise_std, clean_measurements, generator_for
from recongap.operators import RayTransform
from recongap.posterior.mcmc import potential_and_grad
from recongap.posterior.reference import _Target
from recongap.priors import EllipsePrior
from recongap.priors.ellipses import _render_forward

from .common import machine


def median_seconds(f: Callable[[], object], repeats: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rows", type=int, default=8, help="chains x items evaluated together")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    prior, op, cpu = EllipsePrior(), RayTransform(args.size, angles=30), torch.device("cpu")
    noise_std = calibrate_noise_std(prior, args.size, op, 0.05, 64, generator_for(0, "calibration"), cpu)
    gen = generator_for(0, "benchmark")
    params = prior.sample(args.rows, gen)
    x, clean = clean_measurements(prior, params, args.size, op, cpu)
    y = clean.double() + noise_std * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    target = _Target(prior, args.size, op, noise_std, y)
    q = params.reshape(args.rows, -1).double()
    image = prior.render(params, args.size)

    def backward(render: Callable) -> Callable[[], None]:
        def run() -> None:
            p = params.clone().requires_grad_(True)
            render(p).sum().backward()
        return run

    timings = {
        "render": median_seconds(lambda: prior.render(params, args.size), args.repeats),
        "render_full_grid": median_seconds(lambda: _render_forward(params, args.size, prior.supersample), args.repeats),
        "project": median_seconds(lambda: op(image), args.repeats),
        "potential": median_seconds(lambda: target.potential(q), args.repeats),
        "potential_and_grad": median_seconds(lambda: potential_and_grad(target.potential, q), args.repeats),
        "render_and_backward_handwritten": median_seconds(backward(lambda p: prior.render(p, args.size)), args.repeats),
        "render_and_backward_autograd": median_seconds(backward(lambda p: _render_forward(p, args.size, prior.supersample)), args.repeats),
        "render_and_backward_handwritten_float32": median_seconds(backward(lambda p: prior.render(p.float(), args.size)), args.repeats),
        "potential_and_grad_float32": median_seconds(
            lambda: potential_and_grad(_Target(prior, args.size, op, noise_std, y, render_dtype=torch.float32).potential, q), args.repeats
        ),
    }
    float32 = _Target(prior, args.size, op, noise_std, y, render_dtype=torch.float32)
    loglik_error = float((float32.log_likelihood(q) - target.log_likelihood(q)).abs().max())
    result = {
        "benchmark": "render",
        "machine": machine(),
        "setting": {"size": args.size, "rows": args.rows, "mean_count": prior.mean_count,
                    "ellipses": (params[..., 0] != 0).sum(1).tolist(), "angles": 30},
        "seconds": {k: round(v, 5) for k, v in timings.items()},
        "loglik_float32_minus_float64_at_truth_max": float(f"{loglik_error:.3g}"),
        "autograd_over_handwritten": round(timings["render_and_backward_autograd"] / timings["render_and_backward_handwritten"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
