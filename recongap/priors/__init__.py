"""Priors that generate the data; `log_prob` serves the MCMC reference."""

from .ellipses import EllipsePrior, render_ellipses, shepp_logan
from .gaussian_field import GaussianFieldPrior
from .gaussian_mixture import GaussianMixturePrior

__all__ = ["EllipsePrior", "GaussianFieldPrior", "GaussianMixturePrior", "render_ellipses", "shepp_logan"]
