"""Closed-form Gaussian posterior: agrees with dense linear algebra and with sampling."""

from __future__ import annotations

import math

import pytest
import torch

from recongap.operators import Blur, RayTransform, SinglePixel, UndersampledFourier
from recongap.posterior import GaussianPosterior
from recongap.priors import GaussianFieldPrior


#: the closed form needs only the operator interface: every 2-D kind
OPERATORS = {
    "ct": lambda: RayTransform(8, angles=5),
    "single_pixel": lambda: SinglePixel(8, 20),
    "mri": lambda: UndersampledFourier.cartesian(8, 2),
    "blur": lambda: Blur.gaussian(8, 1.0),
}


@pytest.fixture(scope="module", params=list(OPERATORS))
def setting(request):
    prior = GaussianFieldPrior(8, mean=0.5, std=0.3, length_scale=0.3, nugget=1e-3)
    op = OPERATORS[request.param]()
    return prior, op, GaussianPosterior(prior, op, noise_std=0.05)


def test_matches_dense_formulas(setting, generator):
    prior, op, post = setting
    n = 64
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 8, 8)
    cov = prior.covariance_apply(eye).reshape(n, n)  # prior covariance, dense
    a = op(eye.unsqueeze(1)).reshape(n, -1).T  # (m, n)
    k = a @ cov @ a.T + 0.05**2 * torch.eye(a.shape[0], dtype=torch.float64)
    y = torch.rand(3, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    mu = torch.full((n,), 0.5, dtype=torch.float64)
    dense_mean = mu + (cov @ a.T @ torch.linalg.solve(k, (y.reshape(3, -1) - a @ mu).T)).T
    dense_cov = cov - cov @ a.T @ torch.linalg.solve(k, a @ cov)
    assert torch.allclose(post.mean(y).reshape(3, -1), dense_mean, atol=1e-9)
    assert torch.allclose(post.pixel_variance.reshape(-1), torch.diagonal(dense_cov), atol=1e-10)


def test_bayes_mse_is_the_realised_error_of_the_posterior_mean(setting, generator):
    prior, op, post = setting
    n = 4000
    x = prior.render(prior.sample(n, generator), 8)
    y = op(x) + 0.05 * torch.randn(n, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    errors = ((post.mean(y) - x) ** 2).flatten(1).mean(1)
    se = float(errors.std()) / math.sqrt(n)
    assert float(errors.mean()) == pytest.approx(post.bayes_mse(), abs=3 * se)
    # and it beats the prior mean, which ignores y
    assert post.bayes_mse() < prior.std**2 * float(prior.covariance_diagonal().mean())


def test_size_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"prior images are \(8, 8\) but the operator maps"):
        GaussianPosterior(GaussianFieldPrior(8), RayTransform(16, angles=3), 0.1)
