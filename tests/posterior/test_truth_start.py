"""Chains started at the simulated truth: exact where the answer is known, and
never trusted when they do not move."""

from __future__ import annotations

import math

import arviz
import numpy as np
import pytest
import torch

from recongap.operators import RayTransform
from recongap.posterior import GaussianPosterior, ReferenceSettings, is_converged, sample_reference
from recongap.posterior.mcmc import run_hmc_from_truth
from recongap.posterior.reference import _Target, summary_projections
from recongap.priors import EllipsePrior, GaussianFieldPrior

SIZE = 32


def _gaussian_field_items(size: int, angles: int, items: int, noise: float, seed: int):
    """Simulated Gaussian-field test items: prior, operator, true parameters, images, measurements."""
    prior = GaussianFieldPrior(size, mean=0.5, std=0.2, length_scale=0.3, nugget=1e-3)
    op = RayTransform(size, angles=angles)
    gen = torch.Generator().manual_seed(seed)
    params = prior.sample(items, gen)
    x = prior.render(params, size)
    y = op(x) + noise * torch.randn(items, 1, *op.range_shape, generator=gen, dtype=torch.float64)
    return prior, op, params, x, y


@pytest.mark.parametrize("mass", ["pilot", "gauss_newton"])
def test_truth_started_chains_match_the_closed_form_and_both_bayes_errors_agree(mass):
    """Gaussian field: the mean image, projected on the summary directions,
    within 3 MCSE of the exact posterior mean; the two Bayes-error estimates
    (posterior variance, ||mean - x*||^2) agree with the closed form's."""
    torch.set_num_threads(1)
    size, noise = 16, 0.1
    prior, op, params, x, y = _gaussian_field_items(size, angles=8, items=6, noise=noise, seed=11)
    settings = ReferenceSettings(chains=4, warmup=100, draws=800, thin=8, seed=2, start="truth", mass=mass)
    results = sample_reference(prior, op, noise, y, settings, truth=x, truth_params=params)
    exact = GaussianPosterior(prior, op, noise)
    exact_mean = exact.mean(y)
    directions = summary_projections((size, size), settings.projections)
    for b, result in enumerate(results):
        assert result.diagnostics["start"] == "truth"
        summaries = result.diagnostics["summaries"]
        for k in range(settings.projections):
            s = summaries[f"projection_{k}"]
            z = abs(s["mean"] - float(directions[k] @ exact_mean[b].flatten())) / s["mcse"]
            assert z < 3, (b, k, z)
        assert is_converged(result.diagnostics, rhat_max=1.05, ess_min=100)
    variance = np.array([r.diagnostics["bayes_mse"]["variance"] for r in results])
    truth_based = np.array([r.diagnostics["bayes_mse"]["truth"] for r in results])
    assert abs(variance.mean() - exact.bayes_mse()) < 0.05 * exact.bayes_mse()
    # the truth-based estimate is one posterior draw per item: agree within its spread
    se = truth_based.std(ddof=1) / math.sqrt(len(truth_based))
    assert abs(truth_based.mean() - exact.bayes_mse()) < 3 * se
    assert all(abs(r.diagnostics["bayes_mse"]["z"]) < 4 for r in results)


