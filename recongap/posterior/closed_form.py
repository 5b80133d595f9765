"""Which priors have an exact posterior under a linear operator and Gaussian noise."""

from __future__ import annotations

from ..operators import LinearOperator
from ..priors import GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior
from .gaussian import GaussianPosterior
from .gaussian_mixture import GaussianMixturePosterior


def closed_form_posterior(prior: object, operator: LinearOperator, noise_std: float) -> GaussianPosterior | GaussianMixturePosterior | None:
    """The exact posterior (mean(y), pixel_std(y), sample) of a Gaussian (2-D field,
    1-D process) or Gaussian-mixture prior; None for a prior without one (ellipses)."""
    if isinstance(prior, (GaussianFieldPrior, GaussianProcessPrior)):
        return GaussianPosterior(prior, operator, noise_std)
    if isinstance(prior, GaussianMixturePrior):
        return GaussianMixturePosterior(prior, operator, noise_std)
    return None
