"""Scoring reconstructions: per-method summaries with standard errors."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from .comparison import paired_difference, pairwise, ratio_of_means
from .datasets import derived_seed, read_split
from .metrics import mse, psnr, ssim
from .operators import LinearOperator
from .priors import shepp_logan, step_signal

Reconstruct = Callable[[torch.Tensor], torch.Tensor]


def reconstruct_timed(method: Reconstruct, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, float]:
    """All reconstructions of y, and the wall seconds per image."""
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, y.shape[0], batch_size):
            out.append(method(y[i : i + batch_size]))
    return torch.cat(out), (time.perf_counter() - start) / y.shape[0]


def errors_on_split(
    method: str, reconstruct: Reconstruct, split_file: str | Path, batch_size: int = 32, items: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item MSE and PSNR (dB) of `reconstruct` on a data split (or its first
    `items` items), scored as the evaluate stage scores `method`: a sampler's
    noise is seeded by `scoring_seed(method)`, so the figures repeat."""
    split = read_split(split_file)
    y, x = torch.from_numpy(split.measurements[:items]), torch.from_numpy(split.images[:items])
    torch.manual_seed(scoring_seed(method))
    estimate, _ = reconstruct_timed(reconstruct, y, batch_size)
    return mse(estimate, x), psnr(estimate, x)


def scoring_seed(method: str) -> int:
    """The seed of the global torch generator while `method` is scored (cwgan
    draws its latent z from it): one convention for evaluate, register and promote."""
    return derived_seed(0, f"evaluate-{method}")


def _mean_and_error(values: torch.Tensor) -> dict[str, float]:
    n = values.numel()
    se = float(values.std() / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(values.mean()), "stderr": se}


def normalized_error(errors: torch.Tensor, bayes_mse: float | torch.Tensor) -> dict[str, dict[str, float]]:
    """Per-item MSEs against the Bayes MSE E||E[x|y] - x||^2: the normalized
    error (ratio of means) and the gap (difference of means), each with its
    standard error over items. `bayes_mse` is one figure, or each item's own
    (a mixture's exact posterior variance depends on y): then the errors are
    paired, as an item hard for the method is hard for the Bayes estimator too.
    (A reference that is itself estimated adds its own error: gap_to_reference.)"""
    e = errors.double().flatten()
    b = torch.as_tensor(bayes_mse, dtype=torch.float64).expand_as(e)
    gap = paired_difference(e, b)
    return {
        "normalized_error": {k: v for k, v in ratio_of_means(e, b).items() if k != "items"},
        "gap": {"mean": gap["mean"], "stderr": gap["stderr"]},
    }


def score(estimate: torch.Tensor, truth: torch.Tensor) -> dict[str, dict[str, float]]:
    """Mean and standard error over items of PSNR, SSIM and MSE."""
    return {
        "psnr": _mean_and_error(psnr(estimate, truth)),
        "ssim": _mean_and_error(ssim(estimate, truth)),
        "mse": _mean_and_error(mse(estimate, truth)),
    }


def phantom_case(operator: LinearOperator, noise_std: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A phantom never seen in training (Shepp-Logan; for 1-D signals a step
    signal), and its measurement at the pipeline's noise level (a fixed noise
    draw). Its scores are kept under `shepp_logan` in the metrics."""
    size = operator.domain_shape[-1]
    phantom = step_signal(size) if len(operator.domain_shape) == 1 else shepp_logan(size)
    noise = torch.randn(1, 1, *operator.range_shape, generator=torch.Generator().manual_seed(0))
    return phantom, operator(phantom) + noise_std * noise


def score_solved(
    solved: dict[str, tuple[torch.Tensor, torch.Tensor, float, dict]], x: torch.Tensor, phantom_image: torch.Tensor,
    bayes_variance: torch.Tensor | None, results: dict, estimates: dict, log: Callable[[str], None] = print,
) -> dict:
    """Add the methods a solve stage optimised per measurement on the first n
    test items (name -> (estimates, phantom estimate, seconds per image,
    chosen), as recongap.solved reads them) to `results` and `estimates`, and
    return the comparison on those n items: every method's scores there
    (`methods`) and every pair of methods, paired (`pairs`)."""
    for name, (estimate, phantom_estimate, seconds, chosen) in solved.items():
        results[name] = method_entry(estimate, x, seconds, chosen, (phantom_image, phantom_estimate), bayes_variance)
        estimates[name] = estimate
        log(f"{name} (first {estimate.shape[0]} items): PSNR {results[name]['psnr']['mean']:.2f} dB")
    n = min(e.shape[0] for e in estimates.values())
    head, truth = {name: e[:n] for name, e in estimates.items()}, x[:n]
    bayes = bayes_variance[:n] if bayes_variance is not None else None
    methods = {}
    for name, e in head.items():
        methods[name] = {k: v for k, v in score(e, truth).items() if k in ("psnr", "mse")}
        if bayes is not None:
            methods[name].update(normalized_error(mse(e, truth), bayes))
    errors, psnrs = {k: mse(e, truth) for k, e in head.items()}, {k: psnr(e, truth) for k, e in head.items()}
    return {"items": n, "methods": methods, "pairs": pairwise(errors, psnrs, bayes)}


# --- the generalization gap against an MCMC reference -------------------------------
def reference_errors(
    posterior_mean: torch.Tensor, posterior_std: torch.Tensor, truth: torch.Tensor, ess: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item estimates of ||E[x|y] - x||^2 per pixel from MCMC means, and their
    Monte-Carlo variances.

    An MCMC mean m^ = m + e carries pixel errors e of variance std^2 / ESS, which
    add mean(std^2) / ESS to ||m^ - x||^2 (removed here) and a cross term of
    variance (2/N)^2 sum (m^ - x)^2 std^2 / ESS. The ESS is the item's least bulk
    ESS over its summaries, a conservative stand-in for each pixel's.
    """
    n = truth[0].numel()
    ess = ess.to(torch.float64).reshape(-1, *[1] * (truth.dim() - 1))
    residual = (posterior_mean.to(torch.float64) - truth.to(torch.float64)) ** 2
    variance = posterior_std.to(torch.float64) ** 2 / ess
    errors = residual.flatten(1).mean(1) - variance.flatten(1).mean(1)
    mcmc_var = (4 / n**2) * (residual * variance).flatten(1).sum(1)
    return errors, mcmc_var


