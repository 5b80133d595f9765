"""DVC stages `solve` and `solve_generative`: a method optimised per
measurement (deep image prior, analytic deep prior; the generative
regularisers, with the trained vae) on the first `solve.items` test items
of one pipeline.

    python -m tasks.solve PIPELINE METHOD

Chooses the method's settings on the first `fit_items` validation items, then
solves the test items one at a time and the unseen phantom, into
models/PIPELINE/METHOD/ (recongap.solved). Resumable: a restart of an
interrupted run with the same settings (and the same trained prior model)
keeps the choice and every item already solved; a finished run, or other
settings, start afresh. A progress bar counts the items, another the steps of the current one.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from tqdm import tqdm

from recongap.config import ConfigError
from recongap.config.schema import USES_PRIOR_MODEL
from recongap.datasets import DataError, read_split
from recongap.evaluation import phantom_case
from recongap.methods import build_method, trained_model
from recongap.operators import operator_from
from recongap.solved import SolvedItems, item_key

from .common import load_configs, run_stage, stage_parser


def main() -> None:
    parser = stage_parser("Solve the first test items of one pipeline with a per-measurement method.", "pipeline", "method")
    parser.add_argument("--data", default="data")
    parser.add_argument("--models", default="models", help="where the trained prior models are, and the results go")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    if args.method not in catalogue.solved_methods:
        raise ConfigError(
            f"{args.pipelines}: {args.method!r} is not among per_item_methods {catalogue.per_item_methods} "
            f"or generative_methods {catalogue.generative_methods}"
        )
    data = Path(args.data) / args.pipeline
    test, val = read_split(data / "test.h5"), read_split(data / "val.h5")
    items, options = params.solve.items_at(params.scale), getattr(params.methods, args.method)
    if items > test.images.shape[0]:
        raise DataError(f"params.yaml solve.items.{params.scale} = {items}, but {data / 'test.h5'} holds {test.images.shape[0]} items")
    if options.fit_items > val.images.shape[0]:
        raise DataError(f"params.yaml methods.{args.method}.fit_items = {options.fit_items}, but {data / 'val.h5'} holds {val.images.shape[0]} items")
    geometry = test.attrs["config"]["geometry"]
    operator = operator_from(geometry)
    models = Path(args.models) / args.pipeline
    method = build_method(
        args.method, params, operator,
        lambda need: trained_model(need, lambda name: models / name / "best.ckpt", geometry, lambda name: f"run `dvc repro train_prior@{args.pipeline}-{name}`"),
        {"noise_std": lambda: test.attrs["noise_std"]},
    )

    store = SolvedItems(models / args.method)
    needed = [USES_PRIOR_MODEL[args.method]] if args.method in USES_PRIOR_MODEL else []
    resumed = store.start({  # the number of items is left out: they are a prefix, more of them extend a resumed run
        "method": args.method, "options": options.model_dump(), "scale": params.scale,
        "data_sha256": {name: _digest(data / name) for name in ("val.h5", "test.h5")},
        "prior_model_sha256": {need: _digest(models / need / "best.ckpt") for need in needed},
    })
    chosen = store.chosen() if resumed else None
    if chosen is None:
        n = options.fit_items
        with tqdm(total=method.fit_steps(n), desc=f"{args.pipeline}/{args.method} choosing on {n} val items", unit="step") as bar:
            chosen = method.fit(torch.from_numpy(val.measurements[:n]), torch.from_numpy(val.images[:n]), bar.update)
        store.write_chosen(chosen)
    method.choose(chosen)
    print(f"{args.pipeline}/{args.method}: chosen {chosen}" + (" (resumed)" if resumed else ""))

    phantom_y = phantom_case(operator, test.attrs["noise_std"])[1]
    cases = [(item_key(i), torch.from_numpy(test.measurements[i : i + 1])) for i in range(items)] + [("phantom", phantom_y)]
    todo = [(key, y) for key, y in cases if not store.has(key)]
    for key, y in tqdm(todo, desc=f"{args.pipeline}/{args.method} items", unit="item", initial=len(cases) - len(todo), total=len(cases)):
        with tqdm(total=getattr(method, "iterations", None), desc=f"item {key}", unit="step", leave=False) as bar:
            start = time.perf_counter()
            estimate = method.solve(y, bar.update)
            store.write(key, estimate, time.perf_counter() - start)
    store.finish()


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


if __name__ == "__main__":
    run_stage(main)
