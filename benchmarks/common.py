"""Shared helpers for benchmarks: timing and the machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import torch


def machine() -> dict:
    """What the figures were measured on."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, sync: bool = False) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` calls."""
    def run() -> float:
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(repeats))
