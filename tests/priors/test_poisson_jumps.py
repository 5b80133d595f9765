"""Piecewise constant signals with Poisson jumps, and their exact reference:
the prior's law on the grid, the collapsed evidence of a jump configuration,
exact draws given it, and Gibbs sweeps that reach E[x|y] as enumerating
every configuration computes it."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from recongap.config.schema import PipelineConfig
from recongap.operators import Integration
from recongap.posterior import ReferenceSettings, sample_reference
from recongap.posterior.jump_gibbs import JumpEvidence
from recongap.priors import PoissonJumpPrior


def test_draws_are_piecewise_constant_with_the_poisson_jump_law(generator):
    prior = PoissonJumpPrior(32, rate=4.0, mean=1.0, std=0.5)
    x = prior.sample(4000, generator)
    jumps = prior.jumps_of(x)
    assert prior.render(x[:3], 32).shape == (3, 1, 32)
    # each of the 31 gaps changes the signal with probability 1 - exp(-rate / n), independently
    p, count = 1 - math.exp(-4.0 / 32), jumps.double().sum(1)
    assert float(count.mean()) == pytest.approx(31 * p, abs=4 * math.sqrt(31 * p * (1 - p) / 4000))
    assert float(jumps.double().mean(0).std()) < 0.03  # no gap preferred
    # each piece a N(mean, std^2) level: the first point's level, and fresh after a jump
    first = x[:, 0]
    assert float(first.mean()) == pytest.approx(1.0, abs=4 * 0.5 / math.sqrt(4000))
    assert float(first.std()) == pytest.approx(0.5, rel=0.05)
    after = x[:, 1:][jumps] - x[:, :-1][jumps]  # the difference of two independent levels: std 0.5 sqrt(2)
    assert float(after.std()) == pytest.approx(0.5 * math.sqrt(2), rel=0.06)


@pytest.fixture(scope="module")
def small():
    """n = 8 points: 2^7 jump configurations, few enough to enumerate."""
    n, noise = 8, 0.05
    prior, op = PoissonJumpPrior(n, rate=3.0, mean=0.2, std=1.0), Integration(n)
    g = torch.Generator().manual_seed(0)
    x = prior.sample(1, g)
    y = op(x.unsqueeze(1)) + noise * torch.randn(1, 1, n, generator=g, dtype=torch.float64)
    return prior, op, noise, x, y


def _enumerated(prior, op, noise, y):
    """Every configuration: its evidence, posterior weight, E[x | b, y] and
    Cov[x | b, y], from dense Gaussian algebra."""
    n = prior.size
    configs = torch.tensor(list(itertools.product([False, True], repeat=n - 1)))
    a = op.matrix()
    piece = torch.cat([torch.zeros(len(configs), 1, dtype=torch.long), configs.long().cumsum(1)], 1)
    g = prior.std**2 * (piece[:, :, None] == piece[:, None, :]).double()  # Cov[x | b]
    s = a @ g @ a.T + noise**2 * torch.eye(n, dtype=torch.float64)
    r = y.reshape(1, n) - prior.mean * a.sum(1)
    log_evidence = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), s).log_prob(r)
    weights = torch.softmax(log_evidence + prior.jumps_log_prob(configs), 0)
    means = prior.mean + (g @ a.T @ torch.linalg.solve(s, r.expand(len(configs), n).unsqueeze(2)))[..., 0]
    covariances = g - g @ a.T @ torch.linalg.solve(s, a @ g)
    return configs, log_evidence, weights, means, covariances


def test_the_collapsed_evidence_is_the_gaussian_density_of_the_data(small):
    prior, op, noise, _, y = small
    configs, log_evidence, *_ = _enumerated(prior, op, noise, y)
    evidence = JumpEvidence(prior, op, noise, y.expand(len(configs), 1, -1))
    assert torch.allclose(evidence.log_likelihood(configs), log_evidence, atol=1e-8)
    assert torch.allclose(evidence.log_likelihood_dense(configs), log_evidence, atol=1e-8)


def test_draws_given_the_jumps_have_the_conditional_mean(small):
    prior, op, noise, _, y = small
    configs, _, _, means, covariances = _enumerated(prior, op, noise, y)
    k = 37  # one configuration, drawn many times
    evidence = JumpEvidence(prior, op, noise, y.expand(20000, 1, -1))
    draws = evidence.draw(configs[k].expand(20000, -1), torch.Generator().manual_seed(1))
    assert torch.allclose(draws.mean(0), means[k], atol=4 * float(draws.std(0).max()) / math.sqrt(20000))
    covariance = covariances[k]  # and the conditional covariance
    assert torch.allclose(torch.cov(draws.T), covariance, atol=0.05 * float(covariance.diagonal().max()))
    assert torch.equal(draws[:, 1:] != draws[:, :-1], configs[k].expand(20000, -1))  # constant on its pieces, jumping where b says


def test_gibbs_sweeps_reach_the_enumerated_posterior_mean(small):
    torch.set_num_threads(1)
    prior, op, noise, x, y = small
    _, _, weights, means, covariances = _enumerated(prior, op, noise, y)
    exact = (weights[:, None] * means).sum(0)
    # the exact posterior variance: within-configuration variance plus the spread of the conditional means
    within = torch.diagonal(covariances, dim1=1, dim2=2)
    exact_var = (weights[:, None] * (within + means**2)).sum(0) - exact**2
    settings = ReferenceSettings(chains=4, warmup=20, draws=600, thin=10, start="truth", projections=2)
    (result,) = sample_reference(prior, op, noise, y, settings, truth=x.unsqueeze(1), truth_params=x)
    ess = result.diagnostics["ess_min"]
    z = (result.mean.flatten() - exact).abs() / (result.std.flatten() / math.sqrt(ess))
    assert float(z.max()) < 4, (result.mean.flatten(), exact)
    # a variance from ~400 effective draws of a mixture is good to some 20% (at 6000 draws: within 6%)
    assert torch.allclose(result.std.flatten() ** 2, exact_var, rtol=0.3), (result.std.flatten() ** 2, exact_var)
    assert result.diagnostics["sampler"] == "gibbs" and result.diagnostics["rhat_max"] < 1.05
    assert set(result.diagnostics["acceptance"]) == {"flip", "shift"}


def test_a_jump_prior_is_for_signals_and_has_no_tempering():
    with pytest.raises(ValueError, match="draws 1-D signals"):
        PipelineConfig.model_validate(
            {"seed": 1, "forward": {"kind": "blur"}, "prior": {"name": "poisson_jumps"}, "noise": {"relative_std": 0.01}}
        )
    prior, op = PoissonJumpPrior(8), Integration(8)
    y = op(prior.render(prior.sample(1, torch.Generator().manual_seed(0)), 8))
    with pytest.raises(ValueError, match="no tempering"):
        sample_reference(prior, op, 0.1, y, ReferenceSettings(temperatures=2))


def test_a_pipeline_sets_its_own_reference_budget(tmp_path):
    """integration_jumps' `reference_budgets` replaces params.yaml's for its scale:
    the reference stage samples that many items, and a budget the test split
    cannot meet is refused naming the pipeline's key."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "smoke"
    params["scales"]["smoke"] = {"size": 16, "splits": {"train": 4, "val": 4, "test": 4}}
    pipelines = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    entry = pipelines["pipelines"]["integration_jumps"]

    def run(items: int, *stages: str) -> subprocess.CompletedProcess:
        entry["reference_budgets"] = {"smoke": {"items": items, "warmup": 2, "draws": 10}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(pipelines))
        for stage in stages:
            out = ["--out", str(tmp_path / ("data" if stage == "simulate" else "models"))]
            data = ["--data", str(tmp_path / "data")] if stage == "reference" else []
            result = subprocess.run(
                [sys.executable, "-m", f"tasks.{stage}", "integration_jumps", "--params", str(tmp_path / "params.yaml"),
                 "--pipelines", str(tmp_path / "pipelines.yaml"), *out, *data],
                cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(),
            )
        return result

    assert run(3, "simulate").returncode == 0
    assert run(3, "reference").returncode == 0
    assert len(list((tmp_path / "models" / "integration_jumps" / "reference").glob("item_*.npz"))) == 3
    refused = run(5, "reference")
    assert refused.returncode != 0
    assert "pipelines.integration_jumps.reference_budgets.smoke.items = 5 but" in refused.stderr
    entry["reference_budgets"] = {"smoke": {"items": 2, "warmup": 2, "draws": 4}}  # fewer draws than reference.thin
    assert params["reference"]["thin"] > 4
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(pipelines))
    short = subprocess.run(
        [sys.executable, "-m", "tasks.reference", "integration_jumps", "--params", str(tmp_path / "params.yaml"),
         "--pipelines", str(tmp_path / "pipelines.yaml"), "--data", str(tmp_path / "data"), "--out", str(tmp_path / "models")],
        cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(),
    )
    assert short.returncode != 0 and "reference_budgets.smoke.draws = 4 keeps no sample" in short.stderr
