"""A hyper-parameter's default is the library's: where params.yaml's schema
restates one (to validate it and describe it), the two must not drift."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from recongap.config import schema
from recongap.posterior import ReferenceSettings
from recongap.reconstructors import LearnedGradientDescent, LearnedPrimalDual, PostProcessing, TVReconstructor
from recongap.reconstructors.analytic_deep_prior import AnalyticDeepPrior
from recongap.reconstructors.cwgan import ConditionalGenerator, CWGANModule
from recongap.reconstructors.deep_image_prior import DeepImagePrior
from recongap.reconstructors.generative import GenerativeRange, GenerativeSoft, VariationalAutoencoder
from recongap.reconstructors.plug_and_play import Denoiser, PlugAndPlay
from recongap.reconstructors.lightning import ReconstructionModule


def signature_defaults(callable_) -> dict:
    return {
        name: p.default for name, p in inspect.signature(callable_).parameters.items() if p.default is not inspect.Parameter.empty
    }


def dataclass_defaults(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


PAIRS = [
    (schema.PostProcessingParams, signature_defaults(PostProcessing)),
    (schema.LGDParams, signature_defaults(LearnedGradientDescent)),
    (schema.LPDParams, signature_defaults(LearnedPrimalDual)),
    (schema.CWGANParams, signature_defaults(ConditionalGenerator)),
    (schema.TVParams, signature_defaults(TVReconstructor)),
    (schema.TrainParams, signature_defaults(ReconstructionModule)),
    (schema.TrainParams, signature_defaults(CWGANModule)),
    (schema.ReferenceParams, dataclass_defaults(ReferenceSettings)),
    (schema.PlugAndPlayParams, signature_defaults(PlugAndPlay)),
    # max_iterations: per scale in params.yaml, one number in the library
    (schema.DeepImagePriorParams, {k: v for k, v in signature_defaults(DeepImagePrior).items() if k != "max_iterations"}),
    (schema.AnalyticDeepPriorParams, signature_defaults(AnalyticDeepPrior)),
    (schema.GenerativeRangeParams, signature_defaults(GenerativeRange)),
    (schema.GenerativeSoftParams, signature_defaults(GenerativeSoft)),
    (schema.DenoiserParams, signature_defaults(Denoiser)),
    (schema.VAEParams, signature_defaults(VariationalAutoencoder)),
]


@pytest.mark.parametrize("model, library", PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_schema_defaults_are_the_library_defaults(model, library):
    shared = sorted(set(model.model_fields) & set(library))
    assert len(shared) >= 2, f"{model.__name__} shares too few options with the library to compare: {shared}"
    drift = {name: (model.model_fields[name].default, library[name]) for name in shared if model.model_fields[name].default != library[name]}
    assert not drift, f"{model.__name__}: schema default != library default: {drift}"


def test_linear_mmse_default_is_the_librarys():
    from recongap.reconstructors.linear_mmse import LinearMMSE

    assert schema.LinearMMSEParams().max_train_items == signature_defaults(LinearMMSE)["max_train_items"]


def test_the_prior_models_the_schema_requires_are_the_registrys():
    """USES_PRIOR_MODEL (checked when pipelines.yaml is read) restates what each method's builder needs."""
    from recongap.reconstructors import RECONSTRUCTORS

    needs = {name: need for name, m in RECONSTRUCTORS.items() for need in m.needs if need in RECONSTRUCTORS and RECONSTRUCTORS[need].prior_model}
    assert needs == schema.USES_PRIOR_MODEL


def test_the_per_item_methods_the_schema_lists_are_the_registrys():
    from typing import get_args

    from recongap.reconstructors import RECONSTRUCTORS

    per_item = {name for name, m in RECONSTRUCTORS.items() if m.per_item}
    assert per_item == set(get_args(schema.PerItemMethod)) | set(get_args(schema.GenerativeMethod))
    assert {name for name in per_item if RECONSTRUCTORS[name].needs} == set(get_args(schema.GenerativeMethod))


def test_default_reference_settings_pass_the_library_checks():
    ReferenceSettings(**{k: v for k, v in schema.ReferenceParams().model_dump().items() if k in dataclass_defaults(ReferenceSettings)})


@pytest.mark.parametrize(
    "model, library",
    [
        (schema.PostProcessingParams, PostProcessing),
        (schema.LGDParams, LearnedGradientDescent),
        (schema.LPDParams, LearnedPrimalDual),
        (schema.TVParams, TVReconstructor),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_every_option_the_schema_passes_is_one_the_library_takes(model, library):
    """A renamed parameter on either side fails here, not in a stage."""
    passed = set(model().model_dump())
    assert passed <= set(signature_defaults(library)), passed - set(signature_defaults(library))
