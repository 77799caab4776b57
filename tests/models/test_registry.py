"""The registry: names, keyword checking, common keyword defaults, and no ray import."""

from __future__ import annotations

import pytest

from models import create_model, list_models, model_defaults, register_model
from models.ego_rnn import EgoRnn

NAMES = ["ego_rnn", "ego_rnn_ms", "ego_rnn_ms_sd", "ego_rnn_repflow", "flow_resnet34", "two_stream"]
COMMON = {
    "num_classes": 61,
    "mem_size": 512,
    "cam": True,
    "backbone": "resnet34",
    "weights": None,
    "input_size": 224,
    "flow_stack": 5,
    "ms_layer": "conv5",
    "ms_task": "classification",
    "repflow_iters": 10,
}


def test_list_models_names_every_architecture_of_the_report():
    assert list_models() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_common_keywords_have_the_same_defaults_everywhere(name):
    defaults = model_defaults(name)
    shared = {k: defaults[k] for k in COMMON if k in defaults}
    assert shared == {k: COMMON[k] for k in shared}
    assert {"num_classes", "backbone", "weights", "input_size"} <= set(defaults)


def test_unknown_keyword_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="'flow_stack'"):
        create_model("ego_rnn", flow_stack=5)


def test_unknown_model_is_a_value_error_listing_the_names():
    with pytest.raises(ValueError, match="ego_rnn_ms_sd"):
        create_model("ego_lstm")


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("ego_rnn", {"backbone": "resnet101"}, "backbone"),
        ("ego_rnn_ms", {"ms_layer": "conv2"}, "ms_layer"),
        ("ego_rnn_ms", {"ms_task": "segmentation"}, "ms_task"),
        ("ego_rnn_repflow", {"repflow_iters": 0}, "repflow_iters"),
        ("flow_resnet34", {"flow_stack": 0}, "flow_stack"),
    ],
)
def test_invalid_values_name_the_keyword(name, kwargs, field):
    with pytest.raises(ValueError, match=field):
        create_model(name, **{"backbone": "resnet18", **kwargs})


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_model("ego_rnn")(EgoRnn)
