"""Priors that generate the data; `log_prob` serves the MCMC reference."""

from .ellipses import EllipsePrior, render_ellipses, shepp_logan
from .gaussian_field import GaussianFieldPrior

__all__ = ["EllipsePrior", "GaussianFieldPrior", "render_ellipses", "shepp_logan"]
