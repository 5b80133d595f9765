"""Schemas of params.yaml and pipelines.yaml, validated before any work.

Every model forbids unknown keys, so a typo fails loudly. Errors come out as
`ConfigError` naming the file, the dotted key and what is allowed.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

import yaml
from cronsim import CronSim, CronSimError
from pydantic import BaseModel, ConfigDict, Discriminator, Field, PositiveFloat, Tag, ValidationError, field_validator, model_validator

from ..operators import OPERATOR_KINDS, SIGNAL_KINDS
from ..operators.fbp import angle_weight
from ..operators.geometry import Geometry
from ..priors import EllipsePrior, GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior, PoissonJumpPrior


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message says where."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- params.yaml --------------------------------------------------------------
class Splits(Strict):
    train: int = Field(ge=1)
    val: int = Field(ge=1)
    test: int = Field(ge=1)


ScaleName = Literal["smoke", "laptop", "paper"]


class Scale(Strict):
    size: int = Field(ge=8, le=1024, description="image side in pixels")
    splits: Splits
    epochs: int = Field(default=1, ge=1, description="training budget of each trained method that sets no epochs of its own")


class SimulateParams(Strict):
    batch_size: int = Field(default=256, ge=1)
    noise_calibration_samples: int = Field(default=256, ge=1, description="prior draws that fix the noise std")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class FBPParams(Strict):
    pass


class FirstParams(Strict):
    pass


class TVParams(Strict):
    iterations: int = Field(default=300, ge=1)
    nonnegative: bool = False


class TrainedMethodParams(Strict):
    """What every trained method has besides its network options: its own budget."""

    # exclude: not a network option, so model_dump() stays what the network takes
    epochs: dict[ScaleName, Annotated[int, Field(ge=1)]] = Field(
        default={},
        exclude=True,
        description="its own budget per scale, or one number for every scale; a scale not named: the scale's epochs",
    )

    @field_validator("epochs", mode="before")
    @classmethod
    def _one_number_for_every_scale(cls, value: object) -> object:
        # also how cwgan checkpoints saved while `epochs` was a single number load
        return {scale: value for scale in get_args(ScaleName)} if isinstance(value, int) else value


class PostProcessingParams(TrainedMethodParams):
    channels: int = Field(default=32, ge=1)
    depth: int = Field(default=3, ge=1, le=6)
    filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "hann"


class LGDParams(TrainedMethodParams):
    iterations: int = Field(default=10, ge=1)
    memory: int = Field(default=5, ge=0)
    width: int = Field(default=32, ge=1)


class LPDParams(TrainedMethodParams):
    iterations: int = Field(default=10, ge=1)
    primal: int = Field(default=5, ge=2)
    dual: int = Field(default=5, ge=1)
    width: int = Field(default=32, ge=1)


class CWGANParams(TrainedMethodParams):
    """Conditional WGAN posterior sampler (Adler & Öktem 2018)."""

    channels: int = Field(default=32, ge=1, description="generator U-Net base width")
    depth: int = Field(default=3, ge=1, le=6, description="U-Net poolings; also the critic's strided layers")
    z_channels: int = Field(default=4, ge=1, description="image-sized noise channels fed to the generator")
    filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "hann"
    critic_width: int = Field(default=32, ge=1)
    n_critic: int = Field(default=5, ge=1, description="critic steps per generator step")
    gp_weight: float = Field(default=10.0, ge=0, description="gradient penalty weight")
    lr: float = Field(default=1e-4, gt=0, description="Adam learning rate of generator and critic")
    gradient_clip: float = Field(default=10.0, gt=0, description="gradient norm clip, applied by hand")
    mean_weight: float = Field(
        default=0.0, ge=0, description="weight of the unbiased squared error of the sample mean in the generator loss"
    )
    val_samples: int = Field(default=8, ge=2, description="samples per item whose mean gives the validation PSNR")
    batch_size: int = Field(default=8, ge=1, description="training batch of the GAN (train.batch_size is for the MSE-trained methods)")
    samples: int = Field(default=32, ge=2, description="K: samples per item whose mean is the estimate")
    std_floor: float = Field(default=0.005, ge=0, description="mean pixel std below which samples count as collapsed")


class LinearMMSEParams(Strict):
    """Nothing is chosen on validation: the covariance's shrinkage comes from the training images (Ledoit-Wolf)."""

    max_train_items: int = Field(default=4096, ge=2, description="the first training images whose moments are used (a bound on memory)")


