"""The seed talks' other reconstructors: each test asserts the behaviour that
makes the method what it is (issue 21)."""

from __future__ import annotations

import json

import pytest
import torch
from sklearn.covariance import LedoitWolf

from recongap.datasets import DataError
from recongap.metrics import mse
from recongap.operators import RayTransform
from recongap.operators.integration import Integration
from recongap.posterior import GaussianPosterior
from recongap.priors import GaussianProcessPrior
from recongap.reconstructors.analytic_deep_prior import AnalyticDeepPrior
from recongap.reconstructors.deep_image_prior import DeepImagePrior
from recongap.reconstructors.generative import GenerativeRange, GenerativeSoft, VAEModule, VariationalAutoencoder
from recongap.reconstructors.linear_mmse import EmpiricalMoments, LinearMMSE
from recongap.reconstructors.plug_and_play import DenoiserModule, PlugAndPlay
from recongap.solved import SolvedItems


@pytest.fixture(scope="module")
def ct():
    """16x16 smooth random images, 8 angles, 2% noise."""
    g = torch.Generator().manual_seed(0)
    op = RayTransform(16, angles=8)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 20, 20, generator=g), 5, stride=1)
    clean = op(x)
    return op, x, clean + 0.02 * float(clean.abs().mean()) * torch.randn(clean.shape, generator=g)


# --- linear_mmse ----------------------------------------------------------------------
def test_empirical_moments_apply_the_shrunk_sample_covariance():
    images = torch.randn(50, 1, 6, dtype=torch.float64) @ torch.randn(6, 6, dtype=torch.float64)
    moments = EmpiricalMoments(images)
    flat = images.reshape(50, -1)
    sample = torch.cov(flat.T, correction=0)
    a = moments.shrinkage
    dense = (1 - a) * sample + a * torch.trace(sample) / 6 * torch.eye(6, dtype=torch.float64)
    v = torch.randn(3, 6, dtype=torch.float64)
    assert 0 < a < 1 and a == pytest.approx(LedoitWolf(assume_centered=False).fit(flat.numpy()).shrinkage_, rel=1e-6)
    assert torch.allclose(moments.covariance_apply(v), v @ dense, atol=1e-10)
    assert torch.allclose(moments.variance_image(), torch.diagonal(dense), atol=1e-12)
    assert torch.allclose(moments.mean_image(), flat.mean(0), atol=1e-12)


def test_linear_mmse_from_many_gaussian_draws_approaches_the_exact_posterior_mean():
    """On a Gaussian prior the exact E[x|y] is linear: the estimator built from
    training draws alone must come within a small fraction of its error."""
    g = torch.Generator().manual_seed(1)
    prior, op, noise = GaussianProcessPrior(32, length_scale=0.2), Integration(32), 0.01
    train = prior.render(prior.sample(4000, g), 32)
    x = prior.render(prior.sample(64, g), 32)
    y = op(x) + noise * torch.randn(x.shape, generator=g, dtype=x.dtype)
    exact = GaussianPosterior(prior, op, noise).mean(y)
    estimate = LinearMMSE(op, train, noise)(y)
    assert float(mse(estimate, exact).mean()) < 0.05 * float(mse(exact, x).mean())
    assert LinearMMSE(op, train[:8], noise).fit(y, x)["shrinkage"] > 0  # few images: shrunk


# --- pnp --------------------------------------------------------------------------------
def test_plug_and_play_reaches_a_fixed_point_of_its_iteration(ct):
    """With a non-expansive denoiser (a blur, contracting by its noise level)
    the iteration converges: T(x) = x at the returned x."""
    op, x, y = ct

    def denoiser(image: torch.Tensor, level: float) -> torch.Tensor:
        return (1 - level) * torch.nn.functional.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)

    pnp = PlugAndPlay(op, denoiser, iterations=300, steps=(1.0,), noise_levels=(0.05,))
    pnp.step, pnp.noise_level = 1.0, 0.05
    assert float(pnp.fixed_point_residual(y).max()) < 1e-5
    short = PlugAndPlay(op, denoiser, iterations=3, steps=(1.0,), noise_levels=(0.05,))
    assert float(short.fixed_point_residual(y).min()) > 1e-3  # three iterations are not there yet


