"""The reference posterior mean E[x|y] by exact MCMC, with its diagnostics.

For each measurement y the target is p(theta | y) ∝ N(y; A render(theta),
sigma^2 I) p(theta), with A, render and sigma exactly those that made the
data (measurement_grid_factor > 1: rendered on the finer grid and projected by
the same finer-grid operator as the simulation). All items and all their
chains are sampled together in one batch (see mcmc.py). Unconverged is never
silent: every result carries split R-hat and bulk ESS of image-space
summaries; `is_converged` turns them into a yes/no.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

from ..datasets.simulate import measurement_operator
from ..operators import LinearOperator, RayTransform
from ..priors import EllipsePrior, GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior, PoissonJumpPrior
from .diagnostics import summarize
from .ellipse_blocks import EllipseBlockSampler, run_blocks
from .jump_gibbs import JumpEvidence, run_jump_gibbs
from .mcmc import run_hmc, run_hmc_from_truth

Prior = Union[EllipsePrior, GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior, PoissonJumpPrior]


@dataclass
class ReferenceSettings:
    """MCMC budget and tuning; draws are per chain, after warm-up."""

    chains: int = 4
    warmup: int = 300
    draws: int = 500
    thin: int = 5
    step_size: float = 0.01
    target_accept: float = 0.8
    seed: int = 0
    leapfrog_steps: int = 10
    #: replicas per chain (parallel tempering): likelihood exponents beta on a
    #: geometric ladder from 1 down to beta_min (beta scales the noise std by
    #: 1/sqrt(beta)); 1 = plain HMC on the posterior
    temperatures: int = 1
    beta_min: float = 1e-3
    #: "prior": chains start from prior draws (ellipses: every second one empty)
    #: and warm up in place; "truth": a pilot from the true parameters tunes the
    #: kernel, then the kept chains start at the truth with it fixed
    start: str = "prior"
    #: random unit projections of the image added to the summaries
    projections: int = 8
    #: "float32" renders the image and its gradient in single precision (the
    #: potential and gradient 1.4x faster on a CPU at 64x64; the log-likelihood
    #: within 4.7e-4 of float64 at the truth there, docs/benchmarks.md), "float64" in double
    render_dtype: str = "float64"
    #: "pilot": each chain's diagonal mass is the variance its warm-up saw;
    #: "gauss_newton" (start="truth"): the inverse of the Gauss-Newton curvature
    #: at the truth (diagonal of J^T J / sigma^2, J by central differences) plus
    #: the prior's scale, kept fixed; warm-up then tunes the step size only
    mass: str = "pilot"
    #: start="truth" only: extra chains per item from prior draws, run as long
    #: as the kept ones; an item where one of them typically (its median over
    #: its kept draws) fits better than the kept chains ever did (their highest
    #: log posterior) is "multimodal": a region the kept chains never visit.
    #: (A probe's best draw against the kept median would fire on every
    #: unimodal posterior that the probe reaches: its best is in the upper tail.)
    #: 0 = no probe.
    probe_chains: int = 0
    #: "hmc": gradient moves of all slots at once (mcmc.py); "blocks" (ellipses,
    #: start="truth"): a random-walk move of one ellipse at a time with the
    #: residual kept up to date (ellipse_blocks.py); a draw is one sweep.
    #: leapfrog_steps, step_size, target_accept, mass and render_dtype are HMC's only;
    #: "auto": "blocks" for an ellipse prior (without normalize_foreground) with start="truth", else "hmc".
    #: A PoissonJumpPrior, whose jumps are discrete, is always sampled by "gibbs"
    #: (jump_gibbs.py: collapsed Gibbs sweeps of its jump indicators; a draw is one sweep)
    sampler: str = "hmc"
    #: sampler="blocks": birth/death moves after each sweep (each costs about one slot's move)
    birth_death_moves: int = 1
    #: sampler="blocks": joint moves of the data-determined intensities after each sweep
    #: (0 = off: about 2x the intensities' ESS but not the slowest summaries', at 1.8x the cost; docs/benchmarks.md)
    intensity_moves: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.render_dtype not in ("float32", "float64"):
            problems.append(f"render_dtype={self.render_dtype!r} (need 'float32' or 'float64')")
        if self.mass not in ("pilot", "gauss_newton") or (self.mass == "gauss_newton" and self.start != "truth"):
            problems.append(f"mass={self.mass!r} with start={self.start!r} (need 'pilot', or 'gauss_newton' with start='truth')")
        if self.start not in ("prior", "truth"):
            problems.append(f"start={self.start!r} (need 'prior' or 'truth')")
        if self.start == "truth" and self.temperatures > 1:
            # theta* is a draw of the beta = 1 posterior only: hot replicas started there are not stationary
            problems.append(f"start='truth' with temperatures={self.temperatures} (tempered replicas cannot start at the truth)")
        if self.probe_chains > 0 and self.start != "truth":
            problems.append(f"probe_chains={self.probe_chains} with start={self.start!r} (the probe is for start='truth')")
        if self.sampler not in ("auto", "hmc", "blocks", "gibbs") or (self.sampler == "blocks" and self.start != "truth"):
            problems.append(f"sampler={self.sampler!r} with start={self.start!r} (need 'hmc', 'gibbs', or 'blocks' with start='truth')")
        if self.birth_death_moves < 0 or self.intensity_moves < 0:
            problems.append(f"birth_death_moves={self.birth_death_moves}, intensity_moves={self.intensity_moves} (need >= 0)")
        if self.projections < 0 or self.probe_chains < 0:
            problems.append(f"projections={self.projections}, probe_chains={self.probe_chains} (need >= 0)")
        if self.temperatures < 1 or (self.temperatures > 1 and not 0 < self.beta_min < 1):
            problems.append(f"temperatures={self.temperatures}, beta_min={self.beta_min} (need >= 1 and 0 < beta_min < 1)")
        if self.chains < 2:
            problems.append(f"chains={self.chains} (R-hat needs >= 2)")
        if self.draws < 4 or self.warmup < 0 or self.thin < 1 or self.leapfrog_steps < 1:
            problems.append(f"draws={self.draws}, warmup={self.warmup}, thin={self.thin}, leapfrog_steps={self.leapfrog_steps}")
        if not (0 < self.target_accept < 1) or self.step_size <= 0:
            problems.append(f"target_accept={self.target_accept}, step_size={self.step_size}")
        if problems:
            raise ValueError("invalid ReferenceSettings: " + "; ".join(problems))


@dataclass
class ReferenceResult:
    """One item's posterior: mean and pixel std (1, 1, N, N) float64, thinned
    draws (S, 1, N, N), and diagnostics (rhat_max, ess_min, ess_per_second,
    seconds, acceptance, summaries {name: {rhat, ess, mean, mcse}})."""

    mean: torch.Tensor
    std: torch.Tensor
    samples: torch.Tensor
    diagnostics: dict = field(default_factory=dict)


def summary_pixels(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The fixed pixels (2-D images) or points (1-D signals) whose traces enter the diagnostics."""
    h, q = shape[-1] // 2, shape[-1] // 4
    if len(shape) == 1:
        return [(h,), (q,), (3 * q,)]
    return [(h, h), (q, q), (q, 3 * q), (3 * q, h)]