class PlugAndPlayParams(Strict):
    iterations: int = Field(default=30, ge=1, description="proximal-gradient iterations, from the first reconstruction")
    steps: tuple[PositiveFloat, ...] = Field(default=(0.5, 1.0, 1.5), min_length=1, description="steps searched, as fractions of 1/||A||^2")
    noise_levels: tuple[PositiveFloat, ...] = Field(default=(0.01, 0.02, 0.05), min_length=1, description="denoiser noise stds searched")
    fit_items: int = Field(default=16, ge=1, description="validation items of the search")


class DeepImagePriorParams(Strict):
    channels: int = Field(default=16, ge=1, description="U-Net base width")
    depth: int = Field(default=3, ge=1, le=6)
    noise_channels: int = Field(default=8, ge=1, description="channels of the fixed noise input")
    noise_scale: float = Field(default=0.1, gt=0, description="the noise input is uniform on [0, noise_scale]")
    lr: float = Field(default=1e-3, gt=0, description="Adam's rate")
    max_iterations: dict[ScaleName, Annotated[int, Field(ge=1)]] = Field(
        default={"smoke": 100, "laptop": 1000, "paper": 3000},
        description="per scale (or one number): Adam steps of each validation fit; the stopping iteration is chosen among them",
    )
    record_every: int = Field(default=50, ge=1, description="validation fits record their error every so many steps")
    tv_weights: tuple[Annotated[float, Field(ge=0)], ...] = Field(default=(0.0,), min_length=1, description="TV weights searched (DIP+TV)")
    seed: int = Field(default=0, ge=0, description="initial weights and noise input, the same for every item")
    fit_items: int = Field(default=4, ge=1, description="validation items of the search")

    @field_validator("max_iterations", mode="before")
    @classmethod
    def _one_number_for_every_scale(cls, value: object) -> object:
        return {scale: value for scale in get_args(ScaleName)} if isinstance(value, int) else value

    @model_validator(mode="after")
    def _records_some_step(self) -> "DeepImagePriorParams":
        short = {scale: n for scale, n in self.max_iterations.items() if n < self.record_every}
        if short:
            raise ValueError(f"record_every = {self.record_every} exceeds max_iterations {short}: no step would be recorded")
        return self

    def options_at(self, scale: str) -> dict:
        """The method's options at `scale` (what DeepImagePrior takes)."""
        if scale not in self.max_iterations:
            raise ValueError(f"methods.dip.max_iterations has no entry for scale {scale!r} (defined: {sorted(self.max_iterations)})")
        return {**self.model_dump(exclude={"fit_items"}), "max_iterations": self.max_iterations[scale]}


class AnalyticDeepPriorParams(Strict):
    layers: int = Field(default=10, ge=1, description="proximal-gradient layers of the network (each outer step)")
    lr: float = Field(default=1.0, gt=0, description="gradient-descent rate of B, in units of 1/||A||^2")
    max_iterations: int = Field(default=200, ge=1, description="outer steps of each validation fit; the number kept is chosen among them")
    record_every: int = Field(default=10, ge=1)
    alphas: tuple[PositiveFloat, ...] = Field(default=(0.01, 0.1), min_length=1, description="Tikhonov weights searched, in units of ||A||^2")
    fit_items: int = Field(default=4, ge=1, description="validation items of the search")

    @model_validator(mode="after")
    def _records_some_step(self) -> "AnalyticDeepPriorParams":
        if self.record_every > self.max_iterations:
            raise ValueError(f"record_every = {self.record_every} exceeds max_iterations = {self.max_iterations}: no step would be recorded")
        return self


class GenerativeRangeParams(Strict):
    iterations: int = Field(default=300, ge=1, description="Adam steps on the latent")
    lr: float = Field(default=0.05, gt=0)
    weights: tuple[PositiveFloat, ...] = Field(default=(0.1, 1.0, 10.0), min_length=1, description="latent penalties searched, in units of the noise variance")
    fit_items: int = Field(default=16, ge=1, description="validation items of the search")


