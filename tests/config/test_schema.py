"""params.yaml / pipelines.yaml validation: errors name the file, key and rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recongap.config import ConfigError, load_catalogue, load_params, load_pipelines
from tests.conftest import ROOT


def test_committed_files_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.scale == "laptop" and params.current.size == 64
    pipelines = load_pipelines(ROOT / "pipelines.yaml")
    assert {"ellipses", "gaussian_field"} <= set(pipelines)
    assert pipelines["ellipses"].noise.relative_std == 0.05
    assert load_catalogue(ROOT / "pipelines.yaml").schedules["ellipses"] == "0 3 * * 1"
    assert params.orchestration.retries >= 0


def _write(tmp_path: Path, name: str, edit) -> Path:
    data = yaml.safe_load((ROOT / name).read_text())
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


LOADERS = {"params.yaml": load_params, "pipelines.yaml": load_pipelines}


@pytest.mark.parametrize(
    "name, edit, key, rule",
    [
        ("params.yaml", lambda d: d["scales"]["smoke"].update(sizee=3), "scales.smoke.sizee", "Extra inputs are not permitted"),
        ("params.yaml", lambda d: d["simulate"].update(batch_size="big"), "simulate.batch_size", "valid integer"),
        ("params.yaml", lambda d: d["scales"]["laptop"]["splits"].update(test=0), "scales.laptop.splits.test", "greater than or equal to 1"),
        ("params.yaml", lambda d: d.update(scale="huge"), "scale", "'smoke', 'laptop' or 'paper'"),
        ("params.yaml", lambda d: d["methods"]["cwgan"].update(n_critic=0), "methods.cwgan.n_critic", "greater than or equal to 1"),
        ("params.yaml", lambda d: d["methods"]["cwgan"].update(epochs={"lab": 1}), "methods.cwgan.epochs.lab", "'smoke', 'laptop' or 'paper'"),
        ("params.yaml", lambda d: d.update(scales={"smoke": d["scales"]["smoke"]}), "(top level)", "scale 'laptop' has no entry"),
        ("pipelines.yaml", lambda d: d["pipelines"]["ellipses"]["noise"].update(relative_std=2), "pipelines.ellipses.noise.relative_std", "less than or equal to 1"),
        ("pipelines.yaml", lambda d: d["pipelines"]["ellipses"]["prior"].update(name="stars"), "pipelines.ellipses.prior", "'ellipses', 'gaussian_field'"),
        ("pipelines.yaml", lambda d: d["pipelines"]["ellipses"]["prior"].update(mean_count=-1), "pipelines.ellipses.prior.ellipses.mean_count", "greater than 0"),
        ("pipelines.yaml", lambda d: d["pipelines"]["ellipses"]["forward"].update(geometry="cone"), "pipelines.ellipses.forward.geometry", "'parallel' or 'fan'"),
        ("pipelines.yaml", lambda d: d["pipelines"]["gaussian_field"].update(measurement_grid_factor=2), "pipelines.gaussian_field", "continuum"),
        ("pipelines.yaml", lambda d: d["pipelines"]["gaussian_field"]["prior"].update(length_scale=[0.1, -1]), "pipelines.gaussian_field.prior.gaussian_field.length_scale", "greater than 0"),
        ("pipelines.yaml", lambda d: d["pipelines"]["gaussian_field"].update(prior={"name": "gaussian_mixture", "components": [{}, {"std": 0.3}], "weights": [1.0]}),
         "pipelines.gaussian_field.prior.gaussian_mixture", "weights has 1 entries for 2 components"),
        ("pipelines.yaml", lambda d: d["pipelines"]["gaussian_field"].update(prior={"name": "gaussian_mixture", "components": [{}, {"lenght_scale": 0.3}], "weights": [0.5, 0.5]}),
         "pipelines.gaussian_field.prior.gaussian_mixture.components.1.lenght_scale", "Extra inputs are not permitted"),
        ("pipelines.yaml", lambda d: d["pipelines"]["gaussian_field"].update(prior={"name": "gaussian_mixture", "components": [{}, {"nugget": 0}], "weights": [0.5, 0.5]}),
         "pipelines.gaussian_field.prior.gaussian_mixture", "components.1.nugget must be > 0"),
        ("pipelines.yaml", lambda d: d["pipelines"]["ellipses"].pop("seed"), "pipelines.ellipses.seed", "Field required"),
        ("pipelines.yaml", lambda d: d["schedules"].update(ellipses="0 3 * *"), "schedules", "'0 3 * *' is not a cron expression"),
        ("pipelines.yaml", lambda d: d["schedules"].update(stars="0 3 * * 1"), "(top level)", "undefined pipeline(s) ['stars']"),
        ("params.yaml", lambda d: d["orchestration"].update(retries=-1), "orchestration.retries", "greater than or equal to 0"),
        ("pipelines.yaml", lambda d: d.update(learned_methods=["lgd"]), "(top level)", "start from the trained postproc, which learned_methods ['lgd'] lacks"),
        ("pipelines.yaml", lambda d: d.update(learned_methods=["postproc", "cwgan"]), "learned_methods.1", "'postproc', 'lgd' or 'lpd'"),
        ("pipelines.yaml", lambda d: d.update(prior_models=["vae"]), "(top level)", "pnp uses the trained denoiser, which prior_models ['vae'] lacks"),
        ("pipelines.yaml", lambda d: d.update(per_item_methods=["dip", "gen_range"]), "per_item_methods.1", "'dip' or 'adp'"),
        ("params.yaml", lambda d: d["methods"]["dip"].update(record_every=500), "methods.dip", "record_every = 500 exceeds max_iterations {'smoke': 100}"),
        ("params.yaml", lambda d: d["methods"]["pnp"].update(steps=[]), "methods.pnp.steps", "at least 1 item"),
        ("params.yaml", lambda d: d["solve"]["items"].update(laptop=0), "solve.items.laptop", "greater than or equal to 1"),
    ],
)
def test_bad_config_names_file_key_and_rule(tmp_path, name, edit, key, rule):
    path = _write(tmp_path, name, edit)
    with pytest.raises(ConfigError) as info:
        LOADERS[name](path)
    message = str(info.value)
    assert str(path) in message and key in message and rule in message


def test_missing_unparsable_and_unknown(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("scale: [unclosed")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="no pipeline 'ellipsis'"):
        load_catalogue(ROOT / "pipelines.yaml", "ellipsis")


def test_reference_budget_must_keep_a_sample_after_thinning(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("thin: 10 ", "thin: 50 ", 1)
    assert "thin: 50" in text
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="draws must be >= thin"):
        load_params(path)


def test_a_method_may_train_at_its_own_batch_size(tmp_path):
    def sizes(cwgan_batch):
        def edit(data):
            data["train"]["batch_size"] = 2
            data["methods"]["cwgan"]["batch_size"] = cwgan_batch
        params = load_params(_write(tmp_path, "params.yaml", edit))
        return params.batch_size("lpd"), params.batch_size("cwgan")

    assert sizes(8) == (2, 8)
    assert sizes(4) == (2, 4)


def test_a_method_may_train_for_its_own_epochs_per_scale(tmp_path):
    def epochs(scale, own):
        def edit(data):
            data["scale"] = scale
            data["scales"][scale]["epochs"] = 3
            data["methods"]["postproc"].pop("epochs", None)
            data["methods"]["lpd"]["epochs"] = own
        params = load_params(_write(tmp_path, "params.yaml", edit))
        return params.epochs("postproc"), params.epochs("lpd")

    assert epochs("laptop", {"laptop": 1}) == (3, 1)
    assert epochs("paper", {"laptop": 1}) == (3, 3)  # a scale it does not name: the scale's epochs
    assert epochs("laptop", {}) == (3, 3)
    assert epochs("paper", 2) == (3, 2)  # one number: every scale


def test_own_epochs_are_no_network_option(tmp_path):
    def edit(data):
        for method in ("postproc", "lgd", "lpd", "cwgan"):
            data["methods"][method]["epochs"] = {"laptop": 4}
    params = load_params(_write(tmp_path, "params.yaml", edit))
    for method in ("postproc", "lgd", "lpd", "cwgan"):
        assert params.epochs(method) == 4 and "epochs" not in getattr(params.methods, method).model_dump()
