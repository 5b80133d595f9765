"""DVC stage `reference`: the MCMC posterior of each test item of one pipeline.

    python -m tasks.reference PIPELINE

Samples p(x | y) under the very prior, operator, noise level and measurement
grid that made the test data, for the first `reference.budgets.<scale>.items`
(or the pipeline's own `reference_budgets.<scale>.items`)
test items, and writes models/PIPELINE/reference/item_NNNNN.npz (posterior
mean, pixel std, thinned samples, diagnostics) plus summary.json. Items done
with the same settings and code are skipped, so an interrupted run resumes;
items made with other settings, or by other sampler/prior/operator code, are
sampled again. On a Gaussian prior each item file also holds the closed-form
posterior mean and std.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recongap.config import ConfigError
from recongap.config.schema import ReferenceBudget, ReferenceParams
from recongap.datasets import DataError, Split, derived_seed, read_split
from recongap.operators import LinearOperator, operator_from
from recongap.posterior import closed_form_posterior
from recongap.posterior.reference import closed_form_check
from recongap.posterior.store import (
    ItemReference,
    code_fingerprint,
    load_reference,
    run_items,
    summarize,
    write_summary,
)

from . import tracking
from .common import load_configs, pick_device, run_stage, stage_parser

# The code a reference item depends on: the sampler, the priors, and the
# operators that compute A x (datasets.simulate builds the finer-grid operator
# of the likelihood). Its hash is in each item's fingerprint, so a fix here
# resamples the items the old code made. dvc.yaml's `reference` deps cover them.
CODE_MODULES = (
    "recongap.posterior.reference",
    "recongap.posterior.mcmc",
    "recongap.posterior.ellipse_blocks",
    "recongap.posterior.diagnostics",
    "recongap.posterior.gaussian",
    "recongap.posterior.gaussian_mixture",
    "recongap.posterior.closed_form",
    "recongap.priors.ellipses",
    "recongap.priors.gaussian_field",
    "recongap.priors.gaussian_mixture",
    "recongap.priors.gaussian_process",
    "recongap.priors.poisson_jumps",
    "recongap.posterior.jump_gibbs",
    "recongap.priors.special",
    "recongap.operators.ray_transform",
    "recongap.operators.backends",
    "recongap.operators.linear",
    "recongap.operators.geometry",
    "recongap.operators.base",
    "recongap.operators.forward",
    "recongap.operators.single_pixel",
    "recongap.operators.mri",
    "recongap.operators.blur",
    "recongap.operators.integration",
    "recongap.datasets.simulate",
)


def sampler_settings(settings: ReferenceParams, budget: ReferenceBudget) -> dict:
    """The keyword arguments of recongap's ReferenceSettings, from params.yaml's
    `reference` and this scale's budget (the seed is derived per batch)."""
    return {
        "chains": settings.chains,
        "warmup": budget.warmup,
        "draws": budget.draws,
        "thin": settings.thin,
        "step_size": settings.step_size,
        "target_accept": settings.target_accept,
        "leapfrog_steps": budget.leapfrog_steps or settings.leapfrog_steps,
        "seed": settings.seed,
        "temperatures": settings.temperatures,
        "beta_min": settings.beta_min,
        "start": settings.start,
        "projections": settings.projections,
        "probe_chains": settings.probe_chains,
        "render_dtype": settings.render_dtype,
        "sampler": settings.sampler,
        "birth_death_moves": settings.birth_death_moves,
        "intensity_moves": settings.intensity_moves,
    }


@dataclass
class ReferenceJob:
    """One pipeline's reference: its test split, the posterior it was simulated
    under (prior, operator, noise, measurement grid), and how to sample it."""

    test: Split
    prior: object
    operator: LinearOperator
    noise_std: float
    grid_factor: int
    closed_form: object | None
    device: torch.device
    settings: ReferenceParams
    budget: ReferenceBudget
    sampler: dict
    common: dict  # what every item's fingerprint holds besides its own data

    def fingerprint(self, i: int) -> dict:
        test = self.test
        data = hashlib.sha256(test.measurements[i].tobytes() + test.images[i].tobytes() + test.params[i].tobytes()).hexdigest()
        return {**self.common, "item": i, "data_sha256": data}

    def sample(self, batch: list[int]) -> list[ItemReference]:
        from recongap.posterior.reference import ReferenceSettings, sample_reference

        y = torch.from_numpy(self.test.measurements[batch]).to(self.device)
        x = torch.from_numpy(self.test.images[batch]).to(self.device)
        # seeded by the batch's first item: a resumed run samples a batch as a full run would
        run = ReferenceSettings(**{**self.sampler, "seed": derived_seed(self.settings.seed, f"reference-{batch[0]}")})
        theta = torch.from_numpy(self.test.params[batch]).to(self.device)  # an exact posterior draw per item: where start="truth" starts
        results = sample_reference(
            self.prior, self.operator, self.noise_std, y, run, truth=x, measurement_grid_factor=self.grid_factor, truth_params=theta
        )
        items = []
        for j, r in enumerate(results):
            item = ItemReference(mean=_numpy(r.mean), std=_numpy(r.std), samples=_numpy(r.samples), diagnostics=dict(r.diagnostics))
            if self.closed_form is not None:
                yj = y[j : j + 1].cpu().double()
                exact_mean = self.closed_form.mean(yj)
                item.closed_form_mean = _numpy(exact_mean)
                item.closed_form_std = _numpy(self.closed_form.pixel_std(yj))
                item.diagnostics["closed_form"] = closed_form_check(
                    r.diagnostics["summaries"], exact_mean, run.projections, items=self.budget.items
                )
            items.append(item)
        return items


