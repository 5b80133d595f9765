"""Conditional Wasserstein GAN posterior sampler (Adler & Öktem, "Deep Bayesian Inversion", 2018).

The generator G(y, z) maps data y and a noise image z to a sample of P(x | y);
the critic D(y, x1, x2) scores two images for the same y. Training minimises
the Wasserstein-1 distance between G(y, ·) and P(x | y) through its
Kantorovich–Rubinstein dual, with a gradient penalty as Lipschitz device
(Gulrajani et al. 2017).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from ..config.schema import CWGANParams
from ..metrics import psnr
from ..operators import LinearOperator, operator_from
from .networks import CONV, UNet, first_image

#: keys of params.yaml `methods.cwgan` that shape the generator network
GENERATOR_KEYS = ("channels", "depth", "z_channels", "filter")


class ConditionalGenerator(nn.Module):
    """G(y, z) = F(y) + U-Net(F(y), z), F the first reconstruction (FBP for CT): operator-aware through F(y),
    stochastic through `z_channels` image-sized standard-normal channels."""

    def __init__(self, operator: LinearOperator, channels: int = 32, depth: int = 3, z_channels: int = 4, filter: str = "hann") -> None:
        super().__init__()
        self.operator, self.filter, self.z_channels = operator, filter, z_channels
        self.unet = UNet(channels, depth, in_channels=1 + z_channels, dims=len(operator.domain_shape))

    def initial(self, y: torch.Tensor) -> torch.Tensor:
        """The operator-aware starting image F(y) (FBP for CT), (B, 1, *image shape)."""
        return first_image(self.operator, y, self.filter)

    def refine(self, start: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """One sample per row of `start` (a first reconstruction) and `z`."""
        return self.unet(torch.cat([start, z], dim=1))

    def start_from(self, trained: nn.Module) -> None:
        """Copy a trained post-processing network (FBP + U-Net, `networks.PostProcessing`)
        into this generator, the way SRGAN starts from its MSE-trained SRResNet
        (Ledig et al. 2017): the weights on the noise channels start at zero,
        so the generator begins as that network, a deterministic estimate near
        E[x|y], and the adversarial loss then has to spread its samples.
        Refuses a network of another shape or FBP filter, naming both."""
        unet, filter = getattr(trained, "unet", None), getattr(trained, "filter", None)
        if not isinstance(unet, UNet):
            raise ValueError(f"cwgan can start only from a post-processing network (FBP + U-Net), got {type(trained).__name__}")
        if filter != self.filter:
            raise ValueError(f"cwgan uses the {self.filter!r} FBP filter, the network to start from uses {filter!r}")
        source, target = unet.state_dict(), self.unet.state_dict()
        first = "down.0.0.weight"  # the only layer that sees the noise channels
        shapes = {k: tuple(v.shape) for k, v in source.items() if k != first}
        wanted = {k: tuple(v.shape) for k, v in target.items() if k != first}
        if shapes != wanted or source[first].shape[:1] + source[first].shape[2:] != target[first].shape[:1] + target[first].shape[2:]:
            raise ValueError(
                "cwgan's U-Net (methods.cwgan channels/depth) differs from the network to start from "
                f"(first layer {tuple(target[first].shape)} against {tuple(source[first].shape)})"
            )
        widened = torch.zeros_like(target[first])
        widened[:, :1] = source[first]
        self.unet.load_state_dict({**source, first: widened})

    def noise(self, start: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (start.shape[0], self.z_channels, *start.shape[2:])
        return torch.randn(shape, generator=generator, dtype=start.dtype, device="cpu" if generator else start.device).to(start.device)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        start = self.initial(y)
        return self.refine(start, self.noise(start))


class PairCritic(nn.Module):
    """D(y, x1, x2): strided convolutions over [x1, x2, FBP(y)], averaged to one score.

    No batch normalisation: the gradient penalty is per sample, which batch
    statistics would couple.
    """

    def __init__(self, width: int = 32, depth: int = 3, dims: int = 2) -> None:
        super().__init__()
        conv = CONV[dims]
        layers: list[nn.Module] = [conv(3, width, 3, padding=1), nn.LeakyReLU(0.2)]
        for i in range(depth):
            layers += [conv(width * 2**i, width * 2 ** (i + 1), 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(width * 2**depth, 1)

    def forward(self, pair: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """(B, 2, *image) pairs and (B, 1, *image) first reconstructions -> (B,) scores."""
        return self.score(self.features(torch.cat([pair, start], dim=1)).flatten(2).mean(dim=2)).squeeze(1)


def random_order_pair(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 2, N, N): [a, b] or [b, a], each order with probability 1/2 per item,
    so that the critic cannot tell which slot holds the real image."""
    swap = torch.rand(a.shape[0], *[1] * (a.dim() - 1), device=a.device) < 0.5
    return torch.cat([torch.where(swap, b, a), torch.where(swap, a, b)], dim=1)


