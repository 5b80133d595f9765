"""The 1-D Gaussian process prior and what makes the integration pipeline's
reference exact: its covariance, the closed-form posterior under A, the MCMC
reference agreeing with it, and the 1-D SSIM and TV the evaluation uses."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from recongap.metrics import data_range, ssim
from recongap.operators import Integration
from recongap.posterior import GaussianPosterior, ReferenceSettings, closed_form_posterior, sample_reference
from recongap.posterior.reference import closed_form_check
from recongap.priors import GaussianProcessPrior, step_signal
from recongap.reconstructors.classical import TVReconstructor, gradient, gradient_adjoint

N = 16


@pytest.fixture(scope="module")
def prior() -> GaussianProcessPrior:
    return GaussianProcessPrior(N, mean=0.2, std=0.7, length_scale=0.15, nugget=1e-3)


def _kernel(prior: GaussianProcessPrior) -> torch.Tensor:
    t = (torch.arange(N, dtype=torch.float64) + 0.5) / N
    k = torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * prior.length_scale**2))
    return prior.std**2 * (k + prior.nugget * torch.eye(N, dtype=torch.float64))


def test_draws_have_the_squared_exponential_covariance(prior, generator):
    assert prior.render(prior.sample(3, generator), N).shape == (3, 1, N)
    # the draw is linear in z: its covariance is R R^T for R the map from z
    r = (prior.render(torch.eye(N, dtype=torch.float64), N)[:, 0] - prior.mean).T
    assert torch.allclose(r @ r.T, _kernel(prior), atol=1e-10)
    assert torch.allclose(prior.covariance_apply(torch.eye(N, dtype=torch.float64)), _kernel(prior), atol=1e-10)
    assert torch.allclose(prior.variance_image(), torch.diagonal(_kernel(prior)), atol=1e-10)
    with pytest.raises(ValueError, match="defined on 16 points"):
        prior.render(prior.sample(1, generator), 8)


def test_the_closed_form_posterior_under_integration_is_the_dense_one(prior, generator):
    op, noise = Integration(N), 0.01
    post = closed_form_posterior(prior, op, noise)
    assert isinstance(post, GaussianPosterior)
    a, cov = op.matrix(), _kernel(prior)
    k = a @ cov @ a.T + noise**2 * torch.eye(N, dtype=torch.float64)
    y = torch.randn(4, 1, N, generator=generator, dtype=torch.float64) * 0.1
    dense_mean = prior.mean + (cov @ a.T @ torch.linalg.solve(k, (y[:, 0] - a @ prior.mean_image()).T)).T
    assert torch.allclose(post.mean(y)[:, 0], dense_mean, atol=1e-9)
    assert torch.allclose(post.pixel_variance.reshape(-1), torch.diagonal(cov - cov @ a.T @ torch.linalg.solve(k, a @ cov)), atol=1e-10)
    assert post.sample(y, 5, generator).shape == (4, 5, 1, N)


def test_the_mcmc_reference_on_signals_agrees_with_the_closed_form(prior):
    torch.set_num_threads(1)
    op, noise = Integration(N), 0.2  # data that leave room: at 0.02 HMC in whitened coordinates mixes slowly (ESS ~ 10-70)
    z = prior.sample(1, torch.Generator().manual_seed(0))
    x = prior.render(z, N)
    y = op(x) + noise * torch.randn(1, 1, N, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    settings = ReferenceSettings(chains=4, warmup=100, draws=200, thin=10, leapfrog_steps=8, start="truth", projections=4)
    (result,) = sample_reference(prior, op, noise, y, settings, truth=x, truth_params=z)
    assert result.mean.shape == (1, 1, N) and result.samples.shape[-2:] == (1, N)
    check = closed_form_check(result.diagnostics["summaries"], GaussianPosterior(prior, op, noise).mean(y), settings.projections)
    assert check["agrees"], check
    assert {"pixel_8", "pixel_4", "pixel_12"} <= set(result.diagnostics["summaries"])


def test_ssim_of_signals_is_torchmetrics_on_images_constant_along_rows(generator):
    truth = torch.cumsum(torch.randn(3, 1, 40, generator=generator, dtype=torch.float64), -1)
    estimate = truth + 0.5 * torch.randn(3, 1, 40, generator=generator, dtype=torch.float64)
    as_images = [v[:, :, None, :].expand(3, 1, 24, 40) for v in (estimate, truth)]
    expected = torch.stack([
        structural_similarity_index_measure(as_images[0][i : i + 1], as_images[1][i : i + 1], data_range=float(data_range(truth)[i]))
        for i in range(3)
    ])
    assert torch.allclose(ssim(estimate, truth), expected, atol=1e-6)
    assert torch.allclose(ssim(truth, truth), torch.ones(3, dtype=torch.float64))


def test_tv_on_signals_recovers_a_step_better_than_tikhonov():
    x = step_signal(64).double()
    op = Integration(64, alpha=1e-3)
    y = op(x) + 1e-3 * torch.randn(1, 1, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g = torch.randn(1, 1, 64, dtype=torch.float64)
    assert float((gradient(x) * g).sum()) == pytest.approx(float((x * gradient_adjoint(g)).sum()), abs=1e-12)
    tv = TVReconstructor(op, weight=1e-3, iterations=10000)(y)  # PDHG converges slowly here: A is nearly singular
    error = lambda e: float(((e - x) ** 2).mean())  # noqa: E731
    assert error(tv) < 0.5 * error(op.first_reconstruction(y))  # jumps are what TV keeps and Tikhonov smears
    assert math.isfinite(error(tv))