class GenerativeSoftParams(Strict):
    iterations: int = Field(default=300, ge=1, description="Adam steps on the image and the latent")
    lr: float = Field(default=0.05, gt=0, description="the latent's rate; the image's is a tenth")
    distance_stds: tuple[PositiveFloat, ...] = Field(default=(0.02, 0.05, 0.1), min_length=1, description="allowed distances to the range searched (image units)")
    latent_weights: tuple[PositiveFloat, ...] = Field(default=(0.1, 1.0), min_length=1, description="latent penalties searched, in units of the noise variance")
    fit_items: int = Field(default=16, ge=1, description="validation items of the search")


class VAEParams(TrainedMethodParams):
    """The generative regularisers' variational autoencoder, trained on the prior's images."""

    latent: int = Field(default=64, ge=1, description="dimension of z")
    channels: int = Field(default=32, ge=1)
    depth: int = Field(default=3, ge=1, le=6, description="halvings of the image")
    recon_std: float = Field(default=0.05, gt=0, description="the decoder's pixel noise std: weighs reconstruction against KL")


class DenoiserParams(TrainedMethodParams):
    """The plug-and-play denoiser, trained on the prior's images."""

    channels: int = Field(default=32, ge=1)
    depth: int = Field(default=3, ge=1, le=6)
    max_noise: float = Field(default=0.2, gt=0, description="training noise stds are uniform on [0, max_noise]")


class MethodParams(Strict):
    fbp: FBPParams = FBPParams()
    first: FirstParams = FirstParams()
    tv: TVParams = TVParams()
    linear_mmse: LinearMMSEParams = LinearMMSEParams()
    pnp: PlugAndPlayParams = PlugAndPlayParams()
    dip: DeepImagePriorParams = DeepImagePriorParams()
    adp: AnalyticDeepPriorParams = AnalyticDeepPriorParams()
    gen_range: GenerativeRangeParams = GenerativeRangeParams()
    gen_soft: GenerativeSoftParams = GenerativeSoftParams()
    denoiser: DenoiserParams = DenoiserParams()
    vae: VAEParams = VAEParams()
    postproc: PostProcessingParams = PostProcessingParams()
    lgd: LGDParams = LGDParams()
    lpd: LPDParams = LPDParams()
    cwgan: CWGANParams = CWGANParams()


class TrainParams(Strict):
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    beta2: float = Field(default=0.99, gt=0, lt=1)
    gradient_clip: float = Field(default=1.0, gt=0)
    early_stopping_patience: int = Field(default=5, ge=1)
    devices: int = Field(default=1, ge=1, description=">1 trains with DDP on that many GPUs")
    seed: int = Field(default=0, ge=0)


class EvaluateParams(Strict):
    fit_items: int = Field(default=64, ge=1, description="validation items that choose FBP and TV parameters")
    batch_size: int = Field(default=32, ge=1)
    report_items: int = Field(default=4, ge=1, le=16)


class SolveParams(Strict):
    """The `solve` stage: methods optimised per measurement, too slow for every test item."""

    items: dict[ScaleName, Annotated[int, Field(ge=1)]] = Field(
        default={"smoke": 2, "laptop": 4, "paper": 32},
        description="per scale: the first test items solved; the other methods are compared with them on these items",
    )

    def items_at(self, scale: str) -> int:
        if scale not in self.items:
            raise ValueError(f"solve.items has no entry for scale {scale!r} (defined: {sorted(self.items)})")
        return self.items[scale]


class RegistryParams(Strict):
    promotion_margin: float = Field(
        default=0.01, ge=0, lt=1,
        description="fraction of the champion's validation MSE by which a challenger's must be lower, "
        "beyond two paired standard errors, to replace it (0.01: about 0.04 dB of PSNR)",
    )


class OrchestrationParams(Strict):
    """How the Prefect flows drive DVC stages (no effect on results)."""

    retries: int = Field(default=1, ge=0, le=10, description="extra attempts of a failed stage")
    retry_delay_seconds: float = Field(default=10.0, ge=0, description="wait before a retry")




class ReferenceBudget(Strict):
    """How much sampling a scale affords: items, warmup and draws."""

    items: int = Field(ge=1, description="test items sampled (the first ones of the test split)")
    warmup: int = Field(ge=0)
    draws: int = Field(ge=4, description="draws per chain after warmup")
    leapfrog_steps: int | None = Field(default=None, ge=1, description="overrides reference.leapfrog_steps at this scale")


