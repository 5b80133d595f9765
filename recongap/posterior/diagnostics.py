"""Convergence diagnostics of MCMC traces: rank-normalised split R-hat and
bulk ESS (Vehtari et al. 2021), computed by ArviZ."""

from __future__ import annotations

import math
from typing import Collection, Mapping

import arviz
import numpy as np


def _as_chains_by_draws(trace: np.ndarray, name: str) -> np.ndarray:
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 2 or trace.shape[0] < 2 or trace.shape[1] < 4:
        raise ValueError(f"trace {name!r} must be (chains >= 2, draws >= 4), got shape {trace.shape}")
    return trace


def summarize(traces: Mapping[str, np.ndarray], must_move: Collection[str] = ()) -> dict[str, dict[str, float]]:
    """{name: {"rhat", "ess", "mean", "mcse"}} for (chains, draws) traces of scalar summaries.

    A trace constant over every chain and draw counts as agreeing (R-hat 1),
    unless its name is in `must_move`: there it means the chains never left
    their start (the distance to a truth they started at), which is
    unconverged (R-hat inf, ESS 0)."""
    out: dict[str, dict[str, float]] = {}
    for name, trace in traces.items():
        trace = _as_chains_by_draws(trace, name)
        if np.ptp(trace) == 0 and name in must_move:
            out[name] = {"rhat": math.inf, "ess": 0.0, "mean": float(trace.flat[0]), "mcse": math.nan}
            continue
        if np.ptp(trace) == 0:
            # every chain sat on one value (e.g. an empty image): they agree
            # exactly and the mean has no Monte-Carlo error; ArviZ gives NaN here
            out[name] = {"rhat": 1.0, "ess": float(trace.size), "mean": float(trace.flat[0]), "mcse": 0.0}
            continue
        with np.errstate(divide="ignore", invalid="ignore"):  # handled just below
            rhat = float(arviz.rhat(trace, method="rank"))
            ess = float(arviz.ess(trace, method="bulk"))
        out[name] = {
            # a chain stuck on one value while others move gives NaN: unconverged
            "rhat": rhat if np.isfinite(rhat) else math.inf,
            "ess": ess if np.isfinite(ess) else 0.0,
            "mean": float(trace.mean()),
            "mcse": float(arviz.mcse(trace, method="mean")),
        }
    return out


def is_converged(diagnostics: Mapping, rhat_max: float = 1.01, ess_min: float = 100.0) -> bool:
    """True when every summary has R-hat <= rhat_max and bulk ESS >= ess_min.

    Takes a ReferenceResult's diagnostics dict (its "rhat_max" and "ess_min",
    the worst over its summaries). A NaN (e.g. a constant trace) is not converged.
    """
    for key in ("rhat_max", "ess_min"):
        if key not in diagnostics:
            raise ValueError(f"diagnostics lack {key!r}; got keys {sorted(diagnostics)}")
    rhat, ess = float(diagnostics["rhat_max"]), float(diagnostics["ess_min"])
    return bool(np.isfinite(rhat) and np.isfinite(ess) and rhat <= rhat_max and ess >= ess_min)
