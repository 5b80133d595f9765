"""The method registry: names -> how to build them, and what needs retraining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..operators import LinearOperator
from .classical import FBPReconstructor, FirstReconstruction, TVReconstructor
from .cwgan import ConditionalGenerator
from .networks import LearnedGradientDescent, LearnedPrimalDual, PostProcessing


@dataclass(frozen=True)
class Method:
    name: str
    learned: bool
    build: Callable[..., object]
    #: hyper-parameters whose change invalidates a trained model
    retrain: tuple[str, ...]
    #: "module:Class" of the LightningModule that trains a learned method
    lightning_module: str = "recongap.reconstructors.lightning:ReconstructionModule"


RECONSTRUCTORS: dict[str, Method] = {
    "fbp": Method("fbp", False, FBPReconstructor, ()),
    "first": Method("first", False, FirstReconstruction, ()),
    "tv": Method("tv", False, TVReconstructor, ()),
    "postproc": Method("postproc", True, PostProcessing, ("channels", "depth", "filter")),
    "lgd": Method("lgd", True, LearnedGradientDescent, ("iterations", "memory", "width")),
    "lpd": Method("lpd", True, LearnedPrimalDual, ("iterations", "primal", "dual", "width")),
    # a posterior sampler; `samples` and `std_floor` only matter at evaluation
    "cwgan": Method(
        "cwgan",
        True,
        ConditionalGenerator,
        ("channels", "depth", "z_channels", "filter", "critic_width", "n_critic", "gp_weight", "lr", "gradient_clip", "mean_weight", "val_samples", "batch_size"),
        "recongap.reconstructors.cwgan:CWGANModule",
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