class ReferenceParams(Strict):
    """The MCMC reference posterior E[x|y] of each test item, and when to trust it.

    The sampler's defaults are recongap.posterior.ReferenceSettings' (a test
    keeps them equal; importing the sampler here would cost every command
    that reads the config 2 s): without truth parameters, start="prior"."""

    chains: int = Field(default=4, ge=2, description="chains per item; split R-hat needs at least 2")
    thin: int = Field(default=5, ge=1, description="keep every thin-th draw in the stored samples")
    step_size: float = Field(default=0.01, gt=0, description="initial step size, adapted during warmup")
    target_accept: float = Field(default=0.8, gt=0, lt=1)
    leapfrog_steps: int = Field(default=10, ge=1, description="HMC leapfrog steps per gradient move")
    temperatures: int = Field(default=1, ge=1, description="replicas per chain for parallel tempering; 1: off")
    beta_min: float = Field(default=1e-3, gt=0, lt=1, description="likelihood exponent of the hottest replica")
    start: Literal["truth", "prior"] = Field(
        default="prior",
        description="truth: a pilot from each item's true parameters (an exact posterior draw) tunes the kernel, "
        "then the kept chains start there with it fixed; prior: chains start from prior draws and warm up in place",
    )
    projections: int = Field(default=8, ge=0, description="random image projections added to the convergence summaries")
    render_dtype: Literal["float32", "float64"] = Field(
        default="float64",
        description="precision of the rendered image and its gradient in the likelihood (the residual is float64); "
        "float32 is faster on a CPU and its log-likelihood error is recorded per item",
    )
    probe_chains: int = Field(
        default=0, ge=0,
        description="start=truth: chains per item from prior draws; one that fits better than the kept chains' median flags the item multimodal",
    )
    sampler: Literal["auto", "hmc", "blocks"] = Field(
        default="hmc",
        description="hmc: gradient moves of every slot at once; blocks: one ellipse at a time with the residual kept "
        "up to date (ellipse priors without normalize_foreground, start=truth); auto: blocks where it applies, else hmc",
    )
    birth_death_moves: int = Field(default=1, ge=0, description="sampler=blocks: birth/death moves after each sweep")
    intensity_moves: int = Field(default=0, ge=0, description="sampler=blocks: joint moves of the data-determined intensities after each sweep")
    seed: int = Field(default=0, ge=0)
    batch_items: int = Field(default=4, ge=1, description="test items sampled together (batched on the device)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    rhat_max: float = Field(default=1.01, gt=1, description="items with a larger split R-hat are flagged")
    ess_min: float = Field(default=400, gt=0, description="items with a smaller bulk ESS are flagged")
    budgets: dict[ScaleName, ReferenceBudget] = {
        "smoke": ReferenceBudget(items=2, warmup=4, draws=10, leapfrog_steps=2),
        "laptop": ReferenceBudget(items=4, warmup=20, draws=40, leapfrog_steps=3),
        "paper": ReferenceBudget(items=128, warmup=1000, draws=2000),
    }

    @model_validator(mode="after")
    def _thin_keeps_samples(self) -> "ReferenceParams":
        short = {name: b.draws for name, b in self.budgets.items() if b.draws < self.thin}
        if short:
            raise ValueError(f"thin = {self.thin} keeps no sample from the draws of budgets {short}: draws must be >= thin")
        return self

    def budget(self, scale: str) -> ReferenceBudget:
        if scale not in self.budgets:
            raise ValueError(f"reference.budgets has no entry for scale {scale!r} (defined: {sorted(self.budgets)})")
        return self.budgets[scale]


class Params(Strict):
    scale: ScaleName
    scales: dict[ScaleName, Scale]
    simulate: SimulateParams = SimulateParams()
    methods: MethodParams = MethodParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    reference: ReferenceParams = ReferenceParams()
    solve: SolveParams = SolveParams()
    registry: RegistryParams = RegistryParams()
    orchestration: OrchestrationParams = OrchestrationParams()

    @model_validator(mode="after")
    def _scale_defined(self) -> "Params":
        if self.scale not in self.scales:
            raise ValueError(f"scale {self.scale!r} has no entry under 'scales' (defined: {sorted(self.scales)})")
        return self

    @property
    def current(self) -> Scale:
        return self.scales[self.scale]

    def batch_size(self, method: str) -> int:
        """Training batch of a trained method: its own `batch_size` where it
        has one (cwgan, whose schedule was tuned apart), else train.batch_size."""
        return getattr(getattr(self.methods, method), "batch_size", self.train.batch_size)

    def epochs(self, method: str) -> int:
        """Training epochs of a trained method at the current scale: its own
        `methods.<method>.epochs` for this scale where set, else the scale's."""
        return getattr(self.methods, method).epochs.get(self.scale, self.current.epochs)


# --- pipelines.yaml -------------------------------------------------------------
class ForwardConfig(Strict):
    """CT, the ray transform (`kind: ct`, the default when `kind` is absent)."""

    # excluded from dumps: a CT pipeline's recorded config stays what it was before other kinds
    kind: Literal["ct"] = Field(default="ct", exclude=True)
    geometry: Literal["parallel", "fan"] = "parallel"
    angles: int = Field(default=30, ge=1)
    angle_range: float | None = Field(default=None, gt=0, le=2 * math.pi)
    detectors: int | None = Field(default=None, ge=1)
    source_distance: float = Field(default=4.0, gt=math.sqrt(2))
    detector_distance: float = Field(default=4.0, ge=0)

    @model_validator(mode="after")
    def _fbp_can_weight_the_range(self) -> ForwardConfig:
        angle_weight(self.geometry_for(2))  # FBP (postproc, fbp, tv start) refuses ranges it would mis-scale
        return self

    def geometry_for(self, size: int) -> Geometry:
        return Geometry(
            size=size,
            angles=self.angles,
            kind=self.geometry,
            angle_range=self.angle_range,
            detectors=self.detectors,
            source_distance=self.source_distance,
            detector_distance=self.detector_distance,
        )

    def description_for(self, size: int) -> dict:
        """What data and checkpoints record (recongap.operators.operator_from builds it)."""
        return self.geometry_for(size).resolved()


class SinglePixelForward(Strict):
    """Single-pixel imaging: Walsh-Hadamard patterns, lowest frequencies first (image size a power of 2)."""

    kind: Literal["single_pixel"]
    patterns: int = Field(ge=1, description="M patterns kept, at most size^2")

    def description_for(self, size: int) -> dict:
        return {"kind": self.kind, "size": size, "patterns": self.patterns}


class MRIForward(Strict):
    """Undersampled 2-D Fourier: a Cartesian mask of random lines with a full centre, or a radial one."""

    kind: Literal["mri"]
    mask: Literal["cartesian", "radial"] = "cartesian"
    acceleration: int = Field(default=4, ge=1, description="cartesian: 1 line in `acceleration` sampled")
    centre_fraction: float = Field(default=0.08, gt=0, le=1, description="cartesian: the central lines always sampled")
    mask_seed: int = Field(default=0, ge=0, description="cartesian: which random lines")
    spokes: int = Field(default=16, ge=1, description="radial: lines through the centre")

    def description_for(self, size: int) -> dict:
        return {"kind": self.kind, "size": size, **self.model_dump(exclude={"kind"})}


class BlurForward(Strict):
    """Deblurring: a periodic convolution with a Gaussian or motion kernel."""

    kind: Literal["blur"]
    kernel: Literal["gaussian", "motion"] = "gaussian"
    std: float = Field(default=1.5, gt=0, description="gaussian: standard deviation in pixels")
    length: int = Field(default=7, ge=1, description="motion: length in pixels")
    angle: float = Field(default=0.0, description="motion: direction in radians")
    alpha: float = Field(default=1e-3, gt=0, description="Tikhonov weight of the first reconstruction")

    def description_for(self, size: int) -> dict:
        return {"kind": self.kind, "size": size, **self.model_dump(exclude={"kind"})}


class IntegrationForward(Strict):
    """1-D integration on [0, 1] (the Bremen talk's example): signals of `size` points."""

    kind: Literal["integration"]
    alpha: float = Field(default=1e-3, gt=0, description="Tikhonov weight of the first reconstruction")

    def description_for(self, size: int) -> dict:
        return {"kind": self.kind, "size": size, **self.model_dump(exclude={"kind"})}


def _forward_kind(value: object) -> str:
    if isinstance(value, dict):
        return value.get("kind", "ct")
    return getattr(value, "kind", "ct")


FORWARD_KINDS = ("ct", *OPERATOR_KINDS)
Forward = Annotated[
    Union[
        Annotated[ForwardConfig, Tag("ct")],
        Annotated[SinglePixelForward, Tag("single_pixel")],
        Annotated[MRIForward, Tag("mri")],
        Annotated[BlurForward, Tag("blur")],
        Annotated[IntegrationForward, Tag("integration")],
    ],
    Discriminator(_forward_kind),
]


class EllipsePriorConfig(Strict):
    name: Literal["ellipses"]
    mean_count: float = Field(default=50.0, gt=0)
    slots: int = Field(default=100, ge=1, le=1000)
    intensity_law: Literal["signed_exponential", "uniform"] = "signed_exponential"
    intensity_scale: float = Field(default=0.4, gt=0)
    intensity_low: float = -0.4
    intensity_high: float = 1.0
    axis_scale: float = Field(default=0.2, gt=0)
    centre_range: float = Field(default=1.0, gt=0, le=1, description="centres ~ U[-r, r]^2")
    normalize_foreground: bool = False
    supersample: int = Field(default=2, ge=1, le=8)

    def build(self, size: int) -> EllipsePrior:
        return EllipsePrior(**self.model_dump(exclude={"name"}))


class FieldComponentConfig(Strict):
    """One Gaussian random field of a mixture (GaussianFieldPriorConfig without the name)."""

    mean: float = 0.5
    std: float = Field(default=0.2, gt=0)
    length_scale: float | tuple[PositiveFloat, PositiveFloat] = Field(
        default=0.2, description="one number, or [vertical, horizontal] (between rows, between columns) for an anisotropic field"
    )
    nugget: float = Field(default=1e-4, ge=0)

    @field_validator("length_scale")
    @classmethod
    def _positive_scale(cls, value: float | tuple[float, float]) -> float | tuple[float, float]:
        if isinstance(value, (int, float)) and value <= 0:
            raise ValueError(f"length_scale must be > 0, got {value}")
        return value


class GaussianFieldPriorConfig(FieldComponentConfig):
    name: Literal["gaussian_field"]

    def build(self, size: int) -> GaussianFieldPrior:
        return GaussianFieldPrior(size, **self.model_dump(exclude={"name"}))


class GaussianMixturePriorConfig(Strict):
    name: Literal["gaussian_mixture"]
    components: list[FieldComponentConfig] = Field(min_length=2)
    weights: list[PositiveFloat]

    @model_validator(mode="after")
    def _one_weight_each(self) -> "GaussianMixturePriorConfig":
        if len(self.weights) != len(self.components):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(self.components)} components (need one each)")
        if abs(sum(self.weights) - 1) > 1e-9:
            raise ValueError(f"weights must sum to 1, got {sum(self.weights)}")
        for i, c in enumerate(self.components):
            if c.nugget <= 0:
                raise ValueError(f"components.{i}.nugget must be > 0 in a mixture (its density needs a full-rank covariance), got {c.nugget}")
        return self

    def build(self, size: int) -> GaussianMixturePrior:
        return GaussianMixturePrior([GaussianFieldPrior(size, **c.model_dump()) for c in self.components], self.weights)


