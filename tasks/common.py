"""What every stage entry point shares: device choice and clean failure."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

import torch

from recongap.config import ConfigError, Params, Pipelines, load_catalogue, load_params
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


def stage_parser(description: str, *positionals: str) -> argparse.ArgumentParser:
    """A stage's command line: its positionals, and where the config files are."""
    parser = argparse.ArgumentParser(description=description)
    for name in positionals:
        parser.add_argument(name)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pipelines", default="pipelines.yaml")
    return parser


def load_configs(args: argparse.Namespace) -> tuple[Params, Pipelines]:
    """Both validated config files, checking that `args.pipeline` is defined."""
    return load_params(args.params), load_catalogue(args.pipelines, args.pipeline)
