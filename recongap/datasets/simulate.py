"""Seeded simulation of paired data y = A x + noise from a prior.

All randomness (prior draws, noise) comes from CPU generators seeded per
split, so the draws do not depend on the device that renders and projects.
The noise std is one number per pipeline, fixed from a separate calibration
sample of the prior: the likelihood is then exactly N(A x, sigma^2 I) with a
known sigma, which the MCMC reference needs (a per-image std would depend on
x and make the likelihood something else).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterator, Protocol

import numpy as np
import torch

from ..operators import LinearOperator, RayTransform
from .io import Split


class Prior(Protocol):
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    def render(self, params: torch.Tensor, size: int) -> torch.Tensor: ...


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed for stream `name` of base seed `seed` (stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator_for(seed: int, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(seed, name))


def _batches(n: int, batch_size: int) -> Iterator[int]:
    done = 0
    while done < n:
        yield min(batch_size, n - done)
        done += batch_size


def measurement_operator(operator: LinearOperator, grid_factor: int) -> LinearOperator:
    """The operator that makes the data: `operator` itself, or the same scan
    over a `grid_factor` times finer grid (no inverse crime; CT only)."""
    if grid_factor == 1:
        return operator
    if not isinstance(operator, RayTransform):
        raise ValueError(f"a {grid_factor}x finer measurement grid needs a ray transform, not {type(operator).__name__}")
    return RayTransform.from_geometry(operator.geometry.refined(grid_factor), backend=operator.backend.name)


def clean_measurements(
    prior: Prior, params: torch.Tensor, size: int, measure: LinearOperator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images at `size` and their noise-free data, projected by `measure`
    from a rendering at its own (possibly finer) size."""
    params = params.to(device, torch.float32)  # float32 renders ~3x faster than float64
    images = prior.render(params, size)
    fine_size = measure.domain_shape[-1]
    rendered = images if fine_size == size else prior.render(params, fine_size)
    return images, measure(rendered)


def calibrate_noise_std(
    prior: Prior,
    size: int,
    measure: LinearOperator,
    relative_std: float,
    n: int,
    generator: torch.Generator,
    device: torch.device,
) -> float:
    """relative_std x mean |A x| over n prior draws."""
    with torch.no_grad():
        params = prior.sample(n, generator)
        _, data = clean_measurements(prior, params, size, measure, device)
    return float(relative_std * data.abs().mean())


def simulate_split(
    prior: Prior,
    size: int,
    measure: LinearOperator,
    n: int,
    generator: torch.Generator,
    noise_std: float,
    device: torch.device,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> Split:
    """n pairs (x, y = A x + noise_std * e); attrs are left for the caller."""
    images, data, params = [], [], []
    with torch.no_grad():
        for b in _batches(n, batch_size):
            p = prior.sample(b, generator)
            x, y = clean_measurements(prior, p, size, measure, device)
            noise = torch.randn(y.shape, generator=generator, dtype=torch.float32)
            images.append(x.cpu().numpy())
            data.append((y.cpu() + noise_std * noise).numpy())
            params.append(p.numpy())
            if progress:
                progress(b)
    return Split(
        images=np.concatenate(images),
        measurements=np.concatenate(data),
        params=np.concatenate(params),
        attrs={},
    )