def unbiased_mean_error(samples: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of ||E_z G(y, z) - x||^2 from n samples (B, n, ...)
    of G(y, ·), summed over pixels and averaged over the batch.

    ||mean - x||^2 overestimates it by trace(Cov)/n, estimated here by the
    unbiased sample variance. In expectation over z the term therefore
    depends on the samples' mean only, not on their spread, and its expected
    value over (x, y) is smallest when that mean is E[x|y]: the exact
    posterior sampler minimises it as it does the Wasserstein term, so adding
    it to the generator loss guides the mean without rewarding collapse (the
    plain squared error of the mean would shrink the spread).
    """
    n = samples.shape[1]
    if n < 2:
        raise ValueError(f"unbiased_mean_error needs at least 2 samples per item, got shape {tuple(samples.shape)}")
    mean = samples.mean(dim=1)
    error = (mean - truth).flatten(1).pow(2).sum(dim=1)
    spread = (samples - mean.unsqueeze(1)).flatten(2).pow(2).sum(dim=2).sum(dim=1) / (n - 1)
    return (error - spread / n).mean()


class CWGANModule(L.LightningModule):
    """Trains the conditional WGAN; its estimate is the mean of K samples.

    Same constructor signature as ReconstructionModule so that tasks/train.py
    and load_checkpoint build either one from a checkpoint's hyper-parameters;
    `network` is params.yaml `methods.cwgan` (generator, critic, training and
    sampling options), `lr`/`beta2` of the shared `train` section are ignored
    in favour of the GAN's own `network["lr"]` and WGAN-GP's Adam betas.
    """

    #: the keys of params.yaml `train` it reads; the rest are the MSE-trained methods' optimiser
    TRAIN_KEYS = ("seed", "devices", "early_stopping_patience")

    def __init__(self, method: str, geometry: dict, network: dict, lr: float = 1e-3, beta2: float = 0.99) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False  # a generator step every n_critic critic steps
        operator = operator_from(geometry)
        # through the schema: a checkpoint saved before an option existed gets its default
        self.options = CWGANParams(**network).model_dump()
        self.generator = ConditionalGenerator(operator, **{k: network[k] for k in GENERATOR_KEYS})
        self.critic = PairCritic(network["critic_width"], network["depth"], len(operator.domain_shape))

    def start_from(self, trained: L.LightningModule) -> None:
        """Start the generator from a trained postproc model (see ConditionalGenerator.start_from)."""
        self.generator.start_from(trained.network)

    # --- sampling ---------------------------------------------------------------
    def sample(self, y: torch.Tensor, k: int, generator: torch.Generator | None = None, chunk: int = 256) -> torch.Tensor:
        """k posterior samples per item of y: (B, k, 1, N, N). Draws at most
        `chunk` images per generator call to bound memory."""
        start = self.generator.initial(y)
        batch, size = start.shape[0], start.shape[2:]
        repeated = start.repeat_interleave(k, dim=0)
        out = [
            self.generator.refine(part, self.generator.noise(part, generator))
            for part in repeated.split(max(1, chunk), dim=0)
        ]
        return torch.cat(out).view(batch, k, 1, *size)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The estimate: the mean of `samples` (K) posterior samples, (B, 1, N, N)."""
        return self.sample(y, self.options["samples"]).mean(dim=1)

    # --- training -----------------------------------------------------------------
    def _critic_loss(self, x: torch.Tensor, start: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
        """Adler & Öktem's device against mode collapse: the critic compares a
        pair (real, generated) with a pair (generated, generated) for the same
        y, in random order. A generator that ignores z produces identical
        generated pairs, which the critic tells apart from real ones at once."""
        real = random_order_pair(x, fakes[:, 0])
        fake = random_order_pair(fakes[:, 1], fakes[:, 2])
        return self.critic(fake, start).mean() - self.critic(real, start).mean(), real, fake

    def _gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(real.shape[0], *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
        between = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(between, start).sum(), between, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def _three_samples(self, start: torch.Tensor) -> torch.Tensor:
        repeated = start.repeat_interleave(3, dim=0)
        return self.generator.refine(repeated, self.generator.noise(repeated)).view(start.shape[0], 3, *start.shape[1:])

    def training_step(self, batch, batch_idx: int) -> None:
        y, x = batch
        opt_generator, opt_critic = self.optimizers()
        generator_schedule, critic_schedule = self.lr_schedulers()
        clip = self.options["gradient_clip"]
        with torch.no_grad():
            start = self.generator.initial(y)
        # WGAN-GP's schedule (Gulrajani et al., Algorithm 1): one critic step
        # per batch, and a generator step on every n_critic-th batch, counted
        # over the whole run so that resuming keeps the rhythm. Batch 0 moves
        # the generator too, so a run shorter than n_critic batches (smoke
        # scale) still trains it. An earlier version took n_critic critic
        # steps on every batch: the same critic:generator ratio at n_critic+1
        # times the cost per epoch, which did not fit the laptop budget.
        self.toggle_optimizer(opt_critic)
        with torch.no_grad():
            fakes = self._three_samples(start)
        wasserstein, real, fake = self._critic_loss(x, start, fakes)
        critic_loss = wasserstein + self.options["gp_weight"] * self._gradient_penalty(real, fake, start)
        self._check_finite(critic_loss, "critic", batch_idx)
        opt_critic.zero_grad()
        self.manual_backward(critic_loss)
        # by hand: Trainer's gradient_clip_val is refused with manual optimisation
        self.clip_gradients(opt_critic, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt_critic.step()
        critic_schedule.step()
        self.untoggle_optimizer(opt_critic)
        self.log("critic_loss", critic_loss.detach(), prog_bar=True)

        if (self.current_epoch * self.trainer.num_training_batches + batch_idx) % self.options["n_critic"]:
            return
        self.toggle_optimizer(opt_generator)
        fakes = self._three_samples(start)
        wasserstein, _, _ = self._critic_loss(x, start, fakes)
        generator_loss = -wasserstein
        if self.options["mean_weight"]:
            mean_error = unbiased_mean_error(fakes, x)
            generator_loss = generator_loss + self.options["mean_weight"] * mean_error
            self.log("mean_error", mean_error.detach())
        self._check_finite(generator_loss, "generator", batch_idx)
        opt_generator.zero_grad()
        self.manual_backward(generator_loss)
        self.clip_gradients(opt_generator, gradient_clip_val=clip, gradient_clip_algorithm="norm")
        opt_generator.step()
        generator_schedule.step()
        self.untoggle_optimizer(opt_generator)
        self.log("wasserstein", -wasserstein.detach(), prog_bar=True)

    def _check_finite(self, loss: torch.Tensor, which: str, batch_idx: int) -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite {which} loss ({float(loss.detach())}) at batch {batch_idx}; the last good checkpoint is kept"
            )

    def validation_step(self, batch, batch_idx: int) -> None:
        # fewer samples than the estimate's K: the mean of val_samples draws
        # ranks checkpoints as well, at a fraction of the cost
        y, x = batch
        estimate = self.sample(y, self.options["val_samples"]).mean(dim=1)
        self.log("val_psnr", psnr(estimate, x).mean(), prog_bar=True, on_epoch=True)

    def configure_optimizers(self):
        # Adam betas (0.5, 0.9): the usual WGAN-GP choice (Gulrajani et al. use
        # beta1 = 0); a large beta1 lags behind the moving critic.
        # Both rates decay to 0 on a cosine, stepped by hand, as the other
        # learned methods' do: over the critic's steps (one per batch) and the
        # generator's (one per n_critic batches).
        lr = self.options["lr"]
        generator = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.9))
        critic = torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.9))
        batches = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer else 1
        generator_steps = -(-batches // self.options["n_critic"])
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR
        return [generator, critic], [cosine(generator, T_max=generator_steps), cosine(critic, T_max=batches)]
