"""Reference posteriors: what the best possible estimator E[x|y] achieves."""

from .diagnostics import is_converged, summarize
from .gaussian import GaussianPosterior
from .reference import ReferenceResult, ReferenceSettings, sample_reference

__all__ = ["GaussianPosterior", "ReferenceResult", "ReferenceSettings", "is_converged", "sample_reference", "summarize"]
