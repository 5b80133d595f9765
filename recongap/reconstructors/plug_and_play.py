"""Plug-and-play: a denoiser learned on the prior's images used as the
proximal step of proximal gradient descent (Venkatakrishnan et al. 2013;
the Ducros talk).

    x_{k+1} = D(x_k - t A^T (A x_k - y), s)

from the operator's first reconstruction, for a fixed number of iterations;
the step t (a fraction of 1/||A||^2, where the data term's gradient is
Lipschitz) and the denoiser's noise level s are chosen on validation items.
The denoiser is noise-level conditional (its level is an input channel, as
in DRUNet), so one trained network serves every s of the search. It is
trained on the training images alone (never on measurements): a model of
the prior, usable under any forward operator.
"""

from __future__ import annotations

import itertools

import lightning as L
import torch
from torch import nn

from ..metrics import mse, psnr
from ..operators import LinearOperator, operator_from
from .lightning import adam_with_cosine_decay
from .networks import UNet


class Denoiser(nn.Module):
    """D(x, s) = x + U-Net([x, s]): a residual U-Net given the noise std s as a constant channel."""

    def __init__(self, operator: LinearOperator, channels: int = 32, depth: int = 3, max_noise: float = 0.2) -> None:
        super().__init__()
        self.max_noise = max_noise
        self.unet = UNet(channels, depth, in_channels=2, dims=len(operator.domain_shape))

    def forward(self, x: torch.Tensor, noise_std: float | torch.Tensor) -> torch.Tensor:
        level = torch.as_tensor(noise_std, dtype=x.dtype, device=x.device).reshape(-1, *[1] * (x.dim() - 1))
        return self.unet(torch.cat([x, level.expand_as(x)], dim=1))


class DenoiserModule(L.LightningModule):
    """Trains a Denoiser on the training images: each batch gets Gaussian noise
    of a std drawn uniformly from [0, max_noise] per image; the loss is the
    MSE to the clean image. Validation PSNR at max_noise / 2, on noise fixed
    by the batch index (the same every epoch). The (y, x) batches of the
    paired data are used for x only."""

    def __init__(self, method: str, geometry: dict, network: dict, lr: float = 1e-3, beta2: float = 0.99) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = Denoiser(operator_from(geometry), **network)

    def forward(self, x: torch.Tensor, noise_std: float | torch.Tensor) -> torch.Tensor:
        return self.network(x, noise_std)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        _, x = batch
        level = torch.rand(x.shape[0], dtype=x.dtype, device=x.device) * self.network.max_noise
        noisy = x + level.reshape(-1, *[1] * (x.dim() - 1)) * torch.randn_like(x)
        loss = mse(self(noisy, level), x).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite denoiser loss at step {self.global_step}")
        self.log("train_mse", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        _, x = batch
        self.log("val_psnr", psnr(self.restore(x, seed=batch_idx), x).mean(), prog_bar=True, on_epoch=True)

    def restore(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Its own task on clean images x: noise of std max_noise / 2 (drawn
        from `seed`) added, then denoised. What validation and the registry score."""
        g = torch.Generator().manual_seed(seed)
        level = self.network.max_noise / 2
        return self(x + level * torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device), level)

    def configure_optimizers(self):
        return adam_with_cosine_decay(self)


class PlugAndPlay:
    """Proximal gradient descent with a learned denoiser as the proximal map.

    `denoiser(x, s)` maps a batch to its denoised batch; `steps` and
    `noise_levels` are the grids `fit` searches (the step as a fraction of
    1/||A||^2, the level in image units)."""

    def __init__(
        self, operator: LinearOperator, denoiser, iterations: int = 30,
        steps: tuple[float, ...] = (0.5, 1.0, 1.5), noise_levels: tuple[float, ...] = (0.01, 0.02, 0.05),
    ) -> None:
        self.operator, self.denoiser, self.iterations = operator, denoiser, iterations
        self.steps, self.noise_levels = tuple(steps), tuple(noise_levels)
        self.lipschitz = operator.norm() ** 2
        self.step, self.noise_level = self.steps[0], self.noise_levels[0]

    def update(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One iteration: a gradient step on 1/2 ||A x - y||^2, then the denoiser."""
        a = self.operator
        return self.denoiser(x - (self.step / self.lipschitz) * a.adjoint(a(x) - y), self.noise_level)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x = self.operator.first_reconstruction(y)
            for _ in range(self.iterations):
                x = self.update(x, y)
        return x

    def fixed_point_residual(self, y: torch.Tensor) -> torch.Tensor:
        """||T(x) - x|| / ||x|| per item at the returned x (T the iteration):
        how far the fixed number of iterations is from a fixed point."""
        with torch.no_grad():
            x = self(y)
            return torch.linalg.vector_norm((self.update(x, y) - x).flatten(1), dim=1) / torch.linalg.vector_norm(x.flatten(1), dim=1)

    def fit(self, y: torch.Tensor, x: torch.Tensor) -> dict:
        """Grid search of step x noise level for the lowest mean MSE on validation items."""
        scores = {}
        for self.step, self.noise_level in itertools.product(self.steps, self.noise_levels):
            scores[(self.step, self.noise_level)] = float(mse(self(y), x).mean())
        self.step, self.noise_level = min(scores, key=scores.get)
        return {
            "step": self.step, "noise_level": self.noise_level,
            "fixed_point_residual": float(self.fixed_point_residual(y).mean()),
        }