class GaussianProcessPriorConfig(Strict):
    """A 1-D Gaussian process on [0, 1] (signals, for the integration kind)."""

    name: Literal["gaussian_process"]
    mean: float = 0.0
    std: float = Field(default=1.0, gt=0)
    length_scale: float = Field(default=0.1, gt=0, description="correlation length on [0, 1]")
    nugget: float = Field(default=1e-4, ge=0)

    def build(self, size: int) -> GaussianProcessPrior:
        return GaussianProcessPrior(size, **self.model_dump(exclude={"name"}))


class PoissonJumpPriorConfig(Strict):
    """Piecewise constant 1-D signals on [0, 1]: a Poisson number of jumps, a Gaussian level per piece."""

    name: Literal["poisson_jumps"]
    rate: float = Field(default=5.0, gt=0, description="expected jumps on [0, 1]")
    mean: float = 0.0
    std: float = Field(default=1.0, gt=0, description="std of each piece's level")

    def build(self, size: int) -> PoissonJumpPrior:
        return PoissonJumpPrior(size, **self.model_dump(exclude={"name"}))


#: priors of 1-D signals, for the forward kinds of SIGNAL_KINDS; every other prior draws 2-D images
SIGNAL_PRIORS = ("gaussian_process", "poisson_jumps")
PriorConfig = Annotated[
    Union[EllipsePriorConfig, GaussianFieldPriorConfig, GaussianMixturePriorConfig, GaussianProcessPriorConfig, PoissonJumpPriorConfig],
    Field(discriminator="name"),
]


