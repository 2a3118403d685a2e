"""Tests of the configuration form: editors per field type, round trips, validation messages and presets."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from glass_engine.config import PRESETS, RESIZE_POLICIES, SELECTION_RULES, GlassConfig, preset
from glass_engine.features import BACKBONES, DEFAULT_LAYERS
from glass_gui.config_form import ConfigForm, error_field, field_docs, field_specs


@pytest.fixture()
def form(qtbot) -> ConfigForm:  # type: ignore[no-untyped-def]
    widget = ConfigForm()
    qtbot.addWidget(widget)
    return widget


def all_keys() -> list[str]:
    config = GlassConfig()
    return [f"{section.name}.{field.name}" for section in dataclasses.fields(config)
            for field in dataclasses.fields(getattr(config, section.name))]


def changed_config() -> GlassConfig:
    """A valid configuration in which many values differ from every preset."""
    return preset("mobilenet").updated({
        "data.image_size": 160,
        "data.resize_policy": "letterbox",
        "data.crop_ratio": 0.875,
        "data.batch_size": 6,
        "data.validation_fraction": 0.25,
        "backbone.layers": ["features.3", "features.6", "features.13"],
        "backbone.weights": "/data/weights/mobilenet v2.pth",
        "method.meta_epochs": 7,
        "method.noise": 0.0125,
        "method.lr": 0.000123,
        "method.step_size": 0.00075,
        "method.distribution": "hypersphere",
        "method.textures": "/data/dtd/images",
        "method.foreground": "binarize",
        "method.rand_aug": False,
        "method.perlin_max_scale": 5,
        "run.seed": 42,
        "run.device": "cpu",
        "run.precision": "bfloat16",
        "run.selection_rule": "validation",
        "run.cache_features": False,
        "run.save_maps": False,
    })


def test_every_field_has_editor_and_help(form):
    keys = all_keys()
    assert form.keys() == keys
    specs = {spec.key: spec for spec in field_specs()}
    for key in keys:
        assert specs[key].help, f"{key} has no tooltip text"
        assert key in form.editor(key).toolTip()


def test_docstrings_parsed_from_source():
    docs = field_docs()
    assert docs["data.image_size"] == "Side in pixels of the square network input."
    assert docs["method.step"] == "Gradient-ascent steps of GAS per batch."
    assert "data.batch_size" not in docs


def test_editor_types(form):
    assert isinstance(form.editor("data.image_size"), QSpinBox)
    assert isinstance(form.editor("method.lr"), QDoubleSpinBox)
    assert form.editor("method.lr").decimals() >= 5
    assert isinstance(form.editor("run.cache_features"), QCheckBox)
    assert isinstance(form.editor("backbone.layers"), QLineEdit)
    assert isinstance(form.editor("method.textures"), QLineEdit)
    combos = {"data.resize_policy": RESIZE_POLICIES, "run.selection_rule": SELECTION_RULES,
              "backbone.name": tuple(BACKBONES)}
    for key, choices in combos.items():
        combo = form.editor(key)
        assert isinstance(combo, QComboBox)
        assert tuple(combo.itemData(i) for i in range(combo.count())) == choices


@pytest.mark.parametrize("config", [GlassConfig(), *(preset(name) for name in PRESETS), changed_config()],
                         ids=["default", *PRESETS, "changed"])
def test_round_trip(form, config):
    form.set_config(config)
    assert form.is_valid()
    assert form.config().to_dict() == config.to_dict()

    second = ConfigForm()
    second.set_config(form.config())
    assert second.payload() == form.payload()


def test_empty_optional_text_is_none(form):
    form.set_config(changed_config())
    form.set_value("backbone.weights", "  ")
    form.set_value("method.textures", "")
    config = form.config()
    assert config.backbone.weights is None
    assert config.method.textures is None


def test_invalid_value_shown_at_field(form):
    form.set_value("backbone.patchsize", 4)
    assert not form.is_valid()
    assert "odd" in form.field_error("backbone.patchsize")
    assert form.field_error("data.image_size") == ""
    assert form.tabs.tabBar().tabTextColor(1).name() == "#ff0000"

    form.set_value("backbone.patchsize", 5)
    assert form.is_valid()
    assert form.field_error("backbone.patchsize") == ""
    assert form.error() == ""


def test_range_error_names_field(form):
    form.set_value("method.perlin_min_scale", 4)
    form.set_value("method.perlin_max_scale", 3)
    assert "between 5 and 9" in form.field_error("method.perlin_max_scale")
    assert form.field_error("method.perlin_min_scale") == ""


def test_empty_layers_rejected(form):
    form.set_value("backbone.layers", " , ")
    assert "backbone.layers" in form.field_error("backbone.layers")


def test_validity_signal(form, qtbot):
    with qtbot.waitSignal(form.validity_changed) as blocker:
        form.set_value("data.image_size", 8)
    assert blocker.args == [False]
    with qtbot.waitSignal(form.validity_changed) as blocker:
        form.set_value("data.image_size", 64)
    assert blocker.args == [True]


def test_error_field_prefers_first_key():
    keys = all_keys()
    message = "method.distribution is from_table but method.distribution_table is empty. Give the .xlsx path."
    assert error_field(message, keys) == "method.distribution"
    assert error_field("`method.distribution_table` is missing", keys) == "method.distribution_table"
    assert error_field("Something without a key", keys) is None


def test_backbone_switch_sets_default_layers(form):
    combo = form.editor("backbone.name")
    combo.setCurrentIndex(combo.findData("efficientnet_b0"))
    assert form.value("backbone.layers") == DEFAULT_LAYERS["efficientnet_b0"]
    assert form.config().backbone.layers == DEFAULT_LAYERS["efficientnet_b0"]


def test_preset_keeps_device(form):
    form.set_value("run.device", "cpu")
    form.apply_preset("mobilenet")
    expected = preset("mobilenet")
    expected.run.device = "cpu"
    assert form.config().to_dict() == expected.to_dict()
