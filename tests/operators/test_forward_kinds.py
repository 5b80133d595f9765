"""Forward problems beyond CT through the pipeline's parts: pipelines.yaml's
`forward.kind`, the operator a description builds, and every method built
on it (issue 20)."""

from __future__ import annotations

import pytest
import torch

from recongap.config import ConfigError
from recongap.config.schema import PipelineConfig, Pipelines
from recongap.datasets import measurement_operator
from recongap.operators import Blur, Integration, RayTransform, SinglePixel, UndersampledFourier, canonical, operator_from, operator_kind
from recongap.reconstructors import RECONSTRUCTORS, build_network
from recongap.reconstructors.lightning import ReconstructionModule, load_checkpoint

SIZE = 16
FORWARDS = {
    "single_pixel": {"kind": "single_pixel", "patterns": 40},
    "mri": {"kind": "mri", "acceleration": 4},
    "blur": {"kind": "blur", "kernel": "motion", "length": 5, "angle": 0.3},
    "integration": {"kind": "integration", "alpha": 0.01},
}
CLASSES = {"single_pixel": SinglePixel, "mri": UndersampledFourier, "blur": Blur, "integration": Integration}


def _shape(kind: str) -> tuple[int, ...]:
    return (SIZE,) if kind == "integration" else (SIZE, SIZE)  # 1-D signals, else images


def _pipeline(forward: dict, **extra) -> PipelineConfig:
    prior = {"name": "gaussian_process" if forward.get("kind") == "integration" else "gaussian_field"}
    return PipelineConfig.model_validate(
        {"seed": 1, "forward": forward, "prior": prior, "noise": {"relative_std": 0.05}} | extra
    )