class NoiseConfig(Strict):
    kind: Literal["gaussian"] = "gaussian"
    relative_std: float = Field(ge=0, le=1, description="noise std as a fraction of the mean |A x| over the prior")


class PipelineConfig(Strict):
    seed: int = Field(ge=0)
    forward: Forward
    prior: PriorConfig
    noise: NoiseConfig
    measurement_grid_factor: int = Field(
        default=1, ge=1, le=4, description=">1 simulates measurements on a finer grid (no inverse crime)"
    )
    reference_budgets: dict[ScaleName, ReferenceBudget] = Field(
        default={}, description="this pipeline's reference budget per scale, in place of params.yaml's reference.budgets (a cheap sampler affords more)"
    )
    @model_validator(mode="after")
    def _prior_fits_the_operator(self) -> "PipelineConfig":
        signal_prior, signal_kind = self.prior.name in SIGNAL_PRIORS, self.forward.kind in SIGNAL_KINDS
        if signal_prior != signal_kind:
            what = "1-D signals" if signal_prior else "2-D images"
            needs = f"a forward kind of {list(SIGNAL_KINDS)}" if signal_prior else f"a prior of 2-D images, not one of {list(SIGNAL_PRIORS)}"
            raise ValueError(f"prior {self.prior.name!r} draws {what}, forward kind {self.forward.kind!r} needs {needs}")
        return self

    @model_validator(mode="after")
    def _grid_factor_supported(self) -> "PipelineConfig":
        if self.measurement_grid_factor > 1 and self.prior.name != "ellipses":
            raise ValueError(
                f"measurement_grid_factor > 1 needs a prior defined in the continuum (ellipses), "
                f"not {self.prior.name!r}"
            )
        if self.measurement_grid_factor > 1 and self.forward.kind != "ct":
            raise ValueError(f"measurement_grid_factor > 1 needs the ray transform (forward kind ct), not {self.forward.kind!r}")
        return self