def pixel_name(index: tuple[int, ...]) -> str:
    return "pixel_" + "_".join(str(i) for i in index)


def summary_projections(shape: tuple[int, ...], count: int) -> torch.Tensor:
    """(count, pixels) fixed random unit directions in image space (seeded, so
    every run and item uses the same): their traces see the whole image,
    where a pixel sees one spot."""
    directions = torch.randn(count, math.prod(shape), generator=torch.Generator().manual_seed(20240), dtype=torch.float64)
    return directions / directions.norm(dim=1, keepdim=True)


def closed_form_check(
    summaries: dict[str, dict[str, float]], exact_mean: torch.Tensor, projections: int, items: int = 1, false_alarm: float = 0.05
) -> dict:
    """Where the posterior mean is known exactly (Gaussian and Gaussian-mixture
    priors): each linear image summary's MCMC mean (mean intensity, the fixed
    pixels, the random projections) against its exact value, in Monte Carlo
    standard errors. An item whose worst |z| exceeds the limit disagrees with
    the closed form: its chains miss part of the posterior (a mode they do
    not reach), or have not mixed. The limit is 3, or more where the tests of
    all `items` together would otherwise flag perfect chains more often than
    `false_alarm` (Bonferroni over summaries and items): one flagged item
    marks the whole reference unreliable."""
    shape = tuple(exact_mean.shape[2:])  # (B=1, 1, *image shape)
    flat = exact_mean.reshape(-1).to(torch.float64).cpu()
    image = flat.reshape(shape)
    exact = {"mean_intensity": float(flat.mean())}
    exact |= {pixel_name(p): float(image[p]) for p in summary_pixels(shape)}
    exact |= {f"projection_{k}": float(d @ flat) for k, d in enumerate(summary_projections(shape, projections))}
    tests = len([name for name in exact if name in summaries]) * max(items, 1)
    limit = max(3.0, float(torch.special.ndtri(torch.tensor(1 - false_alarm / (2 * max(tests, 1)), dtype=torch.float64))))
    z = {}
    for name, value in exact.items():
        s = summaries.get(name)
        if s is None:
            continue
        error = s["mean"] - value
        z[name] = math.inf if not s["mcse"] > 0 else abs(error) / s["mcse"]
    worst = max(z.values(), default=math.inf)
    return {"max_abs_z": worst if math.isfinite(worst) else str(worst), "worst": max(z, key=z.get) if z else None, "limit": limit, "agrees": worst <= limit}