def test_a_float32_render_records_its_log_likelihood_error():
    prior = EllipsePrior(mean_count=5.0, slots=8)
    op = RayTransform(SIZE, angles=6)
    params = prior.sample(2, torch.Generator().manual_seed(2))
    x = prior.render(params, SIZE)
    y = op(x) + 0.01 * torch.randn(2, 1, *op.range_shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    settings = ReferenceSettings(chains=2, warmup=2, draws=4, thin=2, leapfrog_steps=1, start="truth", render_dtype="float32")
    results = sample_reference(prior, op, 0.01, y, settings, truth=x, truth_params=params)
    errors = [r.diagnostics["loglik_render_error"] for r in results]
    assert all(0 < e < 1e-2 for e in errors), errors  # single precision moves it, by little
    (double,) = sample_reference(prior, op, 0.01, y[:1], ReferenceSettings(**{**vars(settings), "render_dtype": "float64"}),
                                 truth=x[:1], truth_params=params[:1])
    assert "loglik_render_error" not in double.diagnostics


def test_chains_stuck_at_the_truth_are_flagged():
    """A kernel that rejects every move (a huge fixed step, no warm-up, data so
    sharp that no birth or death is accepted) leaves every chain at theta*:
    every trace is constant, and only the distance-to-truth trace can tell
    that from agreement. The item must come out unconverged."""
    prior = EllipsePrior(mean_count=3.0, slots=6)
    op = RayTransform(SIZE, angles=6)
    params = prior.sample(1, torch.Generator().manual_seed(4))
    x = prior.render(params, SIZE)
    y = op(x)
    settings = ReferenceSettings(chains=2, warmup=0, draws=20, thin=5, step_size=50.0, leapfrog_steps=1, start="truth")
    (result,) = sample_reference(prior, op, 1e-6, y, settings, truth=x, truth_params=params)
    d = result.diagnostics
    assert d["acceptance"]["hmc"] == 0 and d["acceptance"]["birth_death"] == 0
    assert d["summaries"]["mse_to_truth"]["mean"] == 0
    assert d["summaries"]["mean_intensity"]["rhat"] == 1.0  # constant, and alone it would pass
    assert math.isinf(d["summaries"]["mse_to_truth"]["rhat"]) and d["summaries"]["mse_to_truth"]["ess"] == 0
    assert not is_converged(d)


def test_one_ellipse_posterior_mean_matches_quadrature():
    """One ellipse at 32x32 with two free parameters, centre x and intensity
    (the rest fixed at the truth): the posterior is not Gaussian in image
    space, and its exact mean image is a 2-D integral, done here by dense
    quadrature. The truth-started sampler's mean must agree within 3 MCSE,
    on the parameters and on the image's summary projections."""
    torch.set_num_threads(1)
    prior = EllipsePrior(mean_count=1.0, slots=1)
    op = RayTransform(SIZE, angles=6)
    noise = 0.1
    truth = torch.tensor([[[0.5, 0.35, 0.2, 0.1, -0.05, 0.4]]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    y = op(prior.render(truth, SIZE)) + noise * torch.randn(1, 1, *op.range_shape, generator=gen, dtype=torch.float64)

    def full(q: torch.Tensor) -> torch.Tensor:  # (T, 2) free (centre x, intensity) -> (T, 1, 6)
        params = truth.expand(q.shape[0], 1, 6).clone()
        params[:, 0, 3], params[:, 0, 0] = q[:, 0], q[:, 1]
        return params

    def log_posterior(q: torch.Tensor) -> torch.Tensor:
        params = full(q)
        target = _Target(prior, SIZE, op, noise, y.expand(q.shape[0], -1, -1, -1))
        return target.log_likelihood(params.reshape(q.shape[0], -1)) + prior.slot_log_density(params)[:, 0]

    # quadrature on a box wide enough that its edges carry no mass (checked)
    cx, cv = torch.linspace(-0.12, 0.26, 91, dtype=torch.float64), torch.linspace(0.24, 0.72, 81, dtype=torch.float64)
    grid = torch.cartesian_prod(cx, cv)
    log_p = torch.cat([log_posterior(chunk) for chunk in grid.split(2048)]).reshape(91, 81)
    log_p = log_p - log_p.max()
    assert max(log_p[[0, -1]].max(), log_p[:, [0, -1]].max()) < -20
    weights = log_p.exp().flatten() / log_p.exp().sum()
    directions = summary_projections((SIZE, SIZE), 8)
    images = torch.cat([prior.render(full(chunk), SIZE).flatten(1) for chunk in grid.split(2048)])
    exact = {"x": float(weights @ grid[:, 0]), "v": float(weights @ grid[:, 1])}
    exact |= {f"projection_{k}": float(weights @ (images @ directions[k])) for k in range(8)}

    chains, draws = 4, 1000
    q_truth = truth[0, :, [3, 0]].expand(chains, 2).clone()
    traces = np.zeros((chains, draws, 10))

    def on_draw(i: int, q: torch.Tensor, u: torch.Tensor) -> None:
        image = prior.render(full(q), SIZE).flatten(1)
        traces[:, i, :2] = q.numpy()
        traces[:, i, 2:] = (image @ directions.T).numpy()

    run_hmc_from_truth(
        lambda q: -log_posterior(q), q_truth, warmup=150, draws=draws, leapfrog_steps=3, step_size=0.01,
        target_accept=0.8, generator=torch.Generator().manual_seed(3), on_draw=on_draw,
    )
    for j, name in enumerate(exact):
        trace = traces[..., j]
        assert float(arviz.rhat(trace)) < 1.02, name
        z = abs(trace.mean() - exact[name]) / float(arviz.mcse(trace))
        assert z < 3, (name, trace.mean(), exact[name], z)


def test_the_probe_flags_a_mode_the_kept_chains_never_visit():
    """Frozen chains (every move rejected) make the comparison exact: chains
    held at the true parameters are not flagged, since no prior-started probe
    chain fits the data better; chains held at a wrong "truth" (the ellipses'
    intensities flipped, a far worse fit than even an empty image) are,
    because the probe's empty chain already beats them."""
    prior = EllipsePrior(mean_count=2.0, slots=4)
    op = RayTransform(SIZE, angles=6)
    params = prior.sample(3, torch.Generator().manual_seed(8))[2:3]
    assert (params[0, :, 0] != 0).sum() > 0
    x = prior.render(params, SIZE)
    y = op(x)
    frozen = ReferenceSettings(chains=2, warmup=0, draws=8, thin=4, step_size=50.0, leapfrog_steps=1, start="truth", probe_chains=2)
    (held,) = sample_reference(prior, op, 1e-3, y, frozen, truth=x, truth_params=params)
    assert held.diagnostics["probe"]["multimodal"] is False
    flipped = params.clone()
    flipped[..., 0] = -flipped[..., 0]
    (wrong,) = sample_reference(prior, op, 1e-3, y, frozen, truth=prior.render(flipped, SIZE), truth_params=flipped)
    probe = wrong.diagnostics["probe"]
    assert probe["multimodal"] is True and probe["probe_median_log_posterior"] > probe["kept_best_log_posterior"]


def test_the_probe_stays_quiet_on_a_unimodal_posterior_it_reaches():
    """Gaussian field (one mode): probe chains from prior draws warm up into
    the same mode as the kept ones. Their best draws beat the kept chains'
    median every time, which is why the rule compares a probe chain's median
    with the kept chains' best instead: no item may be flagged."""
    size, noise = 8, 0.1
    prior, op, params, x, y = _gaussian_field_items(size, angles=6, items=4, noise=noise, seed=21)
    settings = ReferenceSettings(chains=4, warmup=50, draws=100, thin=5, seed=1, start="truth", probe_chains=2)
    results = sample_reference(prior, op, noise, y, settings, truth=x, truth_params=params)
    probes = [r.diagnostics["probe"] for r in results]
    assert not any(p["multimodal"] for p in probes), probes
    # the probe did reach the mode: its typical fit is within the kept chains' range
    lp = [r.diagnostics["summaries"]["log_posterior"]["mean"] for r in results]
    assert all(p["probe_median_log_posterior"] > m - 10 for p, m in zip(probes, lp)), (probes, lp)
