"""The MCMC reference sampler against closed forms and its own diagnostics."""

from __future__ import annotations

import math

import arviz
import numpy as np
import pytest
import torch

from recongap.operators import RayTransform
from recongap.posterior import GaussianPosterior, ReferenceSettings, is_converged, sample_reference
from recongap.posterior.reference import summary_pixels
from recongap.priors import EllipsePrior, GaussianFieldPrior

SIZE, NOISE = 16, 0.1


@pytest.fixture(scope="module")
def gaussian_run():
    """4 items x 4 chains on a 16x16 Gaussian field, seeded."""
    torch.set_num_threads(1)
    prior = GaussianFieldPrior(SIZE, mean=0.5, std=0.2, length_scale=0.3, nugget=1e-3)
    op = RayTransform(SIZE, angles=8)
    gen = torch.Generator().manual_seed(7)
    x = prior.render(prior.sample(4, gen), SIZE)
    y = op(x) + NOISE * torch.randn(x.shape[0], 1, *op.range_shape, generator=gen, dtype=torch.float64)
    settings = ReferenceSettings(chains=4, warmup=150, draws=480, thin=3, seed=3)
    results = sample_reference(prior, op, NOISE, y, settings, truth=x)
    return prior, op, x, y, settings, results, GaussianPosterior(prior, op, NOISE)


