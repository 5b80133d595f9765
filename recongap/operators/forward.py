"""A forward operator from its description, the plain dict that data files,
checkpoints and runs record (under the key `geometry`, its name from when CT
was the only kind, so that every older file still reads).

CT: a `Geometry`'s fields, whose `kind` is `parallel` or `fan`. Every other
kind: `{kind: single_pixel | mri | blur | integration, size, ...its options}`,
the options as pipelines.yaml's `forward` entry spells them
(recongap.config.schema); `size` is the image side, or the number of points
of integration's 1-D signals.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from .base import LinearOperator
from .blur import Blur
from .geometry import Geometry
from .integration import Integration
from .mri import UndersampledFourier
from .ray_transform import RayTransform
from .single_pixel import SinglePixel

CT_KINDS = ("parallel", "fan")


def _single_pixel(size: int, patterns: int) -> SinglePixel:
    return SinglePixel(size, patterns)


def _mri(size: int, mask: str, acceleration: int, centre_fraction: float, mask_seed: int, spokes: int) -> UndersampledFourier:
    if mask == "radial":
        return UndersampledFourier.radial(size, spokes)
    return UndersampledFourier.cartesian(size, acceleration, centre_fraction, mask_seed)


def _blur(size: int, kernel: str, std: float, length: int, angle: float, alpha: float) -> Blur:
    if kernel == "motion":
        return Blur.motion(size, length, angle, alpha)
    return Blur.gaussian(size, std, alpha)


def _integration(size: int, alpha: float) -> Integration:
    return Integration(size, alpha)


OPERATOR_KINDS: dict[str, Callable[..., LinearOperator]] = {
    "single_pixel": _single_pixel, "mri": _mri, "blur": _blur, "integration": _integration,
}
#: the kinds whose images are 1-D signals (B, 1, n) rather than (B, 1, n, n)
SIGNAL_KINDS = ("integration",)


def operator_kind(description: Mapping[str, Any]) -> str:
    """`ct` for a ray transform's geometry, else the description's kind."""
    kind = description.get("kind", CT_KINDS[0])
    return "ct" if kind in CT_KINDS else kind


def operator_from(description: Mapping[str, Any]) -> LinearOperator:
    """The operator a description names (a RayTransform on the torch backend for CT)."""
    kind = operator_kind(description)
    if kind == "ct":
        return RayTransform.from_geometry(Geometry(**description))
    if kind not in OPERATOR_KINDS:
        known = ["ct (geometry parallel or fan)", *OPERATOR_KINDS]
        raise ValueError(f"unknown forward operator kind {kind!r} in {dict(description)}; known: {known}")
    options = {k: v for k, v in description.items() if k != "kind"}
    try:
        return OPERATOR_KINDS[kind](**options)
    except TypeError as e:
        raise ValueError(f"{kind} operator description {dict(description)} does not fit its options: {e}") from None


def canonical(description: Mapping[str, Any] | Geometry) -> dict:
    """A form of the description in which two equal operators compare equal: a CT
    geometry with every default filled in; any other kind with its keys
    sorted (its builder takes every option, and pipelines.yaml's schema
    writes them all, so no default is left to fill)."""
    if isinstance(description, Geometry):
        return description.resolved()
    if operator_kind(description) == "ct":
        return Geometry(**description).resolved()
    return dict(sorted(description.items()))
