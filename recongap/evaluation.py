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


def score(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean and standard error over items of PSNR, SSIM and MSE."""
    return {
        "psnr": _mean_and_error(psnr(estimate, truth)),
        "ssim": _mean_and_error(ssim(estimate, truth)),
        "mse": _mean_and_error(mse(estimate, truth)),
    }
