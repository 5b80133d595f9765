"""The Gaussian-mixture prior and its exact posterior, against brute force on an 8x8 grid."""

from __future__ import annotations

import math

import pytest
import torch

from recongap.operators import RayTransform
from recongap.posterior import GaussianPosterior, ReferenceSettings, sample_reference
from recongap.posterior.gaussian_mixture import GaussianMixturePosterior
from recongap.posterior.reference import closed_form_check
from recongap.posterior.store import is_flagged
from recongap.priors import GaussianFieldPrior, GaussianMixturePrior

SIZE, NOISE = 8, 0.2


def _mixture() -> GaussianMixturePrior:
    return GaussianMixturePrior(
        [
            GaussianFieldPrior(SIZE, mean=0.6, std=0.15, length_scale=0.5, nugget=1e-3),  # smooth and bright
            GaussianFieldPrior(SIZE, mean=0.3, std=0.3, length_scale=0.1, nugget=1e-3),  # rough and dim
            GaussianFieldPrior(SIZE, mean=0.45, std=0.2, length_scale=(0.1, 0.6), nugget=1e-3),  # anisotropic
        ],
        [0.5, 0.3, 0.2],
    )


@pytest.fixture(scope="module")
def setting():
    prior, op = _mixture(), RayTransform(SIZE, angles=4)
    return prior, op, GaussianMixturePosterior(prior, op, NOISE)


def _dense(prior: GaussianMixturePrior, op: RayTransform):
    """Each component's mean and covariance, and A, as dense matrices."""
    n = SIZE * SIZE
    eye = torch.eye(n, dtype=torch.float64).reshape(n, SIZE, SIZE)
    a = op(eye.unsqueeze(1)).reshape(n, -1).T
    comps = [(torch.full((n,), c.mean, dtype=torch.float64), c.covariance_apply(eye).reshape(n, n)) for c in prior.components]
    return a, comps


def _covariance_matches(draws: torch.Tensor, exact: torch.Tensor) -> None:
    """The draws' covariance against `exact`: in Frobenius norm within 1.5 times
    its sampling error (sqrt((tr^2 + ||S||^2) / n) for Gaussian draws), and
    every variance within 5 of its standard errors (sqrt(2 / n) var)."""
    n = draws.shape[0]
    sample = torch.cov(draws.T)
    noise = math.sqrt((float(torch.trace(exact)) ** 2 + float(torch.linalg.norm(exact)) ** 2) / n)
    assert float(torch.linalg.norm(sample - exact)) < 1.5 * noise
    variance = torch.diagonal(exact)
    assert float(((torch.diagonal(sample) - variance).abs() / (variance * math.sqrt(2 / n))).max()) < 5


def test_the_prior_density_and_moments_match_dense_gaussians(generator):
    prior = _mixture()
    a, comps = _dense(prior, RayTransform(SIZE, angles=4))
    images, labels = prior.sample_with_labels(4000, generator)
    flat = images.reshape(4000, -1)
    dense = torch.logsumexp(
        torch.stack([torch.distributions.MultivariateNormal(m, c).log_prob(flat[:5]) + math.log(w) for (m, c), w in zip(comps, prior.weights.tolist())]), 0
    )
    torch.testing.assert_close(prior.log_prob(images[:5]), dense, rtol=1e-10, atol=1e-8)
    counts = torch.bincount(labels, minlength=3).to(torch.float64) / 4000
    assert (counts - prior.weights).abs().max() < 4 * math.sqrt(0.25 / 4000)
    # the overall moments a linear estimator uses, against the draws
    mean = prior.mean_image().reshape(-1)
    cov = prior.covariance_apply(torch.eye(SIZE * SIZE, dtype=torch.float64).reshape(-1, SIZE, SIZE)).reshape(64, 64)
    torch.testing.assert_close(torch.diagonal(cov).reshape(SIZE, SIZE), prior.variance_image(), rtol=1e-10, atol=1e-12)
    se = (torch.diagonal(cov) / 4000).sqrt()
    assert ((flat.mean(0) - mean).abs() / se).max() < 4.5
    _covariance_matches(flat, cov)


