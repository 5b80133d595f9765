"""DVC stage `register` (second half): gated promotion of each learned method.

    python -m tasks.promote PIPELINE

For `<PIPELINE>-<METHOD>`, the version aliased `challenger` is scored beside
the `champion` on data/PIPELINE/val.h5, item by item (both loaded from the
registry, as a user would). `champion` moves only when the challenger's
validation MSE is lower by more than `registry.promotion_margin` of the
champion's, beyond two paired standard errors (recongap.comparison). The test
split never decides: its figures, and the normalized errors against the
reference, are the reports', free of selection. The first version becomes
champion; a champion that no longer loads is reported and replaced. The
decision and its figures are tags of the challenger version; a summary goes
to reports/registry/PIPELINE.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from recongap.comparison import improvement_beyond_margin
from recongap.config import ConfigError
from recongap.datasets import DataError
from recongap.evaluation import errors_on_split
from recongap.files import write_text_atomic

from . import tracking
from .common import load_configs, run_stage, stage_parser
from .register import model_name

CRITERION = "validation_mse"


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind `name@alias`, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_version(name: str, version: str):
    """Registered version `name/version` as a pyfunc model."""
    import mlflow

    return mlflow.pyfunc.load_model(f"models:/{name}/{version}")


def validation_errors(model, method: str, val_file: Path, batch_size: int):
    """Per-item MSE of a loaded registered model on the validation split."""
    import torch

    return errors_on_split(method, lambda y: torch.from_numpy(model.predict(y.numpy())), val_file, batch_size)[0]


def promote_method(pipeline: str, method: str, val_file: Path, margin: float, batch_size: int) -> dict:
    """Decide for one registered model; returns the decision record."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name = model_name(pipeline, method)
    challenger = alias_version(client, name, "challenger")
    if challenger is None:
        raise ConfigError(f"{name}: no version aliased 'challenger' (run `python -m tasks.register {pipeline}` first)")
    champion = alias_version(client, name, "champion")
    record = {"model": name, "challenger": challenger, "champion_before": champion, "criterion": CRITERION, "margin": margin}
    if champion == challenger:
        record.update(decision="unchanged: challenger is the champion", champion=champion)
        return record

    challenger_mse = validation_errors(load_version(name, challenger), method, val_file, batch_size)
    tags = {"promotion_criterion": CRITERION, "promotion_margin": str(margin), "challenger_validation_mse": f"{float(challenger_mse.mean()):.6g}"}
    if champion is None:
        promote, decision = True, "promoted: first version"
    else:
        tags["compared_with_version"] = champion
        try:
            old = load_version(name, champion)
        except Exception as e:  # whatever stops an old version loading (a moved class, a lost artefact): report, replace
            promote, decision = True, f"promoted: champion v{champion} does not load ({type(e).__name__}: {e}); replaced"
        else:  # scoring errors are not caught: they end the stage
            champion_mse = validation_errors(old, method, val_file, batch_size)
            claim = improvement_beyond_margin(challenger_mse, champion_mse, margin)
            better = claim["improvement"]
            promote = claim["verdict"] == "holds"
            decision = (
                f"{'promoted' if promote else 'refused'}: validation MSE lower than champion v{champion}'s by "
                f"{better['mean']:.2%} ± {better['stderr']:.2%} (paired over {better['items']} items; "
                f"margin {margin:.2%}): {claim['verdict']}"
            )
            record.update(improvement=better, verdict=claim["verdict"])
            tags.update(champion_validation_mse=f"{float(champion_mse.mean()):.6g}", validation_mse_improvement=f"{better['mean']:.6g}",
                        validation_mse_improvement_stderr=f"{better['stderr']:.6g}")
    if promote:
        client.set_registered_model_alias(name, "champion", challenger)
    record.update(decision=decision, champion=challenger if promote else champion)
    for key, value in {**tags, "promotion_decision": decision}.items():
        client.set_model_version_tag(name, challenger, key, value)
    return record


def main() -> None:
    parser = stage_parser("Promote each challenger of one pipeline to champion when it is better.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="reports/registry")
    args = parser.parse_args()
    params, catalogue = load_configs(args)
    val_file = Path(args.data) / args.pipeline / "val.h5"
    if not val_file.exists():
        raise DataError(f"{val_file}: no validation split (run `dvc repro simulate@{args.pipeline}`)")
    tracking.connect()
    records = []
    for method in catalogue.trained_methods:
        record = promote_method(args.pipeline, method, val_file, params.registry.promotion_margin, params.evaluate.batch_size)
        print(f"{record['model']}: {record['decision']}; champion is version {record['champion']}")
        records.append(record)
    summary = {"pipeline": args.pipeline, "tracking_uri": tracking.portable_uri(tracking.tracking_uri()), "models": records}
    write_text_atomic(Path(args.out) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