def reference_job(args, params, catalogue) -> ReferenceJob:
    """Check the config against the test split, then build what sampling needs."""
    pipe = catalogue.pipelines[args.pipeline]
    settings = params.reference
    try:
        budget = pipe.reference_budgets.get(params.scale) or settings.budget(params.scale)
    except ValueError as e:
        raise ConfigError(f"{args.params}: {e}") from None
    budget_key = (f"{args.pipelines}: pipelines.{args.pipeline}.reference_budgets" if params.scale in pipe.reference_budgets
                  else f"{args.params}: reference.budgets")
    if budget.draws < settings.thin:  # params.yaml's own budgets are checked when it is read; a pipeline's here
        raise ConfigError(f"{budget_key}.{params.scale}.draws = {budget.draws} keeps no sample at reference.thin = {settings.thin}")
    test_file = Path(args.data) / args.pipeline / "test.h5"
    test = read_split(test_file)
    if budget.items > test.images.shape[0]:
        raise ConfigError(
            f"{budget_key}.{params.scale}.items = {budget.items} but {test_file} "
            f"holds {test.images.shape[0]} test items"
        )
    size = test.attrs["config"]["size"]
    if test.images.shape[-1] != size:
        raise DataError(f"{test_file}: images are {test.images.shape[-2:]} but attrs say size {size}")
    operator = operator_from(test.attrs["config"]["geometry"])
    noise_std = float(test.attrs["noise_std"])
    grid_factor = int(test.attrs.get("measurement_grid_factor", 1))
    prior = pipe.prior.build(size)
    sampler = sampler_settings(settings, budget)
    common = {
        "sampler": sampler,
        "batch_items": settings.batch_items,
        "prior": pipe.prior.model_dump(mode="json"),
        "noise_std": noise_std,
        "measurement_grid_factor": grid_factor,
        "geometry": test.attrs["config"]["geometry"],
        "code_sha256": code_fingerprint(importlib.import_module(name) for name in CODE_MODULES),
    }
    return ReferenceJob(
        test, prior, operator, noise_std, grid_factor, closed_form_posterior(prior, operator, noise_std),
        pick_device(settings.device), settings, budget, sampler, common,
    )


def main() -> None:
    parser = stage_parser("Sample the reference posterior of one pipeline's test items.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="models")
    args = parser.parse_args()
    params, catalogue = load_configs(args)
    job = reference_job(args, params, catalogue)

    out = Path(args.out) / args.pipeline / "reference"
    indices = list(range(job.budget.items))
    for stale in set(out.glob("item_*.npz")) - {out / f"item_{i:05d}.npz" for i in indices}:
        stale.unlink()  # items beyond this scale's count would be read as part of the reference
    done = run_items(out, indices, job.fingerprint, job.sample, job.settings.batch_items)
    summary = summarize(load_reference(out, indices), job.settings.rhat_max, job.settings.ess_min)
    summary.update({"pipeline": args.pipeline, "scale": params.scale, "settings": job.common})
    write_summary(out, summary)
    tracking.log_stage(
        args.pipeline,
        f"reference@{args.pipeline}",
        {"scale": params.scale, "items": job.budget.items, "sampler": job.sampler},
        {key: float(summary[key]) for key in ("rhat_max", "ess_min", "ess_per_second_min", "seconds_per_item")}
        | {"items_flagged": float(len(summary["items_flagged"]))},
        [out / "summary.json"],
    )
    print(
        f"{args.pipeline}/reference: {len(done['sampled'])} sampled, {len(done['skipped'])} resumed; "
        f"R-hat max {summary['rhat_max']:.4f}, ESS min {summary['ess_min']:.0f}, "
        f"{len(summary['items_flagged'])} flagged: {json.dumps(summary['items_flagged'])}"
    )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


if __name__ == "__main__":
    run_stage(main)
