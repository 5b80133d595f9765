"""Scoring reconstructions: per-method summaries with standard errors."""

from __future__ import annotations

import math
import time
from typing import Callable

import torch

from .metrics import mse, psnr, ssim

Reconstruct = Callable[[torch.Tensor], torch.Tensor]


def reconstruct_timed(method: Reconstruct, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, float]:
    """All reconstructions of y, and the wall seconds per image."""
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, y.shape[0], batch_size):
            out.append(method(y[i : i + batch_size]))
    return torch.cat(out), (time.perf_counter() - start) / y.shape[0]


def _mean_and_error(values: torch.Tensor) -> dict[str, float]:
    n = values.numel()
    se = float(values.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(values.mean()), "stderr": se}


def normalized_error(errors: torch.Tensor, bayes_mse: float) -> dict[str, dict[str, float]]:
    """Per-item MSEs against the Bayes MSE E||E[x|y] - x||^2: the normalized
    error MSE / Bayes MSE and the gap MSE - Bayes MSE, each with the standard
    error over items (a reference that is itself estimated adds its own)."""
    m = _mean_and_error(errors)
    return {
        "normalized_error": {"mean": m["mean"] / bayes_mse, "stderr": m["stderr"] / bayes_mse},
        "gap": {"mean": m["mean"] - bayes_mse, "stderr": m["stderr"]},
    }


def score(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean and standard error over items of PSNR, SSIM and MSE."""
    return {
        "psnr": _mean_and_error(psnr(estimate, truth)),
        "ssim": _mean_and_error(ssim(estimate, truth)),
        "mse": _mean_and_error(mse(estimate, truth)),
    }