@pytest.mark.parametrize("kind", FORWARDS)
def test_a_config_entry_builds_its_operator_and_the_description_round_trips(kind):
    description = _pipeline(FORWARDS[kind]).forward.description_for(SIZE)
    operator = operator_from(description)
    assert isinstance(operator, CLASSES[kind]) and operator_kind(description) == kind
    assert operator.domain_shape == _shape(kind)
    assert list(canonical(dict(reversed(list(description.items()))))) == sorted(description)  # one key order to compare
    # what each option says reaches the operator
    if kind == "single_pixel":
        assert operator.range_shape == (1, 40)
    if kind == "mri":
        assert operator.samples == SIZE * (SIZE // 4)  # whole lines, one in 4
    if kind == "blur":
        assert torch.allclose(operator.transfer, Blur.motion(SIZE, 5, 0.3).transfer)
    if kind == "integration":
        assert operator.alpha == 0.01 and operator.range_shape == (SIZE,)


def test_ct_stays_the_default_and_its_recorded_config_unchanged():
    pipe = _pipeline({"geometry": "parallel", "angles": 12})
    assert pipe.forward.kind == "ct" and "kind" not in pipe.model_dump(mode="json")["forward"]
    description = pipe.forward.description_for(SIZE)
    assert description == pipe.forward.geometry_for(SIZE).resolved() and operator_kind(description) == "ct"
    assert isinstance(operator_from(description), RayTransform)


@pytest.mark.parametrize(
    "forward, extra, message",
    [
        ({"kind": "xray"}, {}, "does not match any of the expected tags"),
        ({"kind": "single_pixel", "angles": 3}, {}, "Extra inputs are not permitted"),
        ({"kind": "mri", "mask": "spiral"}, {}, "'cartesian' or 'radial'"),
        ({"kind": "blur"}, {"measurement_grid_factor": 2, "prior": {"name": "ellipses"}}, "needs the ray transform"),
        ({"kind": "blur"}, {"prior": {"name": "gaussian_process"}}, "draws 1-D signals, forward kind 'blur' needs"),
        ({"kind": "integration"}, {"prior": {"name": "gaussian_field"}}, "draws 2-D images, forward kind 'integration' needs"),
        ({"kind": "integration", "alpha": 0}, {}, "greater than 0"),
    ],
)
def test_a_bad_forward_entry_is_refused_naming_it(forward, extra, message):
    with pytest.raises(ValueError, match=message):
        _pipeline(forward, **extra)


def test_errors_name_the_key_without_pydantics_union_tag(tmp_path):
    from recongap.config import load_pipelines

    path = tmp_path / "pipelines.yaml"
    path.write_text("pipelines:\n  p:\n    seed: 1\n    forward: {kind: mri, acceleration: 0}\n"
                    "    prior: {name: gaussian_field}\n    noise: {relative_std: 0.05}\n")
    with pytest.raises(ConfigError, match=r"pipelines\.p\.forward\.acceleration: Input should be greater than or equal to 1"):
        load_pipelines(path)


def test_an_unknown_or_malformed_description_is_refused():
    with pytest.raises(ValueError, match="unknown forward operator kind 'xray'"):
        operator_from({"kind": "xray", "size": 8})
    with pytest.raises(ValueError, match="single_pixel operator description .* does not fit"):
        operator_from({"kind": "single_pixel", "size": 8})
    with pytest.raises(ValueError, match="size must be a power of 2"):
        operator_from({"kind": "single_pixel", "size": 12, "patterns": 4})
    with pytest.raises(ValueError, match="finer measurement grid needs a ray transform"):
        measurement_operator(SinglePixel(8, 4), 2)


def test_each_pipeline_gets_the_classical_methods_of_its_kind():
    base = {"prior": {"name": "gaussian_field"}, "noise": {"relative_std": 0.05}}
    catalogue = Pipelines.model_validate({
        "classical_methods": ["fbp", "first", "tv"],
        "pipelines": {"ct": {"seed": 1, "forward": {}, **base}, "mri": {"seed": 2, "forward": {"kind": "mri"}, **base}},
    })
    assert catalogue.classical_methods_for("ct") == ["fbp", "tv"]
    assert catalogue.classical_methods_for("mri") == ["first", "tv"]
    assert set(catalogue.not_applicable("mri")) == {"fbp"} and set(catalogue.not_applicable("ct")) == {"first"}


@pytest.mark.parametrize("kind", FORWARDS)
def test_every_method_runs_on_the_kind_and_postprocessing_starts_from_its_first_reconstruction(kind):
    operator, shape = operator_from(_pipeline(FORWARDS[kind]).forward.description_for(SIZE)), _shape(kind)
    y = operator(torch.rand(3, 1, *shape, generator=torch.Generator().manual_seed(0)))
    first = RECONSTRUCTORS["first"].build(operator)
    assert torch.equal(first(y), operator.first_reconstruction(y))
    assert RECONSTRUCTORS["tv"].build(operator, iterations=5)(y).shape == (3, 1, *shape)
    small = {"postproc": {"channels": 4, "depth": 2}, "lgd": {"iterations": 2, "width": 4}, "lpd": {"iterations": 2, "width": 4},
             "cwgan": {"channels": 4, "depth": 2}}
    for name, options in small.items():
        network = build_network(name, operator, **options)
        out = network(y) if name != "cwgan" else network.refine(network.initial(y), torch.randn(3, 4, *shape))
        assert out.shape == (3, 1, *shape), name
        out.sum().backward()  # the operator is differentiable inside every network
    start = build_network("postproc", operator, channels=4, depth=2)
    torch.nn.init.zeros_(start.unet.out.weight), torch.nn.init.zeros_(start.unet.out.bias)
    assert torch.allclose(start(y), operator.first_reconstruction(y))  # residual U-Net at zero: the first reconstruction


def test_a_checkpoint_knows_its_operator_kind(tmp_path):
    mri = _pipeline(FORWARDS["mri"]).forward.description_for(SIZE)
    module = ReconstructionModule("lgd", mri, {"iterations": 2, "width": 4})
    path = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    loaded = load_checkpoint(path, "lgd", dict(mri))
    assert isinstance(loaded.network.operator, UndersampledFourier)
    with pytest.raises(ValueError, match="checkpoint geometry .* differs"):
        load_checkpoint(path, "lgd", {**mri, "acceleration": 8})
