import pytest

from tuner.config import TrainConfig, flatten_config, parse_overrides, report_defaults


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
