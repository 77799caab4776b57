import re
import sys

import pytest

from tuner.training.config import TrainConfig, flatten_config, parse_overrides, report_defaults


def test_defaults_follow_the_report_per_model_and_stage():
    assert TrainConfig(model="flow_resnet34").stage_settings(1) == report_defaults(
        "flow_resnet34", 1
    )
    both = TrainConfig(stage="both")
    assert both.stage_settings(1).lr == 1e-3
    assert both.stage_settings(1).milestones == (25, 75, 150)
    assert both.stage_settings(2).lr == 1e-4


def test_explicit_values_override_defaults_and_stage1_block_applies_to_stage_one():
    cfg = TrainConfig.from_dict({"stage": "both", "lr": 5e-4, "stage1": {"epochs": 3}})
    assert cfg.stage_settings(2).lr == 5e-4
    assert cfg.stage_settings(1).epochs == 3
    assert cfg.stage_settings(1).lr == 1e-3


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"lrr": 1}, "lrr"),
        ({"lr": -1.0}, "lr"),
        ({"frames": 0}, "frames"),
        ({"milestones": [70, 30]}, "milestones"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"alpha": {"ms": -1}}, "alpha.ms"),
        ({"stage1": {"bogus": 1}}, "stage1.bogus"),
        ({"ms_task": "classification", "ms_target": "gray"}, "ms_target"),
        ({"val_users": ["S1"]}, "val_users"),
        ({"cam": "yes"}, "cam"),
    ],
)
def test_bad_values_name_the_field(values, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        TrainConfig.from_dict(values)


def test_overrides_parse_yaml_values_and_nest_dotted_keys():
    parsed = parse_overrides(["lr=1e-4", "milestones=[30,70]", "alpha.ms=0.5", "cam=false"])
    assert parsed == {"lr": 1e-4, "milestones": [30, 70], "alpha": {"ms": 0.5}, "cam": False}
    cfg = TrainConfig().replace(**parsed)
    assert cfg.milestones == (30, 70)
    assert cfg.alpha.ms == 0.5 and cfg.alpha.sd == 1.0


def test_flatten_joins_nested_keys_with_dots():
    flat = flatten_config(TrainConfig().to_dict())
    assert flat["alpha.ms"] == 1.0
    assert "stage1.lr" in flat


def test_on_off_settings_survive_yaml_reading_them_as_booleans():
    parsed = parse_overrides(["bn_calibration=off"])
    assert TrainConfig().replace(**parsed).bn_calibration == "off"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", 1_000_000_000),
        ("crop_size", 100_000),
        ("frames", 100_000),
        ("mem_size", 1_000_000),
        ("batch_size", 10**20),
        ("milestones", [5, 10**9]),
        ("stage1", {"epochs": 10**9}),
    ],
)
def test_sizes_beyond_any_machine_are_refused_naming_the_key(key, value):
    """Such a size once planned a search for minutes (a per-epoch list of a billion epochs) or
    ended in an allocator's traceback."""
    name = "stage1.epochs" if key == "stage1" else key
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: .*(to|up to) [\d,]+, got "):
        TrainConfig.from_dict({"model": "ego_rnn", "stage": "both", key: value})


def test_a_search_with_a_billion_epochs_is_one_line_before_ray(tmp_path, capsys):
    from tuner.cli import main

    root = tmp_path / "missing-data-is-not-reached"
    argv = ["search", "demo", "--data", str(root), "--storage", str(tmp_path), "--set"]
    assert main([*argv, "epochs=1000000000"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "epochs: must be an integer from 1 to 100,000, got 1,000,000,000" in line
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
