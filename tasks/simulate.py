"""DVC stage `simulate`: paired data for one pipeline.

    python -m tasks.simulate PIPELINE [--params params.yaml] [--pipelines pipelines.yaml] [--out data]

Writes data/PIPELINE/{train,val,test}.h5 at the scale chosen in params.yaml.
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from recongap.config import ConfigError
from recongap.datasets import (
    calibrate_noise_std,
    derived_seed,
    generator_for,
    measurement_operator,
    simulate_split,
    write_split,
)
from recongap.operators import operator_from

from .common import load_configs, pick_device, run_stage, stage_parser


def main() -> None:
    parser = stage_parser("Simulate the paired data of one pipeline.", "pipeline")
    parser.add_argument("--out", default="data")
    args = parser.parse_args()

    params, catalogue = load_configs(args)
    pipe = catalogue.pipelines[args.pipeline]
    settings = params.simulate
    scale = params.current
    device = pick_device(settings.device)

    description = pipe.forward.description_for(scale.size)
    try:
        operator = operator_from(description)
    except ValueError as e:  # e.g. single_pixel at a size that is no power of 2
        raise ConfigError(f"pipelines.yaml: pipelines.{args.pipeline}.forward at size {scale.size}: {e}") from None
    prior = pipe.prior.build(scale.size)
    measure = measurement_operator(operator, pipe.measurement_grid_factor)
    noise_std = calibrate_noise_std(
        prior,
        scale.size,
        measure,
        pipe.noise.relative_std,
        settings.noise_calibration_samples,
        generator_for(pipe.seed, "noise-calibration"),
        device,
    )
    config = {
        "pipeline": args.pipeline,
        "scale": params.scale,
        "size": scale.size,
        "pipeline_config": pipe.model_dump(mode="json"),
        "geometry": description,  # the operator's description (recongap.operators.operator_from)
        "simulate": settings.model_dump(mode="json"),
    }
    for split, n in scale.splits.model_dump().items():
        with tqdm(total=n, desc=f"simulate {args.pipeline}/{split}", unit="pair") as bar:
            data = simulate_split(
                prior,
                scale.size,
                measure,
                n,
                generator_for(pipe.seed, split),
                noise_std,
                device,
                settings.batch_size,
                progress=bar.update,
            )
        data.attrs = {
            "config": config,
            "seed": derived_seed(pipe.seed, split),
            "split": split,
            "noise_std": noise_std,
            "measurement_grid_factor": pipe.measurement_grid_factor,
            "inverse_crime": pipe.measurement_grid_factor == 1,
        }
        write_split(Path(args.out) / args.pipeline / f"{split}.h5", data)


if __name__ == "__main__":
    run_stage(main)
