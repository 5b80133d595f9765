"""Validated configuration: params.yaml (hyper-parameters, scale) and pipelines.yaml."""

from .schema import ConfigError, Params, PipelineConfig, load_catalogue, load_params, load_pipeline, load_pipelines

__all__ = ["ConfigError", "Params", "PipelineConfig", "load_catalogue", "load_params", "load_pipeline", "load_pipelines"]
