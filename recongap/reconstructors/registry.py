"""The method registry: names -> how to build them, and what needs retraining.

Builders are named ("module:Class") and imported when first used, so a stage
imports the code of the methods it runs and no other (the train stage never
runs the per-measurement methods, nor the linear estimator's posterior code).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..operators import LinearOperator

_HERE = "recongap.reconstructors"


@dataclass(frozen=True)
class Method:
    name: str
    learned: bool
    #: "module:Class" (or function) that builds it from the operator and its params.yaml options
    builder: str
    #: hyper-parameters whose change invalidates a trained model
    retrain: tuple[str, ...]
    #: "module:Class" of the LightningModule that trains a learned method
    lightning_module: str = f"{_HERE}.lightning:ReconstructionModule"
    #: what building it takes besides the operator and its params.yaml options:
    #: "train_images", "noise_std", or a trained prior model ("denoiser", "vae")
    needs: tuple[str, ...] = ()
    #: optimised per measurement: run item by item by a solve stage on the
    #: first test items, not batched by `evaluate`
    per_item: bool = False
    #: a model of the prior's images (trained like a learned method, on images
    #: only), not a reconstructor: other methods use it
    prior_model: bool = False

    @property
    def build(self) -> Callable[..., object]:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


RECONSTRUCTORS: dict[str, Method] = {
    "fbp": Method("fbp", False, f"{_HERE}.classical:FBPReconstructor", ()),
    "first": Method("first", False, f"{_HERE}.classical:FirstReconstruction", ()),
    "tv": Method("tv", False, f"{_HERE}.classical:TVReconstructor", ()),
    "linear_mmse": Method("linear_mmse", False, f"{_HERE}.linear_mmse:LinearMMSE", (), needs=("train_images", "noise_std")),
    "pnp": Method("pnp", False, f"{_HERE}.plug_and_play:PlugAndPlay", (), needs=("denoiser",)),
    "dip": Method("dip", False, f"{_HERE}.deep_image_prior:DeepImagePrior", (), per_item=True),
    "adp": Method("adp", False, f"{_HERE}.analytic_deep_prior:AnalyticDeepPrior", (), per_item=True),
    "gen_range": Method("gen_range", False, f"{_HERE}.generative:GenerativeRange", (), needs=("vae", "noise_std"), per_item=True),
    "gen_soft": Method("gen_soft", False, f"{_HERE}.generative:GenerativeSoft", (), needs=("vae", "noise_std"), per_item=True),
    "denoiser": Method(
        "denoiser", True, f"{_HERE}.plug_and_play:Denoiser", ("channels", "depth", "max_noise"), f"{_HERE}.plug_and_play:DenoiserModule",
        prior_model=True,
    ),
    "vae": Method(
        "vae", True, f"{_HERE}.generative:VariationalAutoencoder", ("latent", "channels", "depth", "recon_std"), f"{_HERE}.generative:VAEModule",
        prior_model=True,
    ),
    "postproc": Method("postproc", True, f"{_HERE}.networks:PostProcessing", ("channels", "depth", "filter")),
    "lgd": Method("lgd", True, f"{_HERE}.networks:LearnedGradientDescent", ("iterations", "memory", "width")),
    "lpd": Method("lpd", True, f"{_HERE}.networks:LearnedPrimalDual", ("iterations", "primal", "dual", "width")),
    # a posterior sampler; `samples` and `std_floor` only matter at evaluation
    "cwgan": Method(
        "cwgan",
        True,
        f"{_HERE}.cwgan:ConditionalGenerator",
        ("channels", "depth", "z_channels", "filter", "critic_width", "n_critic", "gp_weight", "lr", "gradient_clip", "mean_weight", "val_samples", "batch_size"),
        f"{_HERE}.cwgan:CWGANModule",
    ),
}


def get_method(name: str) -> Method:
    if name not in RECONSTRUCTORS:
        raise ValueError(f"unknown method {name!r}; registered: {sorted(RECONSTRUCTORS)}")
    return RECONSTRUCTORS[name]


def build_network(name: str, operator: LinearOperator, **options) -> nn.Module:
    """A learned method's network around `operator`."""
    method = get_method(name)
    if not method.learned:
        raise ValueError(f"method {name!r} is not learned; learned ones: {[m for m, v in RECONSTRUCTORS.items() if v.learned]}")
    return method.build(operator, **options)  # type: ignore[return-value]
