"""Batched Hamiltonian Monte Carlo over many independent targets at once.

The reference posterior is sampled for every test item with several chains
each, and one item's chain is a few hundred small renderings: on their own
they leave the device idle. So all (items x chains) targets advance in
lock-step as one (T, D) tensor, each with its own step size and diagonal mass
matrix. The HMC move only reads its own row, so without extra moves the
rows are independent Markov chains even though they share the tensor
operations; an extra move may couple rows (replica exchange swaps states
within one chain's ladder of temperatures).

Written here rather than taken from Pyro/NumPyro/BlackJAX: Pyro's HMC/NUTS
runs several chains only as separate processes, each adapting its own
kernel on one target (vectorized chains are an open request, pyro-ppl/pyro
#2902), and a batch of independent posteriors inside one model would share
one step size and mass matrix, limited by the stiffest item; NumPyro and
BlackJAX are JAX; and none of them interleaves our trans-dimensional
birth/death moves with the gradient moves. The kernel is the
textbook one (Neal 2011, "MCMC using Hamiltonian dynamics") with Hoffman &
Gelman's (2014) dual-averaging step size and Stan's windowed diagonal mass
adaptation, both during warm-up only: after warm-up the kernel is fixed, so
the kept draws come from a valid Metropolis-adjusted chain that targets the
exact posterior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import torch

#: U(q) -> (T,) potential energy, -log target up to a constant; +inf off the support.
Potential = Callable[[torch.Tensor], torch.Tensor]


def potential_and_grad(potential: Potential, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U(q) and dU/dq for a (T, D) batch; non-finite gradients become 0
    (the proposal is then rejected on its non-finite energy anyway)."""
    with torch.enable_grad():
        q = q.detach().requires_grad_(True)
        u = potential(q)
        (grad,) = torch.autograd.grad(u.sum(), q)
    grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
    return u.detach(), grad.detach()


@dataclass
class DualAveraging:
    """Per-target step size adaptation to a target acceptance rate (Hoffman & Gelman 2014, alg. 5)."""

    log_step: torch.Tensor  # (T,)
    target_accept: float
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def __post_init__(self) -> None:
        self.restart(self.log_step.exp())

    def restart(self, step: torch.Tensor) -> None:
        self.mu = torch.log(10 * step)
        self.log_step = step.log()
        self.log_step_avg = torch.zeros_like(self.log_step)
        self.h_avg = torch.zeros_like(self.log_step)
        self.t = 0

    def update(self, accept_prob: torch.Tensor) -> torch.Tensor:
        self.t += 1
        t = self.t
        w = 1.0 / (t + self.t0)
        self.h_avg = (1 - w) * self.h_avg + w * (self.target_accept - accept_prob)
        self.log_step = self.mu - math.sqrt(t) / self.gamma * self.h_avg
        eta = t ** (-self.kappa)
        self.log_step_avg = eta * self.log_step + (1 - eta) * self.log_step_avg
        return self.log_step.exp()

    def final(self) -> torch.Tensor:
        return self.log_step_avg.exp()


class MaskedVariance:
    """Per-coordinate running variance (Welford) over the draws where `mask` is 1."""

    def __init__(self, like: torch.Tensor) -> None:
        self.n = torch.zeros_like(like)
        self.mean = torch.zeros_like(like)
        self.m2 = torch.zeros_like(like)

    def add(self, q: torch.Tensor, mask: torch.Tensor) -> None:
        self.n = self.n + mask
        delta = (q - self.mean) * mask
        self.mean = self.mean + delta / self.n.clamp_min(1)
        self.m2 = self.m2 + delta * (q - self.mean) * mask

    def estimate(self, fallback: torch.Tensor, min_count: int = 10) -> torch.Tensor:
        """Stan's regularised variance; `fallback` where fewer than min_count draws were seen."""
        n = self.n
        var = self.m2 / (n - 1).clamp_min(1)
        shrunk = (n / (n + 5)) * var + 1e-3 * (5 / (n + 5)) * fallback
        return torch.where(n >= min_count, shrunk, fallback)


@dataclass
class HMCState:
    """Where each of T chains is, and its (frozen after warm-up) tuning."""

    q: torch.Tensor  # (T, D) positions
    u: torch.Tensor  # (T,) potential at q
    grad: torch.Tensor  # (T, D)
    step: torch.Tensor  # (T,) leapfrog step sizes
    inv_mass: torch.Tensor  # (T, D) diagonal inverse mass = variance scale of each coordinate


