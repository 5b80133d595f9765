"""Exact posterior sampling for piecewise constant signals (PoissonJumpPrior).

The state is the jump indicators b, with the levels integrated out: given b
the signal is x = mean + std * B l, B the (n, K) map from the K pieces to the
points and l ~ N(0, I), so the data are Gaussian,

    y | b ~ N(mean * A 1, std^2 (A B)(A B)^T + s^2 I),

and each indicator is drawn from its full conditional, which needs this
evidence at b_j = 0 and 1 (a collapsed Gibbs sweep, one indicator after the
other, with a Metropolis shift of each jump by one point). After each sweep a signal is drawn exactly from p(x | b, y) by
perturbation (as recongap.posterior.gaussian does): a draw x' of the prior
given b and noise e' are corrected by std^2 B B^T A^T S^-1 (y - A x' - e').
So every kept signal is a posterior draw of a chain whose only approximation
is its finite length; the diagnostics of recongap.posterior.reference apply.

The evidence of a state costs a Cholesky factor as small as its number of
pieces (JumpEvidence.log_likelihood); a draw, one (m, m) factor per sweep:
meant for 1-D problems.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..operators import LinearOperator
from ..priors.poisson_jumps import PoissonJumpPrior


class JumpEvidence:
    """log p(y | b) for a batch of indicator states, and exact draws of x | b, y."""

    def __init__(self, prior: PoissonJumpPrior, operator: LinearOperator, noise_std: float, y: torch.Tensor) -> None:
        n = prior.size
        if tuple(operator.domain_shape) != (n,):
            raise ValueError(f"a PoissonJumpPrior of {n} points needs an operator on (n,) signals, got {tuple(operator.domain_shape)}")
        self.prior, self.noise_std = prior, float(noise_std)
        with torch.no_grad():
            eye = torch.eye(n, dtype=torch.float64, device=y.device).reshape(n, 1, n)
            self.a = operator(eye).reshape(n, -1).T.contiguous()  # (m, n)
        self.y = y.to(torch.float64).reshape(y.shape[0], -1)  # (T, m)
        self.m = self.a.shape[0]
        self._residual = self.y - prior.mean * self.a.sum(1)  # y - A (mean 1)

    def _pieces(self, jumps: torch.Tensor) -> torch.Tensor:
        """(T, n, n) B: B[t, i, k] = 1 where point i lies in piece k."""
        piece = torch.cat([torch.zeros_like(jumps[:, :1], dtype=torch.long), jumps.long().cumsum(1)], 1)
        return torch.nn.functional.one_hot(piece, self.prior.size).to(torch.float64)

    def _covariance(self, jumps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(A B, Cholesky factor of S = std^2 (A B)(A B)^T + s^2 I), dense in the data dimension."""
        ab = self.a @ self._pieces(jumps)  # (T, m, n)
        s = self.prior.std**2 * ab @ ab.transpose(1, 2)
        s.diagonal(dim1=1, dim2=2).add_(self.noise_std**2)
        return ab, torch.linalg.cholesky(s)

    def log_likelihood_dense(self, jumps: torch.Tensor) -> torch.Tensor:
        """log N(y; mean A 1, S(b)) per row, (T,), from S itself (what log_likelihood is checked against)."""
        _, chol = self._covariance(jumps)
        white = torch.linalg.solve_triangular(chol, self._residual.unsqueeze(2), upper=False)[..., 0]
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        return -0.5 * (white**2).sum(1) - 0.5 * log_det - 0.5 * self.m * math.log(2 * math.pi)

    def log_likelihood(self, jumps: torch.Tensor) -> torch.Tensor:
        """log N(y; mean A 1, S(b)) per row, (T,), in piece space: with M = A B and
        r = y - mean A 1, by the determinant lemma and Woodbury,
        log det S = m log s^2 + log det Q and r^T S^-1 r = (r^T r - c^T Q^-1 c v) / s^2,
        Q = I + v M^T M, c = M^T r, v = std^2 / s^2. M^T M and c are sums of
        A^T A and A^T r over pieces, read off their prefix sums, so no product
        with A is formed and Q is as small as the most pieces in the batch (a
        row's empty pieces, past its last, have zero sums and add 1 to Q)."""
        if not hasattr(self, "_prefix"):
            n = self.prior.size
            gram = torch.nn.functional.pad(self.a.T @ self.a, (1, 0, 1, 0)).cumsum(0).cumsum(1)  # (n+1, n+1)
            proj = torch.nn.functional.pad(self._residual @ self.a, (1, 0)).cumsum(1)  # (T, n+1)
            self._prefix = (gram, proj, (self._residual**2).sum(1), torch.arange(1, n, device=self.a.device))
        gram, proj, rr, inner = self._prefix
        t, n = jumps.shape[0], self.prior.size
        starts = torch.where(jumps, inner, torch.full_like(inner, n)).sort(1).values
        starts = torch.cat([torch.zeros(t, 1, dtype=torch.long, device=starts.device), starts], 1)  # (T, n): its pieces' starts, then n
        ends = torch.cat([starts[:, 1:], torch.full((t, 1), n, dtype=torch.long, device=starts.device)], 1)
        pieces = int(jumps.sum(1).max()) + 1  # beyond the most pieces of any row, only empty ones
        starts, ends = starts[:, :pieces], ends[:, :pieces]
        s_i, e_i, s_j, e_j = starts[:, :, None], ends[:, :, None], starts[:, None, :], ends[:, None, :]
        mtm = gram[e_i, e_j] - gram[s_i, e_j] - gram[e_i, s_j] + gram[s_i, s_j]  # (T, n, n)
        c = proj.gather(1, ends) - proj.gather(1, starts)  # (T, n)
        v = self.prior.std**2 / self.noise_std**2
        q = v * mtm
        q.diagonal(dim1=1, dim2=2).add_(1.0)
        chol = torch.linalg.cholesky(q)
        white = torch.linalg.solve_triangular(chol, c.unsqueeze(2), upper=False)[..., 0]
        quad = (rr - v * (white**2).sum(1)) / self.noise_std**2
        log_det = self.m * math.log(self.noise_std**2) + 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        return -0.5 * quad - 0.5 * log_det - 0.5 * self.m * math.log(2 * math.pi)

    def draw(self, jumps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(T, n) exact draws of x | b, y."""
        t, n = jumps.shape[0], self.prior.size
        ab, chol = self._covariance(jumps)
        pieces = self._pieces(jumps)
        levels = torch.randn(t, n, 1, generator=generator, dtype=torch.float64).to(self.y.device)
        x = self.prior.mean + self.prior.std * (pieces @ levels)[..., 0]  # a prior draw given b
        noise = self.noise_std * torch.randn(t, self.m, generator=generator, dtype=torch.float64).to(self.y.device)
        residual = (self.y - x @ self.a.T - noise).unsqueeze(2)
        weights = torch.cholesky_solve(residual, chol)  # S^-1 (y - A x' - e')
        return x + self.prior.std**2 * (pieces @ (ab.transpose(1, 2) @ weights))[..., 0]


def run_jump_gibbs(
    evidence: JumpEvidence, jumps: torch.Tensor, warmup: int, draws: int, generator: torch.Generator,
    on_draw: Callable[[int, torch.Tensor, torch.Tensor], None],
) -> dict[str, torch.Tensor]:
    """Sweeps from the (T, n - 1) indicators `jumps`; after each of the `draws`
    sweeps past warm-up, on_draw(i, x, -log p(b, y)) with x a (T, n) exact draw
    of the signal given the state.

    A sweep visits each gap j in turn: a Gibbs update of b_j from its full
    conditional, then, where b_j and b_{j+1} differ, a Metropolis move that
    swaps them (a jump shifted by one point; the jump count, so the prior,
    unchanged; its own reverse, so symmetric). Single-site updates alone
    move a jump only through a state with an extra or a missing one, which
    the data or the prior penalise: the shift lets it slide. Returns, per
    row, the fraction of Gibbs updates that changed the state (`flip`) and
    of proposed shifts accepted (`shift`)."""
    prior = evidence.prior
    jumps = jumps.clone().bool()
    prior_odds = math.log(prior.jump_probability) - math.log1p(-prior.jump_probability)
    current = evidence.log_likelihood(jumps)
    t, gaps = jumps.shape
    flips, shifts, proposed = (torch.zeros(t, dtype=torch.float64) for _ in range(3))

    def uniform() -> torch.Tensor:
        return torch.rand(t, generator=generator, dtype=torch.float64).to(current.device)

    for sweep in range(warmup + draws):
        for j in range(gaps):
            proposal = jumps.clone()
            proposal[:, j] = ~jumps[:, j]
            other = evidence.log_likelihood(proposal)
            on = jumps[:, j]
            log_odds = torch.where(on, current - other, other - current) + prior_odds  # log p(b_j = 1 | rest) / p(b_j = 0 | rest)
            new = uniform() < torch.sigmoid(log_odds)
            flip = new != on
            jumps[:, j] = new
            current = torch.where(flip, other, current)
            flips += flip.to(torch.float64).cpu()
            if j + 1 < gaps:
                differ = jumps[:, j] != jumps[:, j + 1]
                proposal = jumps.clone()
                proposal[:, j], proposal[:, j + 1] = jumps[:, j + 1], jumps[:, j]
                other = evidence.log_likelihood(proposal)
                accept = differ & (torch.log(uniform()) < other - current)
                jumps = torch.where(accept[:, None], proposal, jumps)
                current = torch.where(accept, other, current)
                proposed += differ.to(torch.float64).cpu()
                shifts += accept.to(torch.float64).cpu()
        if sweep >= warmup:
            x = evidence.draw(jumps, generator)
            on_draw(sweep - warmup, x, -(current + prior.jumps_log_prob(jumps)))
    return {"flip": flips / max(1, (warmup + draws) * gaps), "shift": shifts / proposed.clamp_min(1)}
