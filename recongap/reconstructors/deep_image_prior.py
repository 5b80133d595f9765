"""The deep image prior (Ulyanov, Vedaldi and Lempitsky 2018; the Bremen talk):
an untrained U-Net f, fed a fixed noise image z, is fitted to one measurement,

    min_theta ||A f_theta(z) - y||^2 / m + w TV(f_theta(z)),

and its output after a number of Adam steps is the reconstruction. The
architecture is the prior; early stopping is the regularisation. The
stopping iteration and the TV weight w (DIVal's DIP+TV) are chosen on
validation items, from the error recorded along each fit. No training data
is used beyond those choices.
"""

from __future__ import annotations

import torch
from torch import nn

from ..metrics import mse
from ..operators import LinearOperator
from .classical import gradient
from .networks import UNet
from .per_measurement import Progress, Record, StoppedFit


class DIPNetwork(nn.Module):
    """f(z): a U-Net on `noise_channels` fixed noise channels. The U-Net is the
    residual one of the other methods, fed a zero first channel, so its output
    is its learned part alone."""

    def __init__(self, dims: int, channels: int, depth: int, noise_channels: int) -> None:
        super().__init__()
        self.unet = UNet(channels, depth, in_channels=1 + noise_channels, dims=dims)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.unet(torch.cat([torch.zeros_like(z[:, :1]), z], dim=1))


def total_variation(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean isotropic TV per pixel (smoothed at 0 so its gradient exists)."""
    g = gradient(x)
    return torch.sqrt((g**2).sum(1) + eps).flatten(1).mean(1)


class DeepImagePrior(StoppedFit):
    """Fits a fresh network to each measurement (the same initial weights and
    noise input for every item, from `seed`); the stopping iteration and the
    TV weight are chosen by `fit` (StoppedFit)."""

    weight_name = "tv_weight"

    def __init__(
        self, operator: LinearOperator, channels: int = 16, depth: int = 3, noise_channels: int = 8, noise_scale: float = 0.1,
        lr: float = 1e-3, max_iterations: int = 1000, record_every: int = 50, tv_weights: tuple[float, ...] = (0.0,), seed: int = 0,
    ) -> None:
        super().__init__(tv_weights, max_iterations, record_every)
        self.operator, self.channels, self.depth, self.noise_channels = operator, channels, depth, noise_channels
        self.noise_scale, self.lr, self.seed = noise_scale, lr, seed

    def _start(self, dtype: torch.dtype) -> tuple[DIPNetwork, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):  # the weights' initialisation, leaving the caller's random stream alone
            torch.manual_seed(self.seed)
            network = DIPNetwork(len(self.operator.domain_shape), self.channels, self.depth, self.noise_channels).to(dtype)
        z = self.noise_scale * torch.rand(1, self.noise_channels, *self.operator.domain_shape, generator=g, dtype=dtype)
        return network, z

    @torch.enable_grad()  # fitted by gradients, even when called under no_grad
    def trajectory(
        self, y: torch.Tensor, iterations: int, tv_weight: float, record: Record | None = None, progress: Progress | None = None,
    ) -> tuple[torch.Tensor, list[float]]:
        """Fit one measurement y (1, 1, *range shape) for `iterations` steps.
        Returns the final image and the data misfit ||A f - y||^2 / m before
        each step; `record(step, image)` sees the image every `record_every` steps."""
        if y.shape[0] != 1:
            raise ValueError(f"the deep image prior fits one measurement at a time, got a batch of {y.shape[0]}")
        network, z = self._start(y.dtype)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.lr)
        misfits = []
        for step in range(iterations):
            optimizer.zero_grad()
            x = network(z)
            misfit = mse(self.operator(x), y).sum()
            loss = misfit + (tv_weight * total_variation(x).sum() if tv_weight else 0.0)
            loss.backward()
            optimizer.step()
            misfits.append(float(misfit.detach()))
            if record is not None and (step + 1) % self.record_every == 0:
                with torch.no_grad():
                    record(step + 1, network(z))
            if progress is not None:
                progress(1)
        with torch.no_grad():
            return network(z), misfits