def hmc_step(
    potential: Potential,
    state: HMCState,
    leapfrog_steps: int,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
) -> tuple[HMCState, torch.Tensor]:
    """One Metropolis-adjusted HMC transition for every chain; returns the new
    state and each row's acceptance probability. Coordinates where `mask` is
    0 stay fixed (the move is HMC on the others, conditional on them).

    The step size is jittered by a uniform factor in [0.8, 1.2] per row and
    transition, which keeps the kernel reversible (the factor is drawn
    independently of the state) and avoids periodic trajectories.
    """
    q0, device, dtype = state.q, state.q.device, state.q.dtype
    t = q0.shape[0]
    move = torch.ones_like(q0) if mask is None else mask.to(dtype)
    jitter = 0.8 + 0.4 * torch.rand(t, generator=generator, dtype=torch.float64).to(device, dtype)
    eps = (state.step * jitter)[:, None]
    p = torch.randn(q0.shape, generator=generator, dtype=torch.float64).to(device, dtype) / state.inv_mass.sqrt() * move
    kinetic0 = 0.5 * (p * p * state.inv_mass).sum(1)
    q, u, grad = q0, state.u, state.grad
    p = p - 0.5 * eps * grad * move
    for i in range(leapfrog_steps):
        q = q + eps * state.inv_mass * p * move
        u, grad = potential_and_grad(potential, q)
        p = p - (eps if i < leapfrog_steps - 1 else 0.5 * eps) * grad * move
    kinetic1 = 0.5 * (p * p * state.inv_mass).sum(1)
    log_ratio = (state.u + kinetic0) - (u + kinetic1)
    log_ratio = torch.where(torch.isfinite(log_ratio), log_ratio, torch.full_like(log_ratio, -math.inf))
    accept_prob = log_ratio.clamp(max=0).exp()
    uniform = torch.rand(t, generator=generator, dtype=torch.float64).to(device, dtype)
    accept = uniform < accept_prob
    new = HMCState(
        q=torch.where(accept[:, None], q, q0),
        u=torch.where(accept, u, state.u),
        grad=torch.where(accept[:, None], grad, state.grad),
        step=state.step,
        inv_mass=state.inv_mass,
    )
    return new, accept_prob


def warmup_windows(warmup: int) -> tuple[int, int]:
    """Stan-like schedule: step size only until `start`, then collect the mass
    matrix until `end`, then step size only (re-tuned to the new mass)."""
    start = int(0.15 * warmup)
    end = int(0.6 * warmup)
    return start, end


@dataclass
class HMCRun:
    """What run_hmc leaves: each row's mean acceptance per move kind after
    warm-up, and the kernel it ended with (step size and diagonal inverse mass),
    which a later run may reuse as a fixed kernel."""

    acceptance: dict[str, torch.Tensor]
    step: torch.Tensor  # (T,)
    inv_mass: torch.Tensor  # (T, D)


#: A Metropolis-Hastings move after each HMC transition: (q, u, generator) -> (q, u, accept_prob per row, NaN where not attempted).
ExtraMove = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _transition(potential: Potential, state: HMCState, leapfrog_steps: int, generator: torch.Generator,
                mask_fn: Callable[[torch.Tensor], torch.Tensor] | None, moves: Mapping[str, ExtraMove],
                ) -> tuple[HMCState, torch.Tensor, dict[str, torch.Tensor]]:
    """One transition: an HMC step on the coordinates mask_fn leaves free, then
    each extra move in order. Returns the new state, the HMC step's acceptance
    probability and each extra move's."""
    mask = mask_fn(state.q) if mask_fn is not None else None
    state, accept_prob = hmc_step(potential, state, leapfrog_steps, generator, mask)
    extra_probs = {}
    q, u = state.q, state.u
    for name, move in moves.items():
        q, u, extra_probs[name] = move(q, u, generator)
    if moves and not torch.equal(q, state.q):
        u, grad = potential_and_grad(potential, q)
        state = HMCState(q, u, grad, state.step, state.inv_mass)
    return state, accept_prob, extra_probs


