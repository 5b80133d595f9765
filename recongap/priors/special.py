"""Special functions the prior densities need that torch lacks."""

from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch

_EULER_GAMMA = 0.5772156649015329


def log_exp1(z: torch.Tensor, terms: int = 40) -> torch.Tensor:
    """log E1(z) for z > 0, differentiable, on any device.

    torch has no exponential integral; scipy's is not differentiable and not
    on the GPU. Power series for z <= 2, continued fraction (evaluated
    backwards at a fixed depth) above; both reach float64 round-off there.
    On the CPU without a gradient it calls scipy's E1 instead (about 20x
    faster on the few values a block move of the MCMC reference needs),
    where E1 does not underflow.
    """
    if z.device.type == "cpu" and not (z.requires_grad and torch.is_grad_enabled()) and z.dtype == torch.float64:
        values = z.detach().numpy()
        if values.size and np.all(values <= 700):
            with np.errstate(divide="ignore"):
                return torch.as_tensor(np.log(scipy.special.exp1(values)), dtype=torch.float64)
    small = z <= 2
    zs = torch.where(small, z, torch.ones_like(z)).clamp_min(1e-300)
    series = torch.zeros_like(zs)
    term = torch.ones_like(zs)
    for k in range(1, terms):
        term = -term * zs / k
        series = series - term / k
    log_small = torch.log(-_EULER_GAMMA - torch.log(zs) + series)
    zl = torch.where(small, torch.full_like(z, 3.0), z)
    frac = zl + 2 * terms + 1
    for k in range(terms, 0, -1):
        frac = zl + 2 * k - 1 - k * k / frac
    log_large = -zl - torch.log(frac)
    out = torch.where(small, log_small, log_large)
    return torch.where(z > 0, out, torch.full_like(z, math.inf))