ClassicalMethod = Literal["fbp", "first", "tv", "linear_mmse", "pnp"]
#: the forward kinds a classical method applies to (absent: every kind). FBP is
#: CT's; `first`, the operator's own first reconstruction, stands in for it
#: on the other kinds (on CT it would repeat FBP untuned).
CLASSICAL_KINDS: dict[str, tuple[str, ...]] = {"fbp": ("ct",), "first": tuple(OPERATOR_KINDS)}
LearnedMethod = Literal["postproc", "lgd", "lpd"]
SamplerMethod = Literal["cwgan"]
PerItemMethod = Literal["dip", "adp"]
GenerativeMethod = Literal["gen_range", "gen_soft"]
PriorModel = Literal["denoiser", "vae"]
#: the prior model a method uses
USES_PRIOR_MODEL: dict[str, str] = {"pnp": "denoiser", "gen_range": "vae", "gen_soft": "vae"}


class Pipelines(Strict):
    classical_methods: list[ClassicalMethod] = ["fbp", "first", "tv"]
    learned_methods: list[LearnedMethod] = Field(default=["postproc", "lgd", "lpd"], description="trained from scratch on MSE")
    sampler_methods: list[SamplerMethod] = Field(
        default=[], description="posterior samplers whose generator starts from the trained postproc"
    )
    per_item_methods: list[PerItemMethod] = Field(
        default=[], description="optimised per measurement by the `solve` stage, on the first `solve.items` test items"
    )
    generative_methods: list[GenerativeMethod] = Field(
        default=[], description="optimised per measurement with the trained vae (`solve_generative` stage), on the first `solve.items` test items"
    )
    prior_models: list[PriorModel] = Field(default=[], description="models of the prior's images that methods use (pnp: denoiser; gen_*: vae)")
    pipelines: dict[str, PipelineConfig]
    # Kept apart from `pipelines` because DVC tracks pipelines.NAME as the
    # simulate stage's params: a new schedule must not make the data stale.
    schedules: dict[str, str] = Field(default={}, description="pipeline -> cron (UTC) of its scheduled retraining")

    @field_validator("schedules")
    @classmethod
    def _valid_crons(cls, schedules: dict[str, str]) -> dict[str, str]:
        for name, cron in schedules.items():
            try:
                CronSim(cron, datetime(2000, 1, 1))
            except CronSimError as e:
                raise ValueError(f"{name}: {cron!r} is not a cron expression ({e})") from None
        return schedules

    def classical_methods_for(self, pipeline: str) -> list[str]:
        """The classical methods that apply to the pipeline's forward kind."""
        kind = self.pipelines[pipeline].forward.kind
        return [m for m in self.classical_methods if kind in CLASSICAL_KINDS.get(m, (kind,))]

    def not_applicable(self, pipeline: str) -> dict[str, str]:
        """Listed classical methods the pipeline's forward kind skips, with why."""
        kind = self.pipelines[pipeline].forward.kind
        return {
            m: f"applies to forward kind(s) {', '.join(CLASSICAL_KINDS[m])}, not {kind}"
            for m in self.classical_methods if m not in self.classical_methods_for(pipeline)
        }

    @property
    def trained_methods(self) -> list[str]:
        """Every method with a trained model: learned, then sampler methods."""
        return [*self.learned_methods, *self.sampler_methods]

    @property
    def solved_methods(self) -> list[str]:
        """Every method the solve stages optimise per measurement."""
        return [*self.per_item_methods, *self.generative_methods]

    @property
    def trained_models(self) -> list[str]:
        """Every trained model: the trained methods', then the prior models."""
        return [*self.trained_methods, *self.prior_models]

    @model_validator(mode="after")
    def _samplers_have_their_start(self) -> "Pipelines":
        if self.sampler_methods and "postproc" not in self.learned_methods:
            raise ValueError(
                f"sampler_methods {self.sampler_methods} start from the trained postproc, "
                f"which learned_methods {self.learned_methods} lacks"
            )
        return self

    @model_validator(mode="after")
    def _prior_models_listed(self) -> "Pipelines":
        for method in [*self.classical_methods, *self.solved_methods]:
            model = USES_PRIOR_MODEL.get(method)
            if model is not None and model not in self.prior_models:
                raise ValueError(f"{method} uses the trained {model}, which prior_models {self.prior_models} lacks")
        return self

    @model_validator(mode="after")
    def _schedules_name_pipelines(self) -> "Pipelines":
        unknown = sorted(set(self.schedules) - set(self.pipelines))
        if unknown:
            raise ValueError(f"schedules for undefined pipeline(s) {unknown} (defined: {sorted(self.pipelines)})")
        return self


