"""A hyper-parameter's default is the library's: where params.yaml's schema
restates one (to validate it and describe it), the two must not drift."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from recongap.config import schema
from recongap.posterior import ReferenceSettings
from recongap.reconstructors import LearnedGradientDescent, LearnedPrimalDual, PostProcessing, TVReconstructor
from recongap.reconstructors.cwgan import ConditionalGenerator, CWGANModule
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
]


@pytest.mark.parametrize("model, library", PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_schema_defaults_are_the_library_defaults(model, library):
    shared = sorted(set(model.model_fields) & set(library))
    assert len(shared) >= 2, f"{model.__name__} shares too few options with the library to compare: {shared}"
    drift = {name: (model.model_fields[name].default, library[name]) for name in shared if model.model_fields[name].default != library[name]}
    assert not drift, f"{model.__name__}: schema default != library default: {drift}"


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
