"""Cost of the exact MCMC reference on the ellipses prior: ESS/s, wall time per item, R-hat.

    python -m benchmarks.reference                                 # 64x64, mean_count 50, 2 items
    python -m benchmarks.reference --mean-count 5 --slots 20 --warmup 100 --draws 200
    python -m benchmarks.reference --start truth                   # chains from the true parameters
    python -m benchmarks.reference --start truth --sampler blocks  # one ellipse at a time; a draw is one sweep

Data are simulated like the `ellipses` pipeline (30 parallel angles, noise
5% of mean |A x| over a calibration sample), then sample_reference runs with
the given budget. Prints one JSON line: per item the wall seconds (its share
of the batched run), R-hat max, bulk ESS min, ESS/s and acceptance, and
whether it converged (R-hat <= 1.01, ESS >= 100); which summary is worst, and each one's ESS; the
posterior mean's PSNR; and, from the truth, both Bayes-error estimates.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from recongap.datasets.simulate import calibrate_noise_std, clean_measurements, generator_for, measurement_operator
from recongap.operators import RayTransform
from recongap.posterior import ReferenceSettings, is_converged, sample_reference
from recongap.priors import EllipsePrior

from .common import machine


def run(size: int, mean_count: float, slots: int, items: int, settings: ReferenceSettings, grid_factor: int) -> dict:
    prior = EllipsePrior(mean_count=mean_count, slots=slots)
    op = RayTransform(size, angles=30)
    measure = measurement_operator(op, grid_factor)
    cpu = torch.device("cpu")
    noise_std = calibrate_noise_std(prior, size, measure, 0.05, 64, generator_for(0, "calibration"), cpu)
    gen = generator_for(0, "benchmark")
    params = prior.sample(items, gen)
    x, clean = clean_measurements(prior, params, size, measure, cpu)
    y = clean.double() + noise_std * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
    start = time.perf_counter()
    results = sample_reference(
        prior, op, noise_std, y, settings, truth=x.double(), measurement_grid_factor=grid_factor, truth_params=params
    )
    wall = time.perf_counter() - start

    def psnr(estimate: torch.Tensor, truth: torch.Tensor) -> float:
        mse = float(((estimate.double() - truth.double()) ** 2).mean())
        return round(10 * math.log10(float(truth.max() - truth.min()) ** 2 / mse), 2)

    def worst(summaries: dict, key: str, pick) -> str:
        return pick(summaries, key=lambda name: summaries[name][key])

    per_item = [
        {
            "true_count": int((params[b, :, 0] != 0).sum()),
            "psnr_mean": psnr(r.mean, x[b : b + 1]),
            "worst_rhat": worst(r.diagnostics["summaries"], "rhat", max),
            "worst_ess": worst(r.diagnostics["summaries"], "ess", min),
            "ess_by_summary": {name: round(v["ess"], 1) for name, v in r.diagnostics["summaries"].items()},
            "bayes_mse": {k: float(f"{v:.4g}") for k, v in r.diagnostics.get("bayes_mse", {}).items()},
            "probe": r.diagnostics.get("probe"),
            "seconds": round(r.diagnostics["seconds"], 2),
            "rhat_max": round(r.diagnostics["rhat_max"], 4),
            "ess_min": round(r.diagnostics["ess_min"], 1),
            "ess_per_second": round(r.diagnostics["ess_per_second"], 3),
            "acceptance": {k: round(v, 3) for k, v in r.diagnostics["acceptance"].items()},
            "converged": is_converged(r.diagnostics),
        }
        for b, r in enumerate(results)
    ]
    return {
        "setting": {"size": size, "mean_count": mean_count, "slots": slots, "items": items, "angles": 30,
                    "measurement_grid_factor": grid_factor, "noise_std": noise_std, **vars(settings)},
        "wall_seconds": round(wall, 2),
        "items": per_item,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--mean-count", type=float, default=50.0)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--items", type=int, default=2)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--thin", type=int, default=5)
    parser.add_argument("--leapfrog-steps", type=int, default=5)
    parser.add_argument("--grid-factor", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperatures", type=int, default=1, help="replicas per chain (parallel tempering); 1: off")
    parser.add_argument("--beta-min", type=float, default=1e-3, help="likelihood exponent of the hottest replica")
    parser.add_argument("--start", choices=("prior", "truth"), default="prior", help="where the chains start")
    parser.add_argument("--render-dtype", choices=("float32", "float64"), default="float64")
    parser.add_argument("--mass", choices=("pilot", "gauss_newton"), default="pilot", help="how the diagonal mass is chosen")
    parser.add_argument("--sampler", choices=("hmc", "blocks"), default="hmc", help="blocks: one ellipse at a time (start=truth)")
    parser.add_argument("--birth-death-moves", type=int, default=1, help="sampler=blocks: birth/death moves per sweep")
    parser.add_argument("--intensity-moves", type=int, default=0, help="sampler=blocks: joint intensity moves per sweep")
    parser.add_argument("--probe-chains", type=int, default=0, help="start=truth: chains per item from prior draws")
    args = parser.parse_args()
    settings = ReferenceSettings(chains=args.chains, warmup=args.warmup, draws=args.draws, thin=args.thin,
                                 leapfrog_steps=args.leapfrog_steps, seed=args.seed,
                                 temperatures=args.temperatures, beta_min=args.beta_min, start=args.start,
                                 render_dtype=args.render_dtype, probe_chains=args.probe_chains, mass=args.mass,
                                 sampler=args.sampler, birth_death_moves=args.birth_death_moves,
                                 intensity_moves=args.intensity_moves)
    result = {"benchmark": "reference", "machine": machine(),
              "ellipses": run(args.size, args.mean_count, args.slots, args.items, settings, args.grid_factor)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
