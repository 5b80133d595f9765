"""DVC stage `register` (second half): gated promotion of each learned method.

    python -m tasks.promote PIPELINE

For `<PIPELINE>-<METHOD>`, the version aliased `challenger` is re-scored
beside the `champion` on data/PIPELINE/test.h5 (both loaded from the
registry, as a user would); `champion` moves only when the challenger is
better by a margin. Where metrics/PIPELINE.json holds a converged reference
(the closed form, or an MCMC reference with no flagged item) the figure is
the normalized error MSE / Bayes MSE on the items it covers, with margin
`registry.promotion_margin_normalized_error`; otherwise the test PSNR, with
margin `registry.promotion_margin_db`. The first version becomes champion.
The decision, both figures, the criterion and the margin are tags of the
challenger version; a summary goes to reports/registry/PIPELINE.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from recongap.config import ConfigError
from recongap.datasets import DataError
from recongap.files import write_text_atomic

from . import tracking
from .common import load_configs, run_stage, stage_parser
from .register import model_name, test_errors


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind `name@alias`, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class Criterion:
    """What promotion compares, lower-is-better or higher-is-better, and the
    margin by which a challenger must win."""

    name: str  # "psnr" (dB, higher is better) or "normalized_error" (lower is better)
    margin: float
    bayes_mse: float | None = None
    items: int | None = None  # the first `items` test items (the reference's); None: all

    def figure(self, name: str, version: str, test_file: Path, batch_size: int) -> float:
        """This criterion's figure for registered version `name/version` on the test split."""
        import mlflow
        import torch

        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        mses, psnrs = test_errors(lambda y: torch.from_numpy(model.predict(y.numpy())), test_file, batch_size, self.items)
        return float(psnrs.mean()) if self.name == "psnr" else float(mses.mean()) / self.bayes_mse

    def beats(self, challenger: float, champion: float) -> bool:
        if self.name == "psnr":
            return challenger > champion + self.margin
        return challenger < champion - self.margin

    def describe(self, figure: float) -> str:
        return f"{figure:.3f} dB" if self.name == "psnr" else f"normalized error {figure:.4f}"


def promotion_criterion(metrics_file: Path, registry) -> Criterion:
    """Normalized error when `metrics_file` holds a converged reference, else PSNR."""
    psnr = Criterion("psnr", registry.promotion_margin_db)
    if not metrics_file.exists():
        return psnr
    try:
        reference = json.loads(metrics_file.read_text()).get("reference") or {}
    except json.JSONDecodeError as e:
        raise DataError(f"{metrics_file}: not valid JSON ({e})") from None
    margin = registry.promotion_margin_normalized_error
    if reference.get("kind") == "closed_form":
        return Criterion("normalized_error", margin, float(reference["bayes_mse"]))
    if reference.get("kind") == "mcmc" and reference.get("reliable"):
        return Criterion("normalized_error", margin, float(reference["bayes_mse"]), int(reference["items"]))
    return psnr


def promote_method(pipeline: str, method: str, test_file: Path, criterion: Criterion, batch_size: int) -> dict:
    """Decide for one registered model; returns the decision record."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name = model_name(pipeline, method)
    challenger = alias_version(client, name, "challenger")
    if challenger is None:
        raise ConfigError(f"{name}: no version aliased 'challenger' (run `python -m tasks.register {pipeline}` first)")
    champion = alias_version(client, name, "champion")
    record = {"model": name, "challenger": challenger, "champion_before": champion,
              "criterion": criterion.name, "margin": criterion.margin}
    if champion == challenger:
        record.update(decision="unchanged: challenger is the champion", champion=champion)
        return record

    challenger_figure = criterion.figure(name, challenger, test_file, batch_size)
    record[f"challenger_{criterion.name}"] = challenger_figure
    if champion is None:
        promote, decision = True, "promoted: first version"
    else:
        champion_figure = criterion.figure(name, champion, test_file, batch_size)
        record[f"champion_{criterion.name}"] = champion_figure
        promote = criterion.beats(challenger_figure, champion_figure)
        versus = f"champion v{champion} {criterion.describe(champion_figure)} by the margin {criterion.margin}"
        decision = (
            f"promoted: {criterion.describe(challenger_figure)} beats {versus}"
            if promote
            else f"refused: {criterion.describe(challenger_figure)} does not beat {versus}"
        )
    if promote:
        client.set_registered_model_alias(name, "champion", challenger)
    record.update(decision=decision, champion=challenger if promote else champion)
    tags = {
        "promotion_decision": decision,
        "promotion_criterion": criterion.name,
        "promotion_margin": str(criterion.margin),
        f"challenger_{criterion.name}": f"{challenger_figure:.6g}",
    }
    if champion is not None:
        tags[f"champion_{criterion.name}"] = f"{record[f'champion_{criterion.name}']:.6g}"
        tags["compared_with_version"] = champion
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    return record


def main() -> None:
    parser = stage_parser("Promote each challenger of one pipeline to champion when it is better.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--metrics", default="metrics")
    parser.add_argument("--out", default="reports/registry")
    args = parser.parse_args()
    params, catalogue = load_configs(args)
    test_file = Path(args.data) / args.pipeline / "test.h5"
    if not test_file.exists():
        raise DataError(f"{test_file}: no test split (run `dvc repro simulate@{args.pipeline}`)")
    criterion = promotion_criterion(Path(args.metrics) / f"{args.pipeline}.json", params.registry)
    tracking.connect()
    records = []
    for method in catalogue.trained_methods:
        record = promote_method(args.pipeline, method, test_file, criterion, params.evaluate.batch_size)
        print(f"{record['model']}: {record['decision']}; champion is version {record['champion']}")
        records.append(record)
    summary = {"pipeline": args.pipeline, "tracking_uri": tracking.portable_uri(tracking.tracking_uri()), "models": records}
    write_text_atomic(Path(args.out) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
