"""Reference posteriors: what the best possible estimator E[x|y] achieves."""

from .gaussian import GaussianPosterior

__all__ = ["GaussianPosterior"]
