"""Cost of the block sampler's moves against the number of chains batched together.

    python -m benchmarks.blocks                       # 64x64, mean_count 50, 2 to 32 items x 4 chains

Items are drawn from the ellipse prior and simulated like the `ellipses`
pipeline (30 parallel angles, noise 5% of mean |A x|); every chain starts at
its item's truth. Prints one JSON line: per batch size the median seconds
of one sweep (every used slot moved once), one birth/death move, and the
Gauss-Newton kernel, and the sweep's cost per chain.
"""

from __future__ import annotations

import argparse
import json

import torch

from recongap.datasets.simulate import calibrate_noise_std, clean_measurements, generator_for
from recongap.operators import RayTransform
from recongap.operators.backends import system_matrix
from recongap.posterior.ellipse_blocks import EllipseBlockSampler
from recongap.priors import EllipsePrior

from .common import machine, median_seconds


def run(size: int, items_list: list[int], chains: int, repeats: int) -> list[dict]:
    prior = EllipsePrior()
    op = RayTransform(size, angles=30)
    cpu = torch.device("cpu")
    noise_std = calibrate_noise_std(prior, size, op, 0.05, 64, generator_for(0, "calibration"), cpu)
    matrix = system_matrix(op.geometry)
    rows = []
    for items in items_list:
        gen = generator_for(0, "benchmark")
        params = prior.sample(items, gen)
        _, clean = clean_measurements(prior, params, size, op, cpu)
        y = clean.double().flatten(1) + noise_std * torch.randn(items, clean[0].numel(), generator=gen, dtype=torch.float64)
        sampler = EllipseBlockSampler(prior, matrix, size, noise_std, y.repeat_interleave(chains, 0))
        start = params.repeat_interleave(chains, 0)
        kernel_seconds = median_seconds(lambda: sampler.kernel(start), repeats=1, warmup=0)
        kernel = sampler.kernel(start)
        state = sampler.state(start)
        moves = torch.Generator().manual_seed(1)
        sweep = median_seconds(lambda: sampler.sweep(state, kernel, moves), repeats=repeats, warmup=1)
        birth_death = median_seconds(lambda: sampler.birth_death(state, moves), repeats=5 * repeats, warmup=1)
        t = items * chains
        rows.append({
            "items": items, "chains": t, "sweep_seconds": round(sweep, 4), "sweep_ms_per_chain": round(1000 * sweep / t, 2),
            "birth_death_seconds": round(birth_death, 4), "kernel_seconds": round(kernel_seconds, 3),
            "used_slots_mean": round(float((params[..., 0] != 0).sum(1).double().mean()), 1),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--items", type=int, nargs="+", default=[2, 8, 16, 32])
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "blocks", "machine": machine(), "size": args.size,
                      "batches": run(args.size, args.items, args.chains, args.repeats)}))


if __name__ == "__main__":
    main()