def bayes_mse_estimate(errors: torch.Tensor, mcmc_var: torch.Tensor) -> dict[str, float]:
    """E||E[x|y] - x||^2 from per-item MCMC estimates: the mean, and a standard
    error joining the spread over items and the MCMC error. (The spread over
    items already holds part of the MCMC noise, so adding it again errs on the
    large side: a conservative error bar.)"""
    e = errors.double()
    se_mcmc = math.sqrt(float(mcmc_var.sum())) / e.numel()
    return {"mean": float(e.mean()), "stderr": math.hypot(_mean_and_error(e)["stderr"], se_mcmc), "stderr_mcmc": se_mcmc}


def gap_to_reference(method_errors: torch.Tensor, bayes_errors: torch.Tensor, bayes_mcmc_var: torch.Tensor) -> dict[str, dict[str, float]]:
    """A method's `mse`, `normalized_error` (ratio of means) and `gap` (difference of
    means) against an MCMC reference on the same items, each with a standard error:
    paired over items, as every comparison of the project is
    (recongap.comparison), plus the reference's MCMC error propagated
    (conservative, as in bayes_mse_estimate)."""
    a, b = method_errors.double(), bayes_errors.double()
    if a.shape != b.shape:
        raise ValueError(f"method errors {tuple(a.shape)} and reference errors {tuple(b.shape)} must cover the same items")
    bayes = float(b.mean())
    mcmc_se = math.sqrt(float(bayes_mcmc_var.sum())) / b.numel()  # of the mean Bayes MSE
    ratio, gap = ratio_of_means(a, b), paired_difference(a, b)
    return {
        "mse": _mean_and_error(a),
        "normalized_error": {"mean": ratio["mean"], "stderr": math.hypot(ratio["stderr"], ratio["mean"] * mcmc_se / bayes)},
        "gap": {"mean": gap["mean"], "stderr": math.hypot(gap["stderr"], mcmc_se)},
    }


def score_methods(
    candidates: list[tuple[str, Reconstruct, dict]], y: torch.Tensor, x: torch.Tensor, batch_size: int,
    phantom: tuple[torch.Tensor, torch.Tensor], bayes_variance: torch.Tensor | None = None, log: Callable[[str], None] = print,
) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """Each method (name, reconstruct, parameters chosen on validation) on the
    test items y -> x: its scores, seconds per image, chosen parameters, scores
    on `phantom` = (image, its measurement), and, given each item's exact Bayes
    error, its normalized error and gap. Returns (results, estimates)."""
    results, estimates = {}, {}
    image, y_phantom = phantom
    for name, reconstruct, chosen in candidates:
        torch.manual_seed(scoring_seed(name))  # a sampler draws z: the same figures here, in register and in promote
        estimate, seconds = reconstruct_timed(reconstruct, y, batch_size)
        with torch.no_grad():
            phantom_estimate = reconstruct(y_phantom)
        results[name] = method_entry(estimate, x, seconds, chosen, (image, phantom_estimate), bayes_variance)
        estimates[name] = estimate
        log(f"{name}: PSNR {results[name]['psnr']['mean']:.2f} dB, SSIM {results[name]['ssim']['mean']:.3f}")
    return results, estimates


def method_entry(
    estimate: torch.Tensor, x: torch.Tensor, seconds: float, chosen: dict, phantom: tuple[torch.Tensor, torch.Tensor],
    bayes_variance: torch.Tensor | None = None,
) -> dict:
    """A method's results: scores of `estimate` against the first len(estimate)
    items of x, seconds per image, chosen settings, scores on the phantom
    (image, its estimate) and, given each item's exact Bayes error, the
    normalized error and gap on the same items. A method scored on fewer
    items than the test split (the `solve` stage's) says how many: `items`."""
    n = estimate.shape[0]
    image, phantom_estimate = phantom
    entry = {
        **score(estimate, x[:n]),
        "seconds_per_image": seconds,
        "chosen": chosen,
        "shepp_logan": {k: v["mean"] for k, v in score(phantom_estimate, image).items()},
    }
    if n < x.shape[0]:
        entry["items"] = n
    if bayes_variance is not None:
        entry.update(normalized_error(mse(estimate, x[:n]), bayes_variance[:n]))
    return entry
