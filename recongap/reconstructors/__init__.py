"""Reconstruction methods: a string-keyed registry of classical and learned ones."""

from .classical import FBPReconstructor, FirstReconstruction, TVReconstructor
from .networks import LearnedGradientDescent, LearnedPrimalDual, PostProcessing, UNet
from .registry import RECONSTRUCTORS, Method, build_network, get_method

__all__ = [
    "FBPReconstructor",
    "LearnedGradientDescent",
    "LearnedPrimalDual",
    "Method",
    "PostProcessing",
    "RECONSTRUCTORS",
    "TVReconstructor",
    "UNet",
    "build_network",
    "get_method",
]
