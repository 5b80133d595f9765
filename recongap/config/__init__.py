"""Validated configuration: params.yaml (hyper-parameters, scale) and pipelines.yaml."""

from .schema import ConfigError, Params, PipelineConfig, Pipelines, load_catalogue, load_params, load_pipelines

__all__ = ["ConfigError", "Params", "PipelineConfig", "Pipelines", "load_catalogue", "load_params", "load_pipelines"]