def test_plug_and_play_fit_takes_the_best_of_its_grid(ct):
    op, x, y = ct
    pnp = PlugAndPlay(op, lambda image, level: image / (1 + level), iterations=5, steps=(0.5, 1.0), noise_levels=(0.01, 0.5))
    chosen = pnp.fit(y, x)
    errors = {}
    for step in (0.5, 1.0):
        for level in (0.01, 0.5):
            pnp.step, pnp.noise_level = step, level
            errors[(step, level)] = float(mse(pnp(y), x).mean())
    assert (chosen["step"], chosen["noise_level"]) == min(errors, key=errors.get)


def test_denoiser_training_step_learns(ct):
    _, x, _ = ct
    torch.manual_seed(0)
    module = DenoiserModule("denoiser", RayTransform(16, angles=8).geometry.resolved(), {"channels": 4, "depth": 1, "max_noise": 0.2})
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = module.training_step((None, x), 0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


# --- dip ---------------------------------------------------------------------------------
def test_deep_image_prior_fit_decreases_the_data_misfit(ct):
    op, x, y = ct
    dip = DeepImagePrior(op, channels=4, depth=2, max_iterations=60, record_every=20)
    image, misfits = dip.trajectory(y[:1], 60, 0.0)
    assert misfits[-1] < 0.1 * misfits[0]
    assert torch.equal(dip.trajectory(y[:1], 60, 0.0)[0], image)  # same seed, same fit


def test_deep_image_prior_chooses_the_best_recorded_iteration_and_solves_to_it(ct):
    op, x, y = ct
    dip = DeepImagePrior(op, channels=4, depth=2, max_iterations=40, record_every=20, tv_weights=(0.0, 1e-3))
    recorded: dict[tuple[float, int], list[float]] = {}
    images: dict[tuple[float, int, int], torch.Tensor] = {}
    for w in (0.0, 1e-3):
        for i in range(2):
            def record(step, image, w=w, i=i):
                recorded.setdefault((w, step), []).append(float(mse(image, x[i : i + 1])))
                images[(w, step, i)] = image
            dip.trajectory(y[i : i + 1], 40, w, record)
    best = min(recorded, key=lambda key: sum(recorded[key]))
    chosen = dip.fit(y[:2], x[:2])
    assert (chosen["tv_weight"], chosen["iterations"]) == best
    assert torch.allclose(dip.solve(y[1:2]), images[(*best, 1)])  # solving stops where the choice was scored
    with pytest.raises(ValueError, match="one measurement at a time"):
        dip.trajectory(y[:2], 5, 0.0)


# --- adp ---------------------------------------------------------------------------------
def test_analytic_deep_prior_on_the_talks_integration_example():
    """The Bremen talk's academic example: A integration on [0, 1], the truth
    its first singular function u, the data perturbed along v = A u / ||A u||
    only. Fitting B moves it along v u^T alone (rank one, as the talk derives)
    and x(B) then fits the data along u, free of Tikhonov's shrinkage: closer
    to the truth than Tikhonov with the same weight."""
    n = 100
    op = Integration(n)
    left, sigma, right = torch.linalg.svd(op.matrix())
    u, v = right[0].float().reshape(1, 1, n), left[:, 0].float().reshape(1, 1, n)
    y = op(u) - 0.1 * float(sigma[0]) * v
    adp = AnalyticDeepPrior(op, layers=10, lr=1.0, max_iterations=600, record_every=100, alphas=(0.2,))
    x, delta, misfits = adp.trajectory(y, 600, 0.2)
    matrix = op.matrix()
    tikhonov = torch.linalg.solve(matrix.T @ matrix + 0.2 * adp.norm2 * torch.eye(n, dtype=torch.float64), matrix.T @ y.reshape(-1).double())
    assert float((x - u).norm()) < 0.6 * float((tikhonov.float() - u.reshape(-1)).norm())
    d = delta.double()
    assert float((left[:, 0] @ d @ right[0]).abs() / d.norm()) > 0.99
    assert misfits[-1] < 0.05 * misfits[0]


# --- gen_range, gen_soft -----------------------------------------------------------------
@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VariationalAutoencoder(RayTransform(16, angles=8), latent=6, channels=4, depth=2).eval()


def test_generative_range_output_lies_in_the_generators_range(ct, vae):
    op, x, y = ct
    method = GenerativeRange(op, vae, noise_std=0.01, iterations=50, weights=(1.0,))
    z = method.latent_solution(y)
    estimate = method.solve(y)
    assert torch.allclose(estimate, vae(z), atol=1e-6)  # x = G(z*)
    misfit = lambda image: float(((op(image) - y) ** 2).sum())  # noqa: E731
    with torch.no_grad():
        assert misfit(estimate) < misfit(vae(torch.zeros_like(z)))  # z* fits the data better than z = 0


def test_generative_items_optimised_together_stay_independent(ct, vae):
    op, x, y = ct
    for method in (GenerativeRange(op, vae, noise_std=0.01, iterations=20), GenerativeSoft(op, vae, noise_std=0.01, iterations=20)):
        assert torch.allclose(method.solve(y)[1:2], method.solve(y[1:2]), atol=1e-5)


def test_generative_soft_leaves_the_range_to_fit_the_data(ct, vae):
    """With a loose distance to the range, the soft form fits the data better than any point of the range found."""
    op, x, y = ct
    ranged = GenerativeRange(op, vae, noise_std=0.01, iterations=100, weights=(1.0,)).solve(y)
    soft = GenerativeSoft(op, vae, noise_std=0.01, iterations=100, distance_stds=(1.0,), latent_weights=(1.0,)).solve(y)
    misfit = lambda image: ((op(image) - y) ** 2).flatten(1).sum(1)  # noqa: E731
    assert bool((misfit(soft) < misfit(ranged)).all())


def test_vae_learns_to_autoencode(ct):
    _, x, _ = ct
    torch.manual_seed(0)
    module = VAEModule("vae", RayTransform(16, angles=8).geometry.resolved(), {"latent": 6, "channels": 4, "depth": 2, "recon_std": 0.1})
    with torch.no_grad():
        before = float(mse(module.restore(x), x).mean())
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    for _ in range(60):
        optimizer.zero_grad()
        module.training_step((None, x), 0).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(mse(module.restore(x), x).mean()) < 0.5 * before
    with pytest.raises(ValueError, match="divisible by 8"):
        VariationalAutoencoder(RayTransform(12, angles=4), depth=3)


# --- the solve stage's store ---------------------------------------------------------------
def test_solved_items_resume_only_an_interrupted_run_with_the_same_settings(tmp_path):
    store = SolvedItems(tmp_path / "dip")
    assert store.start({"a": 1, "grid": (0.1, 1.0)}) is False
    store.write_chosen({"iterations": 5})
    store.write("0000", torch.ones(1, 1, 4), 2.0)
    # interrupted: the same settings (a tuple reads back as a list) resume
    assert SolvedItems(tmp_path / "dip").start({"a": 1, "grid": (0.1, 1.0)}) is True and store.has("0000")
    with pytest.raises(DataError, match=r"items \['0001', 'phantom'\] not solved \(run `dvc repro solve@p-dip`\)"):
        store.read(2, "dvc repro solve@p-dip")
    store.write("0001", 2 * torch.ones(1, 1, 4), 4.0)
    store.write("phantom", torch.zeros(1, 1, 4), 1.0)
    estimates, phantom, seconds, chosen = store.read(2, "x")
    assert estimates.shape == (2, 1, 4) and float(estimates[1].mean()) == 2 and seconds == 3.0 and chosen == {"iterations": 5}
    store.finish()
    assert store.start({"a": 1, "grid": (0.1, 1.0)}) is False and not store.has("0000")  # finished: DVC reran it, afresh
    store.write("0000", torch.ones(1, 1, 4), 2.0)
    assert store.start({"a": 2}) is False and not store.has("0000")  # other settings: afresh
    assert json.loads((tmp_path / "dip" / "settings.json").read_text()) == {"a": 2}
