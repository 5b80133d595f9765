"""What every stage entry point shares: device choice and clean failure."""

from __future__ import annotations

import logging
import sys
from typing import Callable

import torch

from recongap.config import ConfigError, Params, load_catalogue, load_params
from recongap.config.schema import Pipelines
from recongap.datasets import DataError


def pick_device(choice: str) -> torch.device:
    """'auto' takes the GPU when torch sees one."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: device 'cuda' asked for, but torch sees no GPU (use 'auto' or 'cpu')")
    return torch.device(choice)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage; bad config or data ends it with the message and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def load_configs(params_path: str, pipelines_path: str, pipeline: str) -> tuple[Params, Pipelines]:
    """Both validated config files, and a check that `pipeline` is defined."""
    params, catalogue = load_params(params_path), load_catalogue(pipelines_path)
    if pipeline not in catalogue.pipelines:
        raise ConfigError(f"{pipelines_path}: no pipeline {pipeline!r} (defined: {sorted(catalogue.pipelines)})")
    return params, catalogue