def test_mean_and_std_match_the_closed_form(gaussian_run):
    _, _, _, y, settings, results, exact = gaussian_run
    exact_mean, exact_std = exact.mean(y), exact.pixel_variance.sqrt()
    worst = 0.0
    for b, result in enumerate(results):
        assert result.mean.shape == result.std.shape == (1, 1, SIZE, SIZE)
        assert result.samples.shape == (settings.chains * settings.draws // settings.thin, 1, SIZE, SIZE)
        summaries = result.diagnostics["summaries"]
        draws = result.samples.reshape(settings.chains, -1, SIZE, SIZE).numpy()
        for r, c in summary_pixels((SIZE, SIZE)):
            s = summaries[f"pixel_{r}_{c}"]
            z = abs(s["mean"] - float(exact_mean[b, 0, r, c])) / s["mcse"]
            sd_mcse = float(arviz.mcse(draws[:, :, r, c], method="sd"))
            z_sd = abs(float(result.std[0, 0, r, c]) - float(exact_std[0, 0, r, c])) / sd_mcse
            worst = max(worst, z, z_sd)
            assert z < 3 and z_sd < 3, (b, r, c, z, z_sd)
        # the whole image, on the scale of its pixel std
        assert float(((result.mean - exact_mean[b : b + 1]).abs() / exact_std).max()) < 0.5
    print(f"worst |MCMC - exact| / MCSE over checked pixel means and stds: {worst:.2f}")


def test_bayes_mse_from_mcmc_matches_the_closed_form(gaussian_run):
    """E||E[x|y] - x||^2 = mean posterior variance; each item's MCMC estimate is
    independent, so their spread gives the standard error."""
    *_, results, exact = gaussian_run
    per_item = np.array([float((r.std**2).mean()) for r in results])
    se = per_item.std(ddof=1) / math.sqrt(len(per_item))
    assert abs(per_item.mean() - exact.bayes_mse()) < 3 * se
    assert abs(per_item.mean() - exact.bayes_mse()) < 0.05 * exact.bayes_mse()


def test_diagnostics_are_reported_and_converged(gaussian_run):
    *_, results, _ = gaussian_run
    for result in results:
        d = result.diagnostics
        assert {"mse_to_truth", "mean_intensity"} <= set(d["summaries"])
        assert d["rhat_max"] < 1.05 and d["ess_min"] > 100
        assert d["ess_per_second"] > 0 and d["seconds"] > 0
        assert 0.5 < d["acceptance"]["hmc"] <= 1
        assert is_converged(d, rhat_max=1.05, ess_min=100)
        assert not is_converged(d, rhat_max=1.0, ess_min=100)


def test_unconverged_is_flagged():
    assert not is_converged({"rhat_max": 1.2, "ess_min": 500.0})
    assert not is_converged({"rhat_max": 1.0, "ess_min": 20.0}, ess_min=100)
    assert not is_converged({"rhat_max": float("nan"), "ess_min": 500.0})
    with pytest.raises(ValueError, match="rhat_max"):
        is_converged({"ess_min": 500.0})


def test_bad_inputs_are_refused_before_sampling():
    prior = GaussianFieldPrior(8)
    op = RayTransform(8, angles=4)
    y = torch.zeros(2, 1, *op.range_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"y must have shape \(B, 1, 4,"):
        sample_reference(prior, op, 0.1, y[:, :, :2])
    with pytest.raises(ValueError, match="truth must have shape"):
        sample_reference(prior, op, 0.1, y, truth=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"GaussianFieldPrior of shape \(16, 16\)"):
        sample_reference(GaussianFieldPrior(16), op, 0.1, y)
    with pytest.raises(ValueError, match="chains=1"):
        ReferenceSettings(chains=1)
    with pytest.raises(ValueError, match="beta_min=1.5"):
        ReferenceSettings(temperatures=3, beta_min=1.5)


def test_constant_traces_count_as_agreeing_and_stuck_chains_as_unconverged():
    from recongap.posterior import summarize

    flat = summarize({"empty": np.zeros((4, 50))})["empty"]
    assert flat["rhat"] == 1.0 and flat["mcse"] == 0.0
    stuck = np.zeros((4, 50))
    stuck[1:] = np.random.default_rng(0).normal(size=(3, 50))
    assert summarize({"stuck": stuck})["stuck"]["rhat"] > 1.01


@pytest.mark.slow  # ~30 s of CPU
def test_ellipse_sampler_recovers_the_prior_when_the_data_say_nothing():
    """With noise_std huge the posterior is the prior: the birth/death and
    gradient moves must then reproduce the capped Poisson count law, and the
    mean image is 0 (intensities are symmetric about 0)."""
    prior = EllipsePrior(mean_count=1.5, slots=4)
    op = RayTransform(8, angles=4)
    y = torch.zeros(1, 1, *op.range_shape, dtype=torch.float64)
    settings = ReferenceSettings(chains=8, warmup=40, draws=200, thin=2, leapfrog_steps=1, seed=5)
    (result,) = sample_reference(prior, op, 1e4, y, settings)
    count = result.diagnostics["summaries"]["ellipse_count"]
    pmf = prior.log_count_prob(torch.arange(prior.slots + 1)).exp()
    expected = float((torch.arange(prior.slots + 1) * pmf).sum())
    assert abs(count["mean"] - expected) < 3 * count["mcse"], (count, expected)
    assert result.diagnostics["rhat_max"] < 1.1  # a short run: a check of exactness, not of a budget
    image_mean = result.diagnostics["summaries"]["mean_intensity"]
    assert abs(image_mean["mean"]) < 3 * image_mean["mcse"]
    assert 0.2 < result.diagnostics["acceptance"]["birth_death"] < 0.95


def test_ellipse_likelihood_uses_the_finer_measurement_grid():
    """With measurement_grid_factor 2 the data were rendered at 2N and projected
    by the finer operator: the target must reproduce them exactly at the true
    parameters, and the N-grid operator must not."""
    from recongap.datasets.simulate import clean_measurements, measurement_operator
    from recongap.posterior.reference import _Target

    prior = EllipsePrior(mean_count=3, slots=5)
    op = RayTransform(8, angles=4)
    params = prior.sample(3, torch.Generator().manual_seed(2))
    fine = measurement_operator(op, 2)
    _, y = clean_measurements(prior, params.to(torch.float64), 8, fine, torch.device("cpu"))
    q = params.reshape(3, -1)
    assert torch.allclose(_Target(prior, 8, fine, 0.1, y.double()).log_likelihood(q), torch.zeros(3, dtype=torch.float64), atol=1e-4)
    assert (_Target(prior, 8, op, 0.1, y.double()).log_likelihood(q) < -1e-3).any()
    results = sample_reference(
        prior, op, 0.1, y.double(), ReferenceSettings(chains=2, warmup=2, draws=4, thin=2, leapfrog_steps=1), measurement_grid_factor=2
    )
    assert len(results) == 3 and results[0].samples.shape == (4, 1, 8, 8)
    assert "ellipse_count" in results[0].diagnostics["summaries"]


def sbc_ranks(datasets: int, settings: ReferenceSettings, noise_std: float, seed: int) -> tuple[np.ndarray, int]:
    """Simulation-based calibration (Talts et al. 2018): draw theta from the
    prior, simulate y, sample p(theta|y); the rank of the true mean intensity
    among the thinned posterior draws is uniform on {0..S} iff the sampler is
    exact (ties, e.g. empty images, are broken at random)."""
    prior = EllipsePrior(mean_count=2.0, slots=5)
    op = RayTransform(8, angles=6)
    gen = torch.Generator().manual_seed(seed)
    x = prior.render(prior.sample(datasets, gen), 8)
    y = op(x) + noise_std * torch.randn(datasets, 1, *op.range_shape, generator=gen, dtype=torch.float64)
    results = sample_reference(prior, op, noise_std, y, settings, truth=x)
    rng = np.random.default_rng(seed)
    ranks = []
    for b, result in enumerate(results):
        draws = result.samples.flatten(1).mean(1).numpy()
        true = float(x[b].mean())
        below, ties = int((draws < true - 1e-12).sum()), int((np.abs(draws - true) <= 1e-12).sum())
        ranks.append(below + rng.integers(0, ties + 1))
    return np.array(ranks), result.samples.shape[0]


def rank_uniformity_pvalue(ranks: np.ndarray, draws: int, bins: int) -> float:
    """Chi-square test of the ranks (0..draws) binned into `bins` equal groups."""
    from scipy.stats import chisquare

    counts = np.bincount(ranks * bins // (draws + 1), minlength=bins)
    return float(chisquare(counts).pvalue)


@pytest.mark.slow  # ~40 s of CPU (3.5 min wall on the shared 2-core machine)
def test_sbc_ranks_are_uniform_small():
    """SBC on 8x8 ellipse images (mean_count 2, 5 slots), 24 datasets, 18
    thinned draws each. Seeded run: chi-square p = 0.644 (asserted > 0.01)."""
    settings = ReferenceSettings(chains=2, warmup=40, draws=95, thin=10, leapfrog_steps=1, seed=11)
    ranks, draws = sbc_ranks(24, settings, noise_std=0.05, seed=11)
    p = rank_uniformity_pvalue(ranks, draws, bins=4)
    print(f"SBC (24 datasets, {draws} draws): chi-square p = {p:.3f}; ranks {sorted(ranks.tolist())}")
    assert p > 0.01


def test_replica_exchange_keeps_the_cold_chains_exact():
    """Parallel tempering: the beta = 1 replicas must still sample the exact
    Gaussian posterior while states are swapped with replicas whose posterior
    is up to about twice as wide (beta 1/4), often enough that a wrong swap
    rule shows."""
    torch.set_num_threads(1)
    size = 8
    prior = GaussianFieldPrior(size, mean=0.5, std=0.2, length_scale=0.3, nugget=1e-3)
    op = RayTransform(size, angles=6)
    gen = torch.Generator().manual_seed(11)
    x = prior.render(prior.sample(2, gen), size)
    y = op(x) + NOISE * torch.randn(x.shape[0], 1, *op.range_shape, generator=gen, dtype=torch.float64)
    settings = ReferenceSettings(chains=4, warmup=100, draws=400, thin=4, seed=2, leapfrog_steps=5, temperatures=4, beta_min=0.25)
    results = sample_reference(prior, op, NOISE, y, settings)
    exact = GaussianPosterior(prior, op, NOISE)
    exact_mean, exact_std = exact.mean(y), exact.pixel_variance.sqrt()
    for b, result in enumerate(results):
        assert 0.2 < result.diagnostics["acceptance"]["exchange_min"] <= result.diagnostics["acceptance"]["exchange"] < 0.95
        assert result.samples.shape[0] == settings.chains * settings.draws // settings.thin
        summaries = result.diagnostics["summaries"]
        for r, c in summary_pixels((size, size)):
            s = summaries[f"pixel_{r}_{c}"]
            assert abs(s["mean"] - float(exact_mean[b, 0, r, c])) < 3 * s["mcse"], (b, r, c)
        # hot states leaking into the cold chains would widen them towards 2x
        assert abs(float((result.std / exact_std).mean()) - 1) < 0.05


def test_replica_exchange_swaps_states_and_their_energies():
    """The swap move itself: accepted pairs exchange states, the returned
    potential is the swapped states' potential at their new temperature,
    probabilities sit on the colder row of each pair, and the pairs alternate."""
    from recongap.posterior.reference import _replica_exchange, _Target

    size, levels = 8, 4
    prior = GaussianFieldPrior(size)
    op = RayTransform(size, angles=4)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2 * levels, size * size, generator=gen, dtype=torch.float64)
    y = torch.zeros(2 * levels, 1, *op.range_shape, dtype=torch.float64)
    beta = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64).repeat(2)
    target = _Target(prior, size, op, 1e6, y, beta)  # likelihoods all ~0: every swap is accepted
    move = _replica_exchange(target, levels)
    q1, u1, p1 = move(q, target.potential(q), gen)  # pairs (0,1), (2,3)
    assert torch.allclose(u1, target.potential(q1))
    assert torch.isnan(p1.view(2, levels)[:, [1, 3]]).all() and (p1.view(2, levels)[:, [0, 2]] > 0.999).all()
    assert torch.equal(q1.view(2, levels, -1)[:, [1, 0, 3, 2]], q.view(2, levels, -1))  # all four pairs swapped
    q2, u2, p2 = move(q1, u1, gen)  # pairs (1,2)
    assert torch.allclose(u2, target.potential(q2))
    assert torch.isnan(p2.view(2, levels)[:, [0, 2, 3]]).all()
    assert torch.equal(q2.view(2, levels, -1)[:, [0, 2, 1, 3]], q1.view(2, levels, -1))
