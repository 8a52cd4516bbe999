"""Profiles and parameters: every key known, types and ranges checked, unsafe YAML refused."""
from __future__ import annotations

import pytest

from lib import SuiteError, runner
from lib.core import params, paths, stages


@pytest.mark.parametrize("stage", stages.STEMS)
def test_parameters_cell_is_annotated_literals_with_help(stage):
    declared = params.read_parameters(params.notebook_path(stage))
    assert {"data_dir", "weights", "image_size", "preprocessing", "seed", "run_name", "output_dir"} <= set(declared)
    for parameter in declared.values():
        assert parameter.help, f"{stage}: {parameter.name} has no comment"
        assert isinstance(parameter.default, params._TYPES[parameter.type_name])
    params.check_defaults(stage)


@pytest.mark.parametrize("profile_path", sorted(paths.PARAMS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_key_exists_in_the_notebooks(profile_path):
    profile = params.load_profile(str(profile_path))
    assert profile.get("description")
    for stage in stages.STEMS:
        declared = params.read_parameters(params.notebook_path(stage))
        values = params.stage_values(profile, stage)
        assert set(values) <= set(declared), f"{profile_path.name}: {set(values) - set(declared)} unknown to {stage}"
        params.resolve(stage, values)


def _profile(tmp_path, text):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return params.load_profile(str(path))


def test_unknown_key_is_refused_with_the_known_ones_listed(tmp_path):
    profile = _profile(tmp_path, "feature_extraction:\n  epoch: 3\n")
    with pytest.raises(SuiteError, match=r"unknown parameter 'epoch'.*Known parameters:.*epochs"):
        params.resolve_for_stage("01_feature_extraction", profile, {})


@pytest.mark.parametrize("text, message", [
    ("feature_extraction:\n  epochs: '3'\n", "must be int"),
    ("feature_extraction:\n  epochs: 2.5\n", "must be int"),
    ("feature_extraction:\n  epochs: true\n", "must be int"),
    ("feature_extraction:\n  epochs: -1\n", "out of range"),
    ("feature_extraction:\n  learning_rate: 0\n", "out of range"),
    ("feature_extraction:\n  dropout: 1.0\n", "out of range"),
    ("common:\n  image_size: 16\n", "out of range"),
    ("common:\n  preprocessing: caffe\n", "out of range"),
    ("fine_tuning:\n  unfreeze_layers: block5_conv1\n", "must be list"),
    ("fine_tuning:\n  unfreeze_layers: [block6_conv1]\n", "out of range.*block5_conv3"),
    ("fine_tuning:\n  unfreeze_layers: []\n", "out of range"),
])
def test_wrong_types_and_ranges_are_refused(tmp_path, text, message):
    profile = _profile(tmp_path, text)
    stage = "03_fine_tuning" if "fine_tuning" in text else "01_feature_extraction"
    with pytest.raises(SuiteError, match=message):
        params.resolve_for_stage(stage, profile, {})


def test_integer_is_accepted_for_a_float(tmp_path):
    profile = _profile(tmp_path, "data_augmentation:\n  rotation_degrees: 30\n")
    values = params.resolve_for_stage("02_data_augmentation", profile, {})
    assert values["rotation_degrees"] == 30.0 and isinstance(values["rotation_degrees"], float)


def test_invalid_yaml_and_unknown_sections(tmp_path):
    with pytest.raises(SuiteError, match="not valid YAML"):
        _profile(tmp_path, "common: [unclosed\n")
    with pytest.raises(SuiteError, match="unknown section 'stage1'"):
        _profile(tmp_path, "stage1:\n  epochs: 3\n")


def test_yaml_that_constructs_python_objects_is_refused(tmp_path):
    with pytest.raises(SuiteError, match="not valid YAML"):
        _profile(tmp_path, "common: !!python/object/apply:os.system ['echo unsafe']\n")


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(SuiteError, match=r"Unknown profile 'cpux'.*cpu, full, pool-table, smoke"):
        params.load_profile("cpux")


def test_environment_overrides_the_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", "/somewhere/photos")
    profile = params.load_profile("smoke")
    values = params.resolve_for_stage("01_feature_extraction", profile, {"epochs": 3})
    assert values["data_dir"] == "/somewhere/photos" and values["epochs"] == 3 and values["weights"] == "none"


def test_run_names_are_checked():
    assert paths.check_run_name("cpu-2024.1") == "cpu-2024.1"
    for bad in ("", "../escape", "a/b", "cache", "-x"):
        with pytest.raises(SuiteError):
            paths.check_run_name(bad)


def test_runner_refuses_bad_parameters_before_starting_a_kernel(tmp_path, capsys):
    code = runner.main(["feature_extraction", "--profile", "smoke", "--set", "epochz=3"])
    assert code == 2
    assert "epochz" in capsys.readouterr().err
    assert not (tmp_path / "outputs" / "smoke").exists()


def test_yaml_exponent_without_dot_is_read_as_a_number(tmp_path):
    profile = _profile(tmp_path, "feature_extraction:\n  learning_rate: 5e-5\n")  # YAML 1.1 gives a string.
    values = params.resolve_for_stage("01_feature_extraction", profile, {})
    assert values["learning_rate"] == 5e-5
