"""DVC stage `register` (second half): gated promotion of each learned method.

    python -m tasks.promote PIPELINE

For `<PIPELINE>-<METHOD>`, the version aliased `challenger` is re-scored
beside the `champion` on data/PIPELINE/test.h5 (both loaded from the
registry, as a user would); `champion` moves only when the challenger is
better by `registry.promotion_margin_db`. The first version becomes champion.
The decision, both figures and the margin are tags of the challenger
version; a summary goes to reports/registry/PIPELINE.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from recongap.config import ConfigError
from recongap.datasets import DataError
from recongap.files import write_text_atomic

from . import tracking
from .common import load_configs, run_stage, stage_parser
from .register import model_name, test_psnr


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind `name@alias`, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def comparison_figure(name: str, version: str, test_file: Path, batch_size: int) -> float:
    """The figure promotion compares (higher is better): test PSNR in dB of the
    registered model. Hook: where a converged posterior reference exists for the
    pipeline, return minus the normalized error (recongap.evaluation.normalized_error)
    here and express the margin in its units."""
    import mlflow
    import torch

    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return test_psnr(lambda y: torch.from_numpy(model.predict(y.numpy())), test_file, batch_size)


def promote_method(pipeline: str, method: str, test_file: Path, margin_db: float, batch_size: int) -> dict:
    """Decide for one registered model; returns the decision record."""
    from mlflow import MlflowClient

    client = MlflowClient()
    name = model_name(pipeline, method)
    challenger = alias_version(client, name, "challenger")
    if challenger is None:
        raise ConfigError(f"{name}: no version aliased 'challenger' (run `python -m tasks.register {pipeline}` first)")
    champion = alias_version(client, name, "champion")
    record = {"model": name, "challenger": challenger, "champion_before": champion, "margin_db": margin_db}
    if champion == challenger:
        record.update(decision="unchanged: challenger is the champion", champion=champion)
        return record

    challenger_psnr = comparison_figure(name, challenger, test_file, batch_size)
    record["challenger_psnr"] = challenger_psnr
    if champion is None:
        promote, decision = True, "promoted: first version"
    else:
        champion_psnr = comparison_figure(name, champion, test_file, batch_size)
        record["champion_psnr"] = champion_psnr
        promote = challenger_psnr > champion_psnr + margin_db
        decision = (
            f"promoted: {challenger_psnr:.3f} dB > champion {champion_psnr:.3f} + {margin_db} dB"
            if promote
            else f"refused: {challenger_psnr:.3f} dB is not above champion v{champion} {champion_psnr:.3f} + {margin_db} dB"
        )
    if promote:
        client.set_registered_model_alias(name, "champion", challenger)
    record.update(decision=decision, champion=challenger if promote else champion)
    tags = {"promotion_decision": decision, "promotion_margin_db": str(margin_db), "challenger_psnr": f"{challenger_psnr:.4f}"}
    if "champion_psnr" in record:
        tags["champion_psnr"] = f"{record['champion_psnr']:.4f}"
        tags["compared_with_version"] = champion
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    return record


def main() -> None:
    parser = stage_parser("Promote each challenger of one pipeline to champion when it is better.", "pipeline")
    parser.add_argument("--data", default="data")
    parser.add_argument("--out", default="reports/registry")
    args = parser.parse_args()
    params, catalogue = load_configs(args)
    test_file = Path(args.data) / args.pipeline / "test.h5"
    if not test_file.exists():
        raise DataError(f"{test_file}: no test split (run `dvc repro simulate@{args.pipeline}`)")
    tracking.connect()
    records = []
    for method in catalogue.learned_methods:
        record = promote_method(args.pipeline, method, test_file, params.registry.promotion_margin_db, params.evaluate.batch_size)
        print(f"{record['model']}: {record['decision']}; champion is version {record['champion']}")
        records.append(record)
    summary = {"pipeline": args.pipeline, "tracking_uri": tracking.tracking_uri(), "models": records}
    write_text_atomic(Path(args.out) / f"{args.pipeline}.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    run_stage(main)
