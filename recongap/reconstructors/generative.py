"""Regularisation by a generative model of the prior's images (Duff, Campbell
and Ehrhardt; the seed talk 003): a variational autoencoder G: z -> x,
z ~ N(0, I), trained on the training images alone, then per measurement

    range:  x = G(z*),  z* = argmin_z ||A G(z) - y||^2 + l ||z||^2
    soft:   argmin_{x, z} ||A x - y||^2 + l (||x - G(z)||^2 + m ||z||^2)

(range: the image lies in the generator's range; soft: near it). The
weights are chosen on validation items, in units of the data's noise
variance s^2 (at l = s^2, range is the MAP estimate of z under the VAE's
model). The
decoder has no batch normalisation, so items optimised together stay
independent (Adam's update is per coordinate).
"""

from __future__ import annotations

import itertools
import math
import lightning as L
import torch
from torch import nn

from ..metrics import mse, psnr
from ..operators import LinearOperator, operator_from
from .lightning import adam_with_cosine_decay
from .networks import CONV, CONV_TRANSPOSE
from .per_measurement import Progress


class VariationalAutoencoder(nn.Module):
    """Strided convolutions to the mean and log-variance of z (`latent`
    numbers), and transposed convolutions back: image side divisible by 2**depth."""

    def __init__(self, operator: LinearOperator, latent: int = 64, channels: int = 32, depth: int = 3) -> None:
        super().__init__()
        shape = tuple(operator.domain_shape)
        dims = len(shape)
        if any(n % 2**depth for n in shape):
            raise ValueError(f"the VAE halves the image {depth} times: its shape {shape} must be divisible by {2**depth}")
        self.latent, self.dims = latent, dims
        self.coarse = tuple(n // 2**depth for n in shape)
        widths = [channels * 2**i for i in range(depth + 1)]
        conv, up = CONV[dims], CONV_TRANSPOSE[dims]
        layers: list[nn.Module] = [conv(1, widths[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for i in range(depth):
            layers += [conv(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(widths[-1] * math.prod(self.coarse), 2 * latent))
        self.expand = nn.Linear(latent, widths[-1] * math.prod(self.coarse))
        layers = []
        for i in reversed(range(depth)):
            layers += [up(widths[i + 1], widths[i], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*layers, conv(widths[0], 1, 3, padding=1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each (B, latent)."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): (B, latent) -> (B, 1, *image shape)."""
        h = self.expand(z).reshape(z.shape[0], -1, *self.coarse)
        return self.decoder(nn.functional.leaky_relu(h, 0.2))


class VAEModule(L.LightningModule):
    """Trains the VAE on the training images: per image ||x - G(z)||^2 / (2 r^2)
    + KL(q(z|x) || N(0, I)), z drawn by the reparametrisation, r =
    `recon_std`. Validation PSNR of G(mean of q(z|x)). The (y, x) batches of
    the paired data are used for x only."""

    def __init__(self, method: str, geometry: dict, network: dict, lr: float = 1e-3, beta2: float = 0.99) -> None:
        super().__init__()
        self.save_hyperparameters()
        options = dict(network)
        self.recon_std = options.pop("recon_std")
        self.network = VariationalAutoencoder(operator_from(geometry), **options)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.network(z)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        _, x = batch
        mean, log_var = self.network.encode(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        squared = ((self.network(z) - x) ** 2).flatten(1).sum(1)
        kl = 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)
        loss = (squared / (2 * self.recon_std**2) + kl).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite VAE loss at step {self.global_step}")
        self.log("train_loss", loss, prog_bar=True)
        self.log("train_kl", kl.mean())
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        _, x = batch
        self.log("val_psnr", psnr(self.restore(x), x).mean(), prog_bar=True, on_epoch=True)

    def restore(self, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Its own task on images x: G(mean of q(z|x)), the autoencoded image
        (`seed` unused: deterministic). What validation and the registry score."""
        return self.network(self.network.encode(x)[0])

    def configure_optimizers(self):
        return adam_with_cosine_decay(self)


class GenerativeRegulariser:
    """Shared by the range and soft forms: the generator, the noise variance
    the weights are scaled by, the Adam budget, and the search on validation."""

    grid: dict[str, tuple[float, ...]] = {}

    def __init__(self, operator: LinearOperator, generator: nn.Module, noise_std: float, iterations: int = 300, lr: float = 0.05) -> None:
        self.operator, self.noise_var, self.iterations, self.lr = operator, float(noise_std) ** 2, iterations, lr
        self.generator = generator.eval().requires_grad_(False)
        self.latent = self._network().latent
        self.settings = {key: values[0] for key, values in self.grid.items()}

    def _network(self) -> VariationalAutoencoder:
        return getattr(self.generator, "network", self.generator)

    def solve(self, y: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """Reconstructions of a batch y (items optimised together, independently)."""
        raise NotImplementedError

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.solve(y)

    def fit(self, y: torch.Tensor, x: torch.Tensor, progress: Progress | None = None) -> dict:
        """Every combination of the grid on the validation items at once; the lowest mean MSE is chosen."""
        scores = {}
        for values in itertools.product(*self.grid.values()):
            self.settings = dict(zip(self.grid, values))
            scores[values] = float(mse(self.solve(y, progress), x).mean())
        self.settings = dict(zip(self.grid, min(scores, key=scores.get)))
        return dict(self.settings)

    def fit_steps(self, items: int) -> int:
        return math.prod(len(v) for v in self.grid.values()) * self.iterations

    def choose(self, chosen: dict) -> None:
        self.settings = {key: float(chosen[key]) for key in self.grid}

    def _misfit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((self.operator(x) - y) ** 2).flatten(1).sum(1)


class GenerativeRange(GenerativeRegulariser):
    """x = G(z*), z* = argmin ||A G(z) - y||^2 + weight s^2 ||z||^2, by Adam from z = 0."""

    def __init__(self, operator: LinearOperator, vae: nn.Module, noise_std: float, iterations: int = 300, lr: float = 0.05,
                 weights: tuple[float, ...] = (0.1, 1.0, 10.0)) -> None:
        self.grid = {"weight": tuple(weights)}
        super().__init__(operator, vae, noise_std, iterations, lr)

    def latent_solution(self, y: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        """z* for each item of y, (B, latent)."""
        g = self._network()
        z = torch.zeros(y.shape[0], self.latent, dtype=y.dtype, requires_grad=True)
        optimizer = torch.optim.Adam([z], lr=self.lr)
        weight = self.settings["weight"] * self.noise_var
        with torch.enable_grad():
            for _ in range(self.iterations):
                optimizer.zero_grad()
                loss = (self._misfit(g(z), y) + weight * (z**2).sum(1)).sum()
                loss.backward()
                optimizer.step()
                if progress is not None:
                    progress(1)
        return z.detach()

    def solve(self, y: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        with torch.no_grad():
            return self._network()(self.latent_solution(y, progress))


class GenerativeSoft(GenerativeRegulariser):
    """argmin_{x, z} ||A x - y||^2 + (s^2 / t^2) ||x - G(z)||^2 + latent_weight s^2 ||z||^2,
    by Adam on (x, z) from (G(0), 0): x within about t (`distance_std`, image
    units) of the range, z held near N(0, I). In the talk's form,
    lambda = s^2 / t^2 and mu = latent_weight t^2."""

    def __init__(self, operator: LinearOperator, vae: nn.Module, noise_std: float, iterations: int = 300, lr: float = 0.05,
                 distance_stds: tuple[float, ...] = (0.02, 0.05, 0.1), latent_weights: tuple[float, ...] = (0.1, 1.0)) -> None:
        self.grid = {"distance_std": tuple(distance_stds), "latent_weight": tuple(latent_weights)}
        super().__init__(operator, vae, noise_std, iterations, lr)

    def solve(self, y: torch.Tensor, progress: Progress | None = None) -> torch.Tensor:
        g = self._network()
        z = torch.zeros(y.shape[0], self.latent, dtype=y.dtype, requires_grad=True)
        with torch.no_grad():
            x = g(z).clone().requires_grad_(True)
        # the image moves in pixel units, the latent in N(0, I) units: their own rates
        optimizer = torch.optim.Adam([{"params": [x], "lr": self.lr / 10}, {"params": [z], "lr": self.lr}])
        closeness = self.noise_var / self.settings["distance_std"] ** 2
        with torch.enable_grad():
            for _ in range(self.iterations):
                optimizer.zero_grad()
                penalty = closeness * ((x - g(z)) ** 2).flatten(1).sum(1) + self.settings["latent_weight"] * self.noise_var * (z**2).sum(1)
                loss = (self._misfit(x, y) + penalty).sum()
                loss.backward()
                optimizer.step()
                if progress is not None:
                    progress(1)
        return x.detach()