def test_bad_mixtures_are_refused():
    field = GaussianFieldPrior(SIZE)
    with pytest.raises(ValueError, match="at least 2 components"):
        GaussianMixturePrior([field], [1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixturePrior([field, field], [0.5, 0.6])
    with pytest.raises(ValueError, match="nugget > 0"):
        GaussianMixturePrior([field, GaussianFieldPrior(SIZE, nugget=0.0)], [0.5, 0.5])
    with pytest.raises(ValueError, match="share one grid size"):
        GaussianMixturePrior([field, GaussianFieldPrior(16)], [0.5, 0.5])


def test_the_posterior_weights_mean_and_variance_match_brute_force(setting, generator):
    prior, op, post = setting
    a, comps = _dense(prior, op)
    x = prior.render(prior.sample(6, generator), SIZE)
    y = op(x) + NOISE * torch.randn(6, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    flat_y = y.reshape(6, -1)
    log_w, means, covs = [], [], []
    for (m, c), w in zip(comps, prior.weights.tolist()):
        k = a @ c @ a.T + NOISE**2 * torch.eye(a.shape[0], dtype=torch.float64)
        log_w.append(torch.distributions.MultivariateNormal(a @ m, k).log_prob(flat_y) + math.log(w))
        means.append(m + (c @ a.T @ torch.linalg.solve(k, (flat_y - a @ m).T)).T)
        covs.append(c - c @ a.T @ torch.linalg.solve(k, a @ c))
    weights = torch.softmax(torch.stack(log_w, 1), 1)
    mean = (weights[:, :, None] * torch.stack(means, 1)).sum(1)
    second = sum(weights[:, k, None] * (torch.diagonal(covs[k]) + means[k] ** 2) for k in range(3))
    torch.testing.assert_close(post.weights(y), weights, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(post.mean(y).reshape(6, -1), mean, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(post.pixel_variance(y).reshape(6, -1), second - mean**2, rtol=1e-7, atol=1e-10)
    # the check means something only if some item's weights are mixed
    assert float(weights.max(1).values.min()) < 0.99


def test_exact_draws_have_the_posterior_mean_and_covariance(setting, generator):
    prior, op, post = setting
    x = prior.render(prior.sample(20, generator), SIZE)
    y = op(x) + NOISE * torch.randn(20, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    w = post.weights(y)
    mixed = int((w * w.clamp_min(1e-300).log()).sum(1).argmin())  # the item whose components are least told apart
    y = y[mixed : mixed + 1]
    assert float(post.weights(y).max()) < 0.9
    draws = post.sample(y, 20000, generator).reshape(20000, -1)
    mean, variance = post.mean(y).reshape(-1), post.pixel_variance(y).reshape(-1)
    assert ((draws.mean(0) - mean).abs() / (variance / 20000).sqrt()).max() < 4.5
    a, comps = _dense(prior, op)
    w = post.weights(y)[0]
    component_means = [c.mean(y).reshape(-1) for c in post.components]
    exact = -torch.outer(mean, mean)
    for k, (m, c) in enumerate(comps):
        gain = c @ a.T @ torch.linalg.inv(a @ c @ a.T + NOISE**2 * torch.eye(a.shape[0], dtype=torch.float64))
        exact = exact + w[k] * (c - gain @ a @ c + torch.outer(component_means[k], component_means[k]))
    _covariance_matches(draws, exact)


def test_the_exact_mean_beats_the_best_linear_estimator(setting, generator):
    """E[x|y] is the Bayes estimator; the LMMSE from the mixture's overall mean
    and covariance is the best linear one. On mixture draws the first has the
    lower error, by more than three paired standard errors."""
    prior, op, post = setting
    linear = GaussianPosterior(prior, op, NOISE)
    x = prior.render(prior.sample(2000, generator), SIZE)
    y = op(x) + NOISE * torch.randn(2000, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    exact_err = ((post.mean(y) - x) ** 2).flatten(1).mean(1)
    linear_err = ((linear.mean(y) - x) ** 2).flatten(1).mean(1)
    difference = linear_err - exact_err
    assert float(difference.mean()) > 3 * float(difference.std()) / math.sqrt(2000)
    # and the linear estimator's realised error is its own formula's (trace of its error covariance)
    se = float(linear_err.std()) / math.sqrt(2000)
    assert abs(float(linear_err.mean()) - linear.bayes_mse()) < 3 * se


@pytest.mark.parametrize("weights, agrees", [([0.5, 0.5], False), ([1 - 1e-8, 1e-8], True)])
def test_chains_that_cannot_reach_both_modes_disagree_with_the_closed_form(weights, agrees):
    """Two rough fields 0.4 apart in level, each 0.05 wide, and data that say
    almost nothing: with weights 1/2 the posterior has two far modes and chains
    started at a truth in one of them never reach the other, so their mean
    misses the exact one by many Monte Carlo errors and the item is flagged;
    with (all but 1e-8 of) the weight on the truth's component the same chains agree
    (at 1e-3 the exact mean moves by 1e-3 x 0.4, a few Monte Carlo errors)."""
    torch.set_num_threads(1)
    fields = [GaussianFieldPrior(SIZE, mean=level, std=0.05, length_scale=0.1, nugget=1e-2) for level in (0.3, 0.7)]
    prior, op, noise = GaussianMixturePrior(fields, weights), RayTransform(SIZE, angles=4), 50.0
    x = fields[0].render(fields[0].sample(1, torch.Generator().manual_seed(0)), SIZE)  # a truth from the first component
    y = op(x) + noise * torch.randn(1, 1, *op.range_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    settings = ReferenceSettings(chains=4, warmup=150, draws=300, thin=10, leapfrog_steps=8, start="truth", projections=8)
    (result,) = sample_reference(prior, op, noise, y, settings, truth=x, truth_params=x[:, 0])
    exact = GaussianMixturePosterior(prior, op, noise)
    check = closed_form_check(result.diagnostics["summaries"], exact.mean(y), settings.projections)
    assert check["agrees"] is agrees and (agrees or check["max_abs_z"] > 100), check
    diagnostics = {**result.diagnostics, "rhat_max": 1.0, "ess_min": 1e6, "closed_form": check}  # only the check can flag
    assert is_flagged(diagnostics, 1.01, 100) is not agrees


def test_the_roi_probability_is_the_fraction_of_exact_draws(setting, generator):
    """P(a . x > 0 | y) in closed form (a mixture of normal CDFs) against the
    fraction of 20000 exact draws, for a = mean inside a disk - mean around it."""
    from recongap.uncertainty import disk_mask, roi_direction

    prior, op, post = setting
    x = prior.render(prior.sample(3, generator), SIZE)
    y = op(x) + NOISE * torch.randn(3, 1, *op.range_shape, generator=generator, dtype=torch.float64)
    a = roi_direction(disk_mask(SIZE, (4, 4), 1.5))
    exact = post.probability_positive(a, y)
    draws = post.sample(y, 20000, generator)
    fraction = ((draws.flatten(2) @ a.reshape(-1)) > 0).double().mean(1)
    se = (exact * (1 - exact) / 20000).sqrt().clamp_min(1e-4)
    assert float(((fraction - exact).abs() / se).max()) < 4.5
    assert float((exact - 0.5).abs().min()) < 0.45  # not every answer is a certainty