# --- loading -----------------------------------------------------------------------
def _read_yaml(path: Path) -> object:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def _format(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: {error.error_count()} invalid value(s)"]
    for e in error.errors():
        loc = [p for i, p in enumerate(e["loc"]) if not (i and e["loc"][i - 1] == "forward" and p in FORWARD_KINDS)]  # pydantic's union tag
        key = ".".join(str(p) for p in loc) or "(top level)"
        got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
        lines.append(f"  {key}: {e['msg']}{got}")
    return "\n".join(lines)


def _validate(model: type[BaseModel], path: Path) -> BaseModel:
    data = _read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format(path, e)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Validated params.yaml."""
    return _validate(Params, Path(path))  # type: ignore[return-value]


def load_catalogue(path: str | Path = "pipelines.yaml", pipeline: str | None = None) -> Pipelines:
    """Validated pipelines.yaml: the methods and the pipelines; when `pipeline`
    is given, also a check that it is defined."""
    catalogue: Pipelines = _validate(Pipelines, Path(path))  # type: ignore[assignment]
    if pipeline is not None and pipeline not in catalogue.pipelines:
        raise ConfigError(f"{path}: no pipeline {pipeline!r} (defined: {sorted(catalogue.pipelines)})")
    return catalogue


def load_pipelines(path: str | Path = "pipelines.yaml") -> dict[str, PipelineConfig]:
    """Validated pipelines.yaml, by pipeline name."""
    return load_catalogue(path).pipelines

