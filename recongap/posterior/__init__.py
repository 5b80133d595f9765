"""Reference posteriors: what the best possible estimator E[x|y] achieves."""

from .closed_form import closed_form_posterior
from .diagnostics import is_converged, summarize
from .gaussian import GaussianPosterior
from .gaussian_mixture import GaussianMixturePosterior
from .reference import ReferenceResult, ReferenceSettings, sample_reference

__all__ = [
    "GaussianMixturePosterior",
    "GaussianPosterior",
    "ReferenceResult",
    "ReferenceSettings",
    "closed_form_posterior",
    "is_converged",
    "sample_reference",
    "summarize",
]
