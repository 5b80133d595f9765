"""Every method of a pipeline, built for scoring: the classical ones with their
parameters chosen on validation items, the learned ones from their checkpoints,
and the closed forms a prior with an exact posterior adds."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from .config import Params
from .datasets import DataError, Split
from .operators import LinearOperator
from .posterior import GaussianPosterior, closed_form_posterior
from .reconstructors import RECONSTRUCTORS, get_method
from .reconstructors.lightning import load_checkpoint


def closed_form_methods(prior, operator, noise_std: float, y: torch.Tensor):
    """For a prior with an exact posterior: (that posterior, the methods it adds
    as (name, reconstruct, {}), the `reference` entry, the exact posterior
    variance per test item (its mean squared error given y)); (None, [], None,
    None) otherwise. Gaussian field: the exact posterior mean, linear, is
    `lmmse`, and its variance the same for every y. Mixture: the exact mean
    (nonlinear in y) is `exact_mean`, and `lmmse` the best linear estimator
    from the prior's overall mean and covariance; the Bayes MSE is the exact
    posterior variance averaged over the test items. The reference names both
    (`estimator`, `linear_estimator`)."""
    exact = closed_form_posterior(prior, operator, noise_std)
    if exact is None:
        return None, [], None, None
    if isinstance(exact, GaussianPosterior):
        variance = torch.full((y.shape[0],), exact.bayes_mse(), dtype=torch.float64)
        reference = {"kind": "closed_form", "bayes_mse": exact.bayes_mse(), "estimator": "lmmse", "linear_estimator": "lmmse"}
        return exact, [("lmmse", exact, {})], reference, variance
    variance = exact.pixel_variance(y.double()).flatten(1).mean(1)
    reference = {
        "kind": "closed_form", "bayes_mse": float(variance.mean()), "bayes_mse_stderr": float(variance.std() / variance.numel() ** 0.5),
        "estimator": "exact_mean", "linear_estimator": "lmmse",
    }
    return exact, [("exact_mean", exact, {}), ("lmmse", GaussianPosterior(prior, operator, noise_std), {})], reference, variance


def registered_methods(
    names: list[str], checkpoints: Callable[[str], Path], params: Params, geometry: dict, operator: LinearOperator, val: Split,
    missing: Callable[[str], str] = lambda name: "train it first", context: Mapping[str, Callable[[], object]] | None = None,
) -> Iterator[tuple[str, Callable, dict]]:
    """(name, reconstruct, parameters chosen on val) for each method of `names`
    (`geometry`: the data's operator description, `operator` built from it):
    a learned one from the checkpoint `checkpoints(name)` (`missing(name)` says
    what to do when there is none), a classical one fitted on the first
    `fit_items` validation items (its own, else evaluate's). What a method
    needs besides (Method.needs) comes from `context` (name -> loader), a
    trained prior model from its checkpoint."""
    for name in names:
        method = get_method(name)
        if method.learned:
            yield name, trained_model(name, checkpoints, geometry, missing), {}
        else:
            reconstruct = build_method(name, params, operator, lambda need: trained_model(need, checkpoints, geometry, missing), context or {})
            n = getattr(getattr(params.methods, name), "fit_items", params.evaluate.fit_items)
            chosen = reconstruct.fit(torch.from_numpy(val.measurements[:n]), torch.from_numpy(val.images[:n]))
            yield name, reconstruct, chosen


def data_context(data: Path, noise_std: float) -> dict[str, Callable[[], object]]:
    """What untrained methods may need from a pipeline's data folder, loaded
    only when asked: the training images (linear_mmse) and the noise std."""
    from .datasets import read_split

    return {"train_images": lambda: read_split(data / "train.h5").images, "noise_std": lambda: noise_std}


def trained_model(name: str, checkpoints: Callable[[str], Path], geometry: dict, missing: Callable[[str], str]):
    """A learned method's or prior model's module, from `checkpoints(name)`, refused
    (DataError, saying `missing(name)`) when absent or trained for something else."""
    checkpoint = checkpoints(name)
    if not checkpoint.exists():
        raise DataError(f"{checkpoint}: no trained model ({missing(name)})")
    try:
        return load_checkpoint(checkpoint, name, geometry)
    except ValueError as e:  # another method's or geometry's, or not weights only
        raise DataError(str(e)) from None


def build_method(
    name: str, params: Params, operator: LinearOperator, prior_model: Callable[[str], object], context: Mapping[str, Callable[[], object]],
):
    """An untrained method (classical or per item) with its params.yaml options,
    given what it needs: a prior model from `prior_model(name)`, anything else
    from `context`."""
    method = get_method(name)
    spec = getattr(params.methods, name)
    options = spec.options_at(params.scale) if hasattr(spec, "options_at") else spec.model_dump(exclude={"fit_items"})
    for need in method.needs:
        if need in RECONSTRUCTORS and RECONSTRUCTORS[need].prior_model:
            options[need] = prior_model(need)
        elif need in context:
            options[need] = context[need]()
        else:
            raise ValueError(f"method {name} needs {need!r}, which nothing provides")
    return method.build(operator, **options)