class _Target:
    """Log-likelihood and log-prior of flat (T, D) parameters for one prior;
    row i targets p(y | theta)^beta[i] p(theta) (beta = 1: the posterior)."""

    def __init__(
        self, prior: Prior, size: int, measure: LinearOperator, noise_std: float, y: torch.Tensor, beta: torch.Tensor | None = None,
        render_dtype: torch.dtype = torch.float64,
    ) -> None:
        self.prior, self.size, self.measure, self.noise_std, self.y = prior, size, measure, noise_std, y
        self.render_dtype = render_dtype
        self.param_shape = prior.param_shape
        self.beta = torch.ones(y.shape[0], dtype=torch.float64, device=y.device) if beta is None else beta

    def params(self, q: torch.Tensor) -> torch.Tensor:
        params = q.reshape(q.shape[0], *self.param_shape)
        if isinstance(self.prior, EllipsePrior):
            # rotation is periodic: evaluate on [0, 2 pi), where the prior lives
            rot = torch.remainder(params[..., 5], 2 * math.pi)
            params = torch.cat([params[..., :5], rot[..., None]], -1)
        return params

    def image(self, q: torch.Tensor) -> torch.Tensor:
        return self.prior.render(self.params(q), self.size)

    def log_likelihood(self, q: torch.Tensor) -> torch.Tensor:
        fine = self.measure.domain_shape[-1]
        params = self.params(q)
        # the image (and its gradient) in render_dtype; the residual and its square in float64
        rendered = self.prior.render(params.to(self.render_dtype), fine).to(torch.float64)
        residual = self.measure(rendered) - self.y
        return -0.5 * (residual**2).flatten(1).sum(1) / self.noise_std**2

    def log_prior(self, q: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(self.params(q))

    def log_target(self, q: torch.Tensor) -> torch.Tensor:
        return self.beta * self.log_likelihood(q) + self.log_prior(q)

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        return -self.log_target(q)


def _birth_death(target: _Target, generator: torch.Generator):
    """A Metropolis-Hastings move that switches one ellipse slot on or off.

    With probability 1/2 propose a birth: a uniformly chosen inactive slot
    (1/(K-c) each, c active of K) gets parameters phi ~ f, the prior's slot
    density; else a death: a uniformly chosen active slot (1/c) is switched
    off. With log_prob = log P(c) + log[c!(K-c)!/K!] + sum f(active slots),
    the birth ratio c -> c+1 is

        L(theta')/L(theta) * P(c+1)/P(c) * [(c+1)/(K-c)] * f(phi)
            * q(death)/q(birth) = (1/(c+1)) / ((1/(K-c)) f(phi))
        = L(theta')/L(theta) * P(c+1)/P(c),

    the subset-count term cancelling the slot-choice probabilities and f
    cancelling the proposal; death is its inverse. The code evaluates the
    general form (log_prob and the proposal densities) rather than the
    simplified one, so it stays exact if log_prob changes. A birth with no
    free slot or a death with none active is rejected (the state stays).
    """
    prior = target.prior
    assert isinstance(prior, EllipsePrior)
    k = prior.slots

    def move(q: torch.Tensor, u: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device, dtype = q.device, q.dtype
        t = q.shape[0]
        with torch.no_grad():
            params = target.params(q)  # rotation wrapped to [0, 2 pi)
            active = params[..., 0] != 0
            c = active.sum(1).to(dtype)
            birth = torch.rand(t, generator=gen, dtype=torch.float64).to(device) < 0.5
            scores = torch.rand(t, k, generator=gen, dtype=torch.float64).to(device)
            # uniform choice among inactive (birth) or active (death) slots
            eligible = torch.where(birth[:, None], ~active, active)
            slot = torch.where(eligible, scores, torch.full_like(scores, -1.0)).argmax(1)
            possible = eligible.any(1)
            new_slot = prior.sample_slots((t,), gen).to(device, dtype)
            chosen = torch.nn.functional.one_hot(slot, k).to(torch.bool)[..., None]
            replacement = torch.where(birth[:, None], new_slot, torch.zeros_like(new_slot))
            proposal = torch.where(chosen, replacement[:, None, :], params)
            q_new = proposal.reshape(t, -1)
            log_target_new = target.log_target(q_new)
            log_forward = torch.where(
                birth, -torch.log(k - c) + prior.slot_log_density(new_slot), -torch.log(c)
            )
            removed = params[torch.arange(t, device=device), slot]
            log_backward = torch.where(
                birth, -torch.log(c + 1), -torch.log(k - c + 1) + prior.slot_log_density(removed)
            )
            log_ratio = log_target_new - (-u) + log_backward - log_forward
            log_ratio = torch.where(possible & torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
            accept_prob = log_ratio.clamp(max=0).exp()
            accept = torch.rand(t, generator=gen, dtype=torch.float64).to(device) < accept_prob
            q_out = torch.where(accept[:, None], q_new, q)  # rejected rows untouched (no rotation wrap)
            u_out = torch.where(accept, -log_target_new, u)
        return q_out, u_out, accept_prob

    return move


def _replica_exchange(target: _Target, temperatures: int):
    """Swaps of states between neighbouring temperatures of one chain.

    Rows come in groups of `temperatures` consecutive replicas of one chain,
    beta falling from 1. Swapping the states of replicas at beta_a and beta_b
    is a Metropolis move on the product of their tempered targets, accepted
    with probability min(1, exp((beta_a - beta_b)(l_b - l_a))), l the
    log-likelihoods: it leaves the product of the tempered targets invariant,
    so the beta = 1 marginal stays the exact posterior (step size and mass
    stay with the temperature, not the state: each level's kernel is fixed
    after warm-up). The pairs alternate between (0,1), (2,3), ... and (1,2),
    (3,4), ... (deterministic even/odd, Syed et al. 2019), which moves states
    along the ladder faster than random pairs. A pair's acceptance
    probability is reported on its lower (colder) row, NaN on the others.
    """
    sweep = [0]

    def move(q: torch.Tensor, u: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, d = q.shape
        groups, r = t // temperatures, temperatures
        parity, sweep[0] = sweep[0] % 2, sweep[0] + 1
        lo = torch.arange(parity, r - 1, 2, device=q.device)
        hi = lo + 1
        prob = torch.full((groups, r), math.nan, dtype=q.dtype, device=q.device)
        if len(lo) == 0:
            return q, u, prob.reshape(t)
        with torch.no_grad():
            beta = target.beta.view(groups, r)
            log_prior = target.log_prior(q).view(groups, r)
            loglik = (-u.view(groups, r) - log_prior) / beta
            log_ratio = (beta[:, lo] - beta[:, hi]) * (loglik[:, hi] - loglik[:, lo])
            log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
            accept_prob = log_ratio.clamp(max=0).exp()
            accept = torch.rand(accept_prob.shape, generator=gen, dtype=torch.float64).to(q.device) < accept_prob
            source = torch.arange(r, device=q.device).repeat(groups, 1)
            source[:, lo] = torch.where(accept, hi, lo)
            source[:, hi] = torch.where(accept, lo, hi)
            q_out = q.reshape(groups, r, d).gather(1, source[..., None].expand(groups, r, d)).reshape(t, d)
            u_out = -(beta * loglik.gather(1, source) + log_prior.gather(1, source)).reshape(t)
            prob[:, lo] = accept_prob
        return q_out, u_out, prob.reshape(t)

    return move


def _check_inputs(
    prior: Prior, operator: LinearOperator, y: torch.Tensor, truth: torch.Tensor | None, grid_factor: int,
    truth_params: torch.Tensor | None, start: str, sampler: str = "hmc",
) -> None:
    shape = tuple(operator.domain_shape)
    if start == "truth":
        if truth is None or truth_params is None:
            raise ValueError("start='truth' needs both truth (the images) and truth_params (the parameters behind them)")
        if tuple(truth_params.shape) != (y.shape[0], *prior.param_shape):
            raise ValueError(f"truth_params must have shape ({y.shape[0]}, {', '.join(map(str, prior.param_shape))}), got {tuple(truth_params.shape)}")
    if sampler == "blocks" and not isinstance(prior, EllipsePrior):
        raise ValueError(f"sampler='blocks' moves ellipses: it needs an EllipsePrior, got {type(prior).__name__}")
    if sampler == "blocks" and prior.normalize_foreground:
        raise ValueError("sampler='blocks' needs an image that is a sum over slots: not with normalize_foreground=True (use 'hmc')")
    if not isinstance(prior, (EllipsePrior, GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior, PoissonJumpPrior)):
        raise ValueError(
            "sample_reference supports EllipsePrior, GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior "
            f"and PoissonJumpPrior, got {type(prior).__name__}"
        )
    if (sampler == "gibbs") != isinstance(prior, PoissonJumpPrior):
        raise ValueError(f"sampler='gibbs' is the PoissonJumpPrior's, and its only one; got sampler={sampler!r} for {type(prior).__name__}")
    if y.ndim != 2 + len(operator.range_shape) or y.shape[1] != 1 or tuple(y.shape[2:]) != tuple(operator.range_shape):
        raise ValueError(f"y must have shape (B, 1, {', '.join(map(str, operator.range_shape))}), got {tuple(y.shape)}")
    if truth is not None and tuple(truth.shape) != (y.shape[0], 1, *shape):
        raise ValueError(f"truth must have shape ({y.shape[0]}, 1, {', '.join(map(str, shape))}), got {tuple(truth.shape)}")
    if grid_factor < 1:
        raise ValueError(f"measurement_grid_factor must be >= 1, got {grid_factor}")
    gaussian = (GaussianFieldPrior, GaussianMixturePrior, GaussianProcessPrior, PoissonJumpPrior)
    if isinstance(prior, gaussian) and (tuple(prior.image_shape) != shape or grid_factor != 1):
        raise ValueError(
            f"a {type(prior).__name__} of shape {prior.image_shape} needs an operator on that shape and "
            f"measurement_grid_factor 1, got {shape} and {grid_factor}"
        )


def _initial_state(prior: Prior, items: int, settings: ReferenceSettings, generator: torch.Generator) -> torch.Tensor:
    """(items * chains * temperatures, D): independent prior draws; for
    ellipses every second chain (all its replicas) starts empty instead
    (over-dispersed starts for R-hat)."""
    t = items * settings.chains * settings.temperatures
    params = prior.sample(t, generator)
    if isinstance(prior, EllipsePrior):
        empty = (torch.arange(t) // settings.temperatures % settings.chains) % 2 == 1
        params = torch.where(empty[:, None, None], torch.zeros_like(params), params)
    return params.reshape(t, -1)


def _truth_state(truth_params: torch.Tensor, settings: ReferenceSettings) -> torch.Tensor:
    """(items * chains * temperatures, D): every replica of every chain at its item's true parameters."""
    flat = truth_params.to(torch.float64).reshape(truth_params.shape[0], -1)
    return flat.repeat_interleave(settings.chains * settings.temperatures, 0)


def _gauss_newton_inv_mass(target: _Target, q: torch.Tensor, fallback: torch.Tensor, step: float = 1e-5) -> torch.Tensor:
    """(T, D) inverse diagonal mass 1 / (diag(J^T J) / sigma^2 + 1 / s^2) at q, J the
    Jacobian of the forward model A render(theta) (central differences, one
    coordinate of every row at a time), s^2 = `fallback` the default scale of
    each field, so that no coordinate gets a wider step than that. Positive ellipse fields (the axes) are capped at a quarter of
    their value squared, so that a faint thin ellipse's step cannot leave the
    support at once. Any fixed mass keeps the kernel exact; this one only
    chooses its scales."""
    t, d = q.shape
    with torch.no_grad():
        curvature = torch.zeros_like(q)
        if isinstance(target.prior, EllipsePrior):
            active = (q.reshape(t, -1, 6)[..., :1] != 0).expand(t, -1, 6).reshape(t, d)
        else:
            active = torch.ones_like(q, dtype=torch.bool)
        fine = target.measure.domain_shape[-1]
        for i in torch.nonzero(active.any(0)).flatten().tolist():
            delta = torch.zeros_like(q)
            delta[:, i] = step
            plus = target.measure(target.prior.render(target.params(q + delta).to(target.render_dtype), fine).double())
            minus = target.measure(target.prior.render(target.params(q - delta).to(target.render_dtype), fine).double())
            column = (plus - minus).flatten(1) / (2 * step)
            curvature[:, i] = (column**2).sum(1) / target.noise_std**2
        inv_mass = 1 / (curvature + 1 / fallback)
        if isinstance(target.prior, EllipsePrior):
            axes = torch.zeros(6, dtype=torch.bool, device=q.device)
            axes[1:3] = True
            cap = (q / 2) ** 2
            inv_mass = torch.where(axes.repeat(d // 6)[None] & active, torch.minimum(inv_mass, cap), inv_mass)
    return torch.where(active, inv_mass, fallback)


def _system_matrix(measure: LinearOperator):
    """The sparse matrix of `measure`, which must be a ray transform on the torch
    backend (ASTRA's CUDA projector computes another operator than any stored matrix)."""
    if not isinstance(measure, RayTransform):
        raise ValueError(f"sampler='blocks' needs a ray transform's sparse matrix, not {type(measure).__name__} (use 'hmc')")
    own = getattr(measure.backend, "matrix", None)
    if own is None:
        raise ValueError(f"sampler='blocks' needs the operator's sparse matrix: use backend 'torch', not {measure.backend.name!r}")
    return own.matrix


def _default_inv_mass(prior: Prior, t: int) -> torch.Tensor:
    """Initial per-coordinate scale (variance) of the gradient move: 1 for
    whitened coefficients; the prior's pixel variances for a mixture's
    pixels; for ellipse slots a rough posterior width per field (intensity,
    axes, centre, rotation) until warm-up measures it."""
    if isinstance(prior, (GaussianFieldPrior, GaussianProcessPrior)):
        return torch.ones(t, math.prod(prior.param_shape), dtype=torch.float64)
    if isinstance(prior, GaussianMixturePrior):
        return prior.variance_image().reshape(1, -1).repeat(t, 1)
    field_scale = torch.tensor([0.05, 0.02, 0.02, 0.02, 0.02, 0.3], dtype=torch.float64) ** 2
    return field_scale.repeat(t, prior.slots)


def _item_rates(acceptance: dict[str, torch.Tensor], item: int, chains: int, levels: int) -> dict[str, float]:
    """Item `item`'s mean acceptance per move over its beta = 1 replicas; for
    exchanges the mean over the ladder's neighbour pairs and, as
    "exchange_min", its worst pair (the bottleneck of the ladder)."""
    rates = {}
    for kind, rate in acceptance.items():
        rows = rate[item * chains * levels : (item + 1) * chains * levels]
        if kind == "exchange":
            pairs = rows.view(chains, levels)[:, :-1].mean(0)  # per pair, over chains
            rates["exchange"], rates["exchange_min"] = float(pairs.mean()), float(pairs.min())
        else:
            rates[kind] = float(rows[::levels].mean())
    return rates


class _DrawRecorder:
    """What the kept draws leave behind, called after each one (on_draw): the
    beta = 1 rows' running sums of images and squares, per-batch sums (the
    Monte Carlo error of the mean), traces of the convergence summaries, and
    every thin-th image."""

    def __init__(self, target: _Target, cold: torch.Tensor, settings: ReferenceSettings, prior: Prior,
                 truth: torch.Tensor | None, t: int, shape: tuple[int, ...], device: torch.device) -> None:
        self.target, self.cold, self.thin, self.draws = target, cold, settings.thin, settings.draws
        self.pixels = summary_pixels(shape)
        self.directions = summary_projections(shape, settings.projections).to(device)
        self.slots = prior.slots if isinstance(prior, EllipsePrior) else None
        self.names = ["log_posterior", "mean_intensity"] + [pixel_name(p) for p in self.pixels]
        self.names += [f"projection_{k}" for k in range(settings.projections)]
        if self.slots is not None:
            self.names.append("ellipse_count")
        self.truth = None
        if truth is not None:
            self.names.insert(0, "mse_to_truth")
            self.truth = truth.to(device, torch.float64).repeat_interleave(settings.chains, 0)
        self.t, self.batches = t, min(5, self.draws)  # batch means of each chain
        self.traces = torch.zeros(t, self.draws, len(self.names), dtype=torch.float64)
        self.total = torch.zeros(t, 1, *shape, dtype=torch.float64, device=device)
        self.total_sq = torch.zeros_like(self.total)
        self.batch_total = torch.zeros(t, self.batches, 1, *shape, dtype=torch.float64, device=device)
        self.kept: list[torch.Tensor] = []

    def __call__(self, i: int, q: torch.Tensor, u: torch.Tensor) -> None:
        q, log_posterior = q[self.cold], -u[self.cold]  # beta = 1 rows: -U is the log posterior (up to a constant)
        with torch.no_grad():
            image = self.target.image(q).to(torch.float64)
        self.total, self.total_sq = self.total + image, self.total_sq + image * image
        self.batch_total[:, i * self.batches // self.draws] += image
        flat = image.flatten(1)
        columns = [log_posterior, flat.mean(1)] + [image[(slice(None), 0, *p)] for p in self.pixels] + list((flat @ self.directions.T).unbind(1))
        if self.slots is not None:
            columns.append((q.reshape(self.t, self.slots, 6)[..., 0] != 0).sum(1).to(torch.float64))
        if self.truth is not None:
            columns = [((image - self.truth) ** 2).flatten(1).mean(1)] + columns
        self.traces[:, i] = torch.stack(columns, 1).cpu()
        if (i + 1) % self.thin == 0:
            self.kept.append(image.cpu())

    def batch_means(self) -> torch.Tensor:
        """(T, batches, 1, N, N): each chain's mean image over each batch of draws."""
        counts = torch.bincount(torch.arange(self.draws) * self.batches // self.draws, minlength=self.batches)
        return self.batch_total.cpu() / counts.to(torch.float64).view(1, self.batches, *[1] * (self.batch_total.dim() - 2))


def _run_chains(prior: Prior, target: _Target, measure: LinearOperator, noise_std: float, y_rep: torch.Tensor, q0: torch.Tensor,
                settings: ReferenceSettings, generator: torch.Generator, on_draw: _DrawRecorder) -> dict[str, torch.Tensor]:
    """Warm-up and draws with the chosen sampler; returns each row's acceptance rates per move kind."""
    t_all = q0.shape[0]
    if settings.sampler == "gibbs":
        evidence = JumpEvidence(prior, measure, noise_std, y_rep)
        return run_jump_gibbs(evidence, prior.jumps_of(q0.reshape(t_all, -1)), settings.warmup, settings.draws, generator, on_draw)
    if settings.sampler == "blocks":
        blocks = EllipseBlockSampler(prior, _system_matrix(measure), measure.domain_shape[-1], noise_std, y_rep.flatten(1))
        return run_blocks(
            blocks, q0.reshape(t_all, *prior.param_shape), warmup=settings.warmup, draws=settings.draws, generator=generator,
            on_draw=on_draw, birth_death_moves=settings.birth_death_moves, intensity_moves=settings.intensity_moves,
        )
    mask_fn, extra_moves = None, {}
    if isinstance(prior, EllipsePrior):
        mask_fn = lambda q: (q.reshape(t_all, prior.slots, 6)[..., :1] != 0).expand(t_all, prior.slots, 6).reshape(t_all, -1)  # noqa: E731
        extra_moves["birth_death"] = _birth_death(target, generator)
    if settings.temperatures > 1:
        extra_moves["exchange"] = _replica_exchange(target, settings.temperatures)
    inv_mass = _default_inv_mass(prior, t_all).to(q0.device)
    if settings.mass == "gauss_newton":
        inv_mass = _gauss_newton_inv_mass(target, q0, inv_mass)
    sampler = run_hmc_from_truth if settings.start == "truth" else run_hmc
    return sampler(
        target.potential,
        q0,
        warmup=settings.warmup,
        draws=settings.draws,
        leapfrog_steps=settings.leapfrog_steps,
        step_size=settings.step_size,
        target_accept=settings.target_accept,
        generator=generator,
        default_inv_mass=inv_mass,
        mask_fn=mask_fn,
        extra_moves=extra_moves,
        on_draw=on_draw,
        adapt_mass=settings.mass == "pilot",
    ).acceptance


def sample_reference(
    prior: Prior,
    operator: LinearOperator,
    noise_std: float,
    y: torch.Tensor,
    settings: ReferenceSettings | None = None,
    truth: torch.Tensor | None = None,
    measurement_grid_factor: int = 1,
    truth_params: torch.Tensor | None = None,
) -> list[ReferenceResult]:
    """Sample p(x | y) for each of the B measurements in y (B, 1, angles, det),
    all items and chains batched on y's device. `truth` (B, 1, N, N), when
    given, adds the summary "mse_to_truth" (||x_t - x*||^2 / N^2) and the
    item's two Bayes-error estimates; ellipse priors add "ellipse_count"
    (active slots). `truth_params` (B, *prior.param_shape) are the parameters
    behind `truth`, needed by settings.start = "truth". With
    settings.temperatures > 1 every chain is the beta = 1 end of a ladder of
    tempered replicas (parallel tempering, down to beta_min) that exchange
    states; only the beta = 1 replicas are kept. Returns one ReferenceResult
    per item."""
    settings = settings or ReferenceSettings()
    if isinstance(prior, PoissonJumpPrior):  # discrete jumps: no gradient moves; Gibbs whatever the setting
        if settings.temperatures > 1:
            raise ValueError(f"the PoissonJumpPrior's Gibbs sampler has no tempering: temperatures must be 1, got {settings.temperatures}")
        settings = dataclasses.replace(settings, sampler="gibbs")
    elif settings.sampler == "auto":
        # the block moves need a render that is a sum over slots (normalize_foreground is not) and a ray transform's matrix
        blocks_apply = (
            isinstance(prior, EllipsePrior) and not prior.normalize_foreground and settings.start == "truth"
            and isinstance(operator, RayTransform)
        )
        settings = dataclasses.replace(settings, sampler="blocks" if blocks_apply else "hmc")
    _check_inputs(prior, operator, y, truth, measurement_grid_factor, truth_params, settings.start, settings.sampler)
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive, got {noise_std}")
    device = y.device
    items, chains, levels = y.shape[0], settings.chains, settings.temperatures
    shape = tuple(operator.domain_shape)
    size = shape[-1]  # what the prior renders at
    generator = torch.Generator().manual_seed(settings.seed)
    measure = measurement_operator(operator, measurement_grid_factor)
    y_rep = y.to(torch.float64).repeat_interleave(chains * levels, 0)
    ladder = torch.logspace(0, math.log10(settings.beta_min), levels, dtype=torch.float64) if levels > 1 else torch.ones(1, dtype=torch.float64)
    if settings.start == "truth":
        q0 = _truth_state(truth_params, settings).to(device)
    else:
        q0 = _initial_state(prior, items, settings, generator).to(device)
    render_dtype = getattr(torch, settings.render_dtype)
    target = _Target(prior, size, measure, float(noise_std), y_rep, ladder.repeat(items * chains).to(device), render_dtype)
    cold = torch.arange(0, q0.shape[0], levels, device=device)  # the beta = 1 replica of each chain
    recorder = _DrawRecorder(target, cold, settings, prior, truth, items * chains, shape, device)
    render_error = None
    if render_dtype != torch.float64 and settings.sampler == "hmc":
        render_error = _render_error(target, _Target(prior, size, measure, float(noise_std), y_rep), q0, cold, items, chains)
    start = time.perf_counter()
    acceptance = _run_chains(prior, target, measure, float(noise_std), y_rep, q0, settings, generator, recorder)
    probe = None
    if settings.start == "truth" and settings.probe_chains > 0:
        probe = _probe_modes(prior, size, measure, float(noise_std), y, settings, generator)
    seconds = (time.perf_counter() - start) / items
    return _item_results(recorder, settings, acceptance, render_error, probe, truth, items, shape, seconds)


def _render_error(target: _Target, exact: _Target, q0: torch.Tensor, cold: torch.Tensor, items: int, chains: int) -> torch.Tensor:
    """What single precision moves: per item, the largest |log-likelihood
    error| over its chains' starting states, against float64."""
    with torch.no_grad():
        return (target.log_likelihood(q0) - exact.log_likelihood(q0)).abs()[cold].view(items, chains).amax(1).cpu()


def _item_results(
    recorder: _DrawRecorder, settings: ReferenceSettings, acceptance: dict[str, torch.Tensor], render_error: torch.Tensor | None,
    probe: torch.Tensor | None, truth: torch.Tensor | None, items: int, shape: tuple[int, ...], seconds: float,
) -> list[ReferenceResult]:
    """Each item's posterior mean, std, kept samples and diagnostics from its chains' records."""
    chains, levels, n = settings.chains, settings.temperatures, settings.draws
    samples = torch.stack(recorder.kept, 1) if recorder.kept else torch.zeros(items * chains, 0, 1, *shape, dtype=torch.float64)
    batch_means = recorder.batch_means()
    results = []
    for b in range(items):
        rows = slice(b * chains, (b + 1) * chains)
        mean = recorder.total[rows].sum(0, keepdim=True).cpu() / (chains * n)
        second = recorder.total_sq[rows].sum(0, keepdim=True).cpu() / (chains * n)
        std = (second - mean**2).clamp_min(0).sqrt()
        item_traces = recorder.traces[rows].numpy()
        diagnostics = _item_diagnostics(item_traces, recorder.names, settings, seconds, _item_rates(acceptance, b, chains, levels))
        if render_error is not None:
            diagnostics["loglik_render_error"] = float(render_error[b])
        if probe is not None:
            kept_best = float(item_traces[..., recorder.names.index("log_posterior")].max())
            probe_median = float(probe[b])
            diagnostics["probe"] = {
                "chains": settings.probe_chains,
                "probe_median_log_posterior": probe_median,  # the best probe chain's median
                "kept_best_log_posterior": kept_best,
                "multimodal": bool(probe_median > kept_best),
            }
        item_samples = samples[rows].reshape(-1, 1, *shape)
        if truth is not None:
            diagnostics["bayes_mse"] = bayes_error_estimates(mean, std, batch_means[rows], item_samples, truth[b : b + 1].cpu())
        results.append(ReferenceResult(mean=mean, std=std, samples=item_samples, diagnostics=diagnostics))
    return results


def _item_diagnostics(traces: np.ndarray, names: list[str], settings: ReferenceSettings, seconds: float, acceptance: dict) -> dict:
    """One item's convergence summaries (split R-hat, bulk ESS) and how it was sampled."""
    summaries = summarize({name: traces[..., j] for j, name in enumerate(names)}, must_move={"mse_to_truth"})
    rhat_max = max(s["rhat"] for s in summaries.values())
    ess_min = min(s["ess"] for s in summaries.values())
    return {
        "rhat_max": rhat_max if np.isfinite(rhat_max) else math.inf,
        "ess_min": ess_min if np.isfinite(ess_min) else 0.0,
        "ess_per_second": (ess_min / seconds) if np.isfinite(ess_min) and seconds > 0 else 0.0,
        "seconds": seconds,
        "acceptance": acceptance,
        "summaries": summaries,
        "chains": settings.chains,
        "draws": settings.draws,
        "warmup": settings.warmup,
        "temperatures": settings.temperatures,
        "start": settings.start,
        "render_dtype": settings.render_dtype if settings.sampler == "hmc" else "float64",
        "sampler": settings.sampler,
    }


def _probe_modes(
    prior: Prior, size: int, measure: LinearOperator, noise_std: float, y: torch.Tensor,
    settings: ReferenceSettings, generator: torch.Generator,
) -> torch.Tensor:
    """(B,) per item, the highest median log posterior of `settings.probe_chains`
    chains started from prior draws (ellipses: every second one empty), warmed
    up in place and run as long as the kept run. A value above anything the
    truth-started chains reached says the posterior has mass, or at least a
    mode, that those chains do not visit."""
    items, chains = y.shape[0], settings.probe_chains
    t = items * chains
    params = prior.sample(t, generator)
    if isinstance(prior, EllipsePrior):
        empty = torch.arange(t) % chains % 2 == 1
        params = torch.where(empty[:, None, None], torch.zeros_like(params), params)
    q0 = params.reshape(t, -1).to(y.device)
    target = _Target(prior, size, measure, noise_std, y.to(torch.float64).repeat_interleave(chains, 0), None, getattr(torch, settings.render_dtype))
    log_posterior = torch.zeros(t, settings.draws, dtype=torch.float64)

    def on_draw(i: int, q: torch.Tensor, u: torch.Tensor) -> None:
        log_posterior[:, i] = -u.cpu()

    if settings.sampler == "gibbs":
        evidence = JumpEvidence(prior, measure, noise_std, target.y)
        run_jump_gibbs(evidence, prior.jumps_of(params.reshape(t, -1)), settings.warmup, settings.draws, generator, on_draw)
        return log_posterior.median(1).values.view(items, chains).max(1).values
    if settings.sampler == "blocks":
        # the same moves as the kept chains, from where the pilot ended (a probe makes no exactness claim)
        blocks = EllipseBlockSampler(prior, _system_matrix(measure), measure.domain_shape[-1], noise_std, target.y.flatten(1))
        run_blocks(blocks, params.to(y.device), warmup=settings.warmup, draws=settings.draws, generator=generator, restart=False, on_draw=on_draw,
                   birth_death_moves=settings.birth_death_moves, intensity_moves=settings.intensity_moves)
        return log_posterior.median(1).values.view(items, chains).max(1).values
    mask_fn, extra_moves = None, {}
    if isinstance(prior, EllipsePrior):
        mask_fn = lambda q: (q.reshape(t, prior.slots, 6)[..., :1] != 0).expand(t, prior.slots, 6).reshape(t, -1)  # noqa: E731
        extra_moves["birth_death"] = _birth_death(target, generator)
    run_hmc(
        target.potential, q0, warmup=settings.warmup, draws=settings.draws, leapfrog_steps=settings.leapfrog_steps,
        step_size=settings.step_size, target_accept=settings.target_accept, generator=generator,
        default_inv_mass=_default_inv_mass(prior, t).to(y.device), mask_fn=mask_fn, extra_moves=extra_moves, on_draw=on_draw,
    )
    return log_posterior.median(1).values.view(items, chains).max(1).values


def bayes_error_estimates(
    mean: torch.Tensor, std: torch.Tensor, batch_means: torch.Tensor, samples: torch.Tensor, truth: torch.Tensor
) -> dict[str, float]:
    """Two estimates of one item's Bayes error per pixel, E[||x - E[x|y]||^2 | y] / N^2,
    which agree when the draws follow the posterior and x* is a draw from it:

    - "variance": the posterior variance summed over pixels (from the draws);
    - "truth": ||mean - x*||^2 less the Monte Carlo variance of the mean (from
      batch means of each chain), a single draw of a quantity whose
      expectation is the first;
    - "truth_sd": that quantity's posterior spread, the std of
      ||x_s - mean||^2 over the stored samples, so "z" = (truth - variance) /
      truth_sd is the agreement in its own standard errors.

    Both hold only for chains that mixed (ESS well above the number of
    chains): chains that barely leave x* make the mean's error correlated
    with x* and the batch means too short, and both estimates come out low.

    mean, std, truth: (1, 1, N, N); batch_means (chains, batches, 1, N, N);
    samples (S, 1, N, N)."""
    pixels = truth.numel()
    variance = float((std.double() ** 2).mean())
    flat = batch_means.double().reshape(-1, pixels)
    mc_var = float(flat.var(0, unbiased=True).sum()) / flat.shape[0] / pixels if flat.shape[0] > 1 else math.nan
    truth_error = float(((mean.double() - truth.double()) ** 2).mean()) - mc_var
    spread = ((samples.double() - mean.double()) ** 2).flatten(1).mean(1)
    sd = float(spread.std()) if spread.numel() > 1 else math.nan
    z = (truth_error - variance) / sd if sd > 0 else math.nan
    return {"variance": variance, "truth": truth_error, "truth_sd": sd, "mc_var_of_mean": mc_var, "z": z}
