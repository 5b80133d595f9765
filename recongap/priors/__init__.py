"""Priors that generate the data; `log_prob` serves the MCMC reference."""

from .ellipses import EllipsePrior, render_ellipses, shepp_logan
from .gaussian_field import GaussianFieldPrior
from .gaussian_mixture import GaussianMixturePrior
from .gaussian_process import GaussianProcessPrior, step_signal
from .poisson_jumps import PoissonJumpPrior

__all__ = ["EllipsePrior", "GaussianFieldPrior", "GaussianMixturePrior", "GaussianProcessPrior", "PoissonJumpPrior", "render_ellipses", "shepp_logan", "step_signal"]
