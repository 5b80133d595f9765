"""GaussianFieldPrior: its covariance operator is the covariance of its samples."""

from __future__ import annotations

import math

import pytest
import torch

from recongap.priors import GaussianFieldPrior


def test_samples_have_the_stated_mean_and_covariance(generator):
    prior = GaussianFieldPrior(12, mean=0.5, std=0.3, length_scale=0.3)
    n = 8000
    x = prior.render(prior.sample(n, generator), 12)[:, 0].reshape(n, -1)
    assert float(x.mean()) == pytest.approx(0.5, abs=0.02)
    empirical = torch.cov(x.T)
    for pixel in (0, 30, 77):
        delta = torch.zeros(144, dtype=torch.float64)
        delta[pixel] = 1
        column = prior.covariance_apply(delta.reshape(12, 12)).reshape(-1)
        # Monte-Carlo error of a covariance estimate ~ var * sqrt(2 / n)
        assert torch.allclose(empirical[:, pixel], column, atol=4 * 0.09 * math.sqrt(2 / n))


def test_covariance_sqrt_squares_to_covariance(generator):
    prior = GaussianFieldPrior(10, std=1.0)
    v = torch.randn(10, 10, generator=generator, dtype=torch.float64)
    twice = prior.covariance_sqrt_apply(prior.covariance_sqrt_apply(v))
    assert torch.allclose(twice, prior.covariance_apply(v), atol=1e-10)


def test_log_prob_is_standard_normal(generator):
    prior = GaussianFieldPrior(8)
    z = prior.sample(3, generator)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum((-2, -1))
    assert torch.allclose(prior.log_prob(z), expected)


def test_wrong_sizes_are_refused(generator):
    prior = GaussianFieldPrior(8)
    with pytest.raises(ValueError, match="defined on 8x8"):
        prior.render(prior.sample(1, generator), 16)
    with pytest.raises(ValueError, match=r"\(\.\.\., 8, 8\)"):
        prior.log_prob(torch.zeros(1, 4, 4))
