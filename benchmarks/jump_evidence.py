"""The evidence log p(y | jumps) of the Poisson-jump prior's Gibbs reference:
in piece space (what the sampler uses) against the dense (m, m) form.

    python -m benchmarks.jump_evidence [--points 64] [--chains 32]

One JSON line: median milliseconds per batch of `chains` states for each
form, their ratio, the largest difference of the two log-likelihoods, and
the milliseconds of one whole sweep (a Gibbs update and a shift per gap,
then a draw) of those chains, side by side in one run.
"""

from __future__ import annotations

import argparse
import json

import torch

from recongap.operators import Integration
from recongap.posterior.jump_gibbs import JumpEvidence, run_jump_gibbs
from recongap.priors import PoissonJumpPrior

from .common import machine, median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--chains", type=int, default=32, help="chains evaluated together (8 items x 4 chains in the stage)")
    args = parser.parse_args()
    n, t = args.points, args.chains
    prior, op = PoissonJumpPrior(n, rate=5.0), Integration(n)
    g = torch.Generator().manual_seed(0)
    y = op(prior.render(prior.sample(t, g), n)) + 0.01 * torch.randn(t, 1, n, generator=g, dtype=torch.float64)
    evidence = JumpEvidence(prior, op, 0.01, y)
    jumps = prior.sample_jumps(t, g)
    pieces = median_seconds(lambda: evidence.log_likelihood(jumps), repeats=21)
    dense = median_seconds(lambda: evidence.log_likelihood_dense(jumps), repeats=21)
    sweep = median_seconds(lambda: run_jump_gibbs(evidence, jumps, 0, 1, g, lambda *_: None), repeats=5, warmup=1)
    difference = float((evidence.log_likelihood(jumps) - evidence.log_likelihood_dense(jumps)).abs().max())
    print(json.dumps({
        "benchmark": "jump_evidence", "points": n, "chains": t,
        "piece_space_ms": 1e3 * pieces, "dense_ms": 1e3 * dense, "dense_over_piece_space": dense / pieces,
        "max_abs_loglik_difference": difference, "sweep_ms": 1e3 * sweep, "machine": machine(),
    }))


if __name__ == "__main__":
    main()