def run_hmc(
    potential: Potential,
    q0: torch.Tensor,
    *,
    warmup: int,
    draws: int,
    leapfrog_steps: int,
    step_size: float | torch.Tensor,
    target_accept: float,
    generator: torch.Generator,
    default_inv_mass: torch.Tensor | None = None,
    mask_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    extra_moves: Mapping[str, ExtraMove] | None = None,
    on_draw: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    adapt_mass: bool = True,
) -> HMCRun:
    """Warm up (adapting each row's step size and diagonal mass), then run
    `draws` (>= 0) frozen transitions, calling on_draw(i, q, u) after each
    (u the (T,) potential at q).
    Returns each row's (T,) mean acceptance probability per move kind after
    warm-up ("hmc" and the names of `extra_moves`; NaN where a chain never
    attempted that move or there were no draws) and the final kernel. With
    warmup=0 the kernel is `step_size` (a number or one per row) and
    `default_inv_mass` as given, fixed from the first transition: a pilot
    run's kernel reused so that every transition of the kept run is exact.

    `mask_fn(q)` picks the coordinates the gradient move may change (the
    active ellipse slots); `extra_moves` are Metropolis-Hastings moves applied
    in order after every HMC transition (birth/death, replica exchange). `default_inv_mass` (T, D) is the
    initial mass scale and the fallback for coordinates seen too rarely; with
    adapt_mass=False it is kept and warm-up tunes the step size only.
    """
    t = q0.shape[0]
    inv_mass = torch.ones_like(q0) if default_inv_mass is None else default_inv_mass.clone()
    fallback = inv_mass.clone()
    u, grad = potential_and_grad(potential, q0)
    if not torch.isfinite(u).all():
        raise ValueError("the initial MCMC state has zero posterior density (outside the prior's support)")
    step = torch.as_tensor(step_size, dtype=q0.dtype, device=q0.device).expand(t).clone()
    state = HMCState(q0.detach().clone(), u, grad, step, inv_mass)
    adapt = DualAveraging(step.log(), target_accept)
    variance = MaskedVariance(q0)
    start, end = warmup_windows(warmup)
    moves = dict(extra_moves or {})
    hmc_accept: list[torch.Tensor] = []
    extra_accept: dict[str, list[torch.Tensor]] = {name: [] for name in moves}
    for i in range(warmup + draws):
        state, accept_prob, extra_probs = _transition(potential, state, leapfrog_steps, generator, mask_fn, moves)
        if i < warmup:
            state.step = adapt.update(accept_prob)
            if start <= i < end:
                # the mask of the state after the extra moves, which may have switched slots or swapped states
                now = mask_fn(state.q) if mask_fn is not None else None
                variance.add(state.q, torch.ones_like(state.q) if now is None else now.to(state.q.dtype))
            if i == end - 1 and end > start and adapt_mass:
                state.inv_mass = variance.estimate(fallback)
                adapt.restart(state.step)
            if i == warmup - 1:
                state.step = adapt.final()
            continue
        hmc_accept.append(accept_prob)
        for name, prob in extra_probs.items():
            extra_accept[name].append(prob)
        if on_draw is not None:
            on_draw(i - warmup, state.q, state.u)
    def mean_rate(probs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(probs).nanmean(0).cpu() if probs else torch.full((t,), math.nan, dtype=q0.dtype)

    acceptance = {"hmc": mean_rate(hmc_accept)} | {name: mean_rate(probs) for name, probs in extra_accept.items()}
    return HMCRun(acceptance=acceptance, step=state.step, inv_mass=state.inv_mass)


def run_hmc_from_truth(potential: Potential, q_truth: torch.Tensor, *, warmup: int, draws: int, **kwargs) -> HMCRun:
    """HMC started at an exact posterior draw (the simulated truth): a pilot
    of `warmup` transitions from q_truth tunes each row's step size and mass
    and is discarded; the kept run starts at q_truth again with that kernel
    fixed, so it needs no burn-in and every transition is a fixed Metropolis
    kernel. kwargs as for run_hmc (step_size and default_inv_mass start the pilot)."""
    on_draw = kwargs.pop("on_draw", None)
    pilot = run_hmc(potential, q_truth, warmup=warmup, draws=0, **kwargs)
    kwargs.update(step_size=pilot.step, default_inv_mass=pilot.inv_mass)
    return run_hmc(potential, q_truth, warmup=0, draws=draws, on_draw=on_draw, **kwargs)
