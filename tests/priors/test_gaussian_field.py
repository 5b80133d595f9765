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

def test_an_anisotropic_field_has_the_kernel_it_states(generator):
    """length_scale (rows, cols): Cov[x_ij, x_kl] = std^2 (k_r(i, k) k_c(j, l) + nugget [same pixel]),
    written out pixel by pixel; and the image density is that Gaussian's."""
    size, std, nugget = 6, 0.3, 1e-3
    prior = GaussianFieldPrior(size, mean=0.2, std=std, length_scale=(0.1, 0.5), nugget=nugget)
    centres = -1 + (torch.arange(size, dtype=torch.float64) + 0.5) * 2 / size
    rows = torch.exp(-((centres[:, None] - centres[None, :]) ** 2) / (2 * 0.1**2))
    cols = torch.exp(-((centres[:, None] - centres[None, :]) ** 2) / (2 * 0.5**2))
    dense = std**2 * (torch.kron(rows, cols) + nugget * torch.eye(size * size, dtype=torch.float64))
    eye = torch.eye(size * size, dtype=torch.float64).reshape(-1, size, size)
    torch.testing.assert_close(prior.covariance_apply(eye).reshape(size * size, -1), dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(prior.variance_image().reshape(-1), torch.diagonal(dense), rtol=0, atol=1e-12)
    images = prior.render(prior.sample(3, generator), size)[:, 0]
    expected = torch.distributions.MultivariateNormal(torch.full((size * size,), 0.2, dtype=torch.float64), dense).log_prob(images.reshape(3, -1))
    torch.testing.assert_close(prior.image_log_prob(images), expected, rtol=1e-10, atol=1e-8)
    with pytest.raises(ValueError, match="invalid GaussianFieldPrior"):
        GaussianFieldPrior(size, length_scale=(0.1, -0.5))
