"""A form generated from the `GlassConfig` dataclasses: one tab per section, one typed editor per field.

The editor type follows the field: QSpinBox for whole numbers, QDoubleSpinBox for numbers, QCheckBox for
switches, QComboBox for fields with a fixed set of values, QLineEdit for lists (comma-separated) and
optional text. Tooltips are the field docstrings of glass_engine/config.py, parsed from its source, or the
entries of `FIELD_HELP` for fields without one. Validation is the engine's own `GlassConfig.from_dict`:
its error is shown under the field it names.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from glass_engine import config as engine_config
from glass_engine.config import GlassConfig, preset
from glass_engine.errors import ConfigError
from glass_engine.features import BACKBONES, DEFAULT_LAYERS

logger = logging.getLogger(__name__)

SECTIONS = ("data", "backbone", "method", "run")
SECTION_TITLES = {
    "data": QT_TRANSLATE_NOOP("config_form", "Data"),
    "backbone": QT_TRANSLATE_NOOP("config_form", "Backbone"),
    "method": QT_TRANSLATE_NOOP("config_form", "Method"),
    "run": QT_TRANSLATE_NOOP("config_form", "Run"),
}

CHOICES: dict[str, tuple[str, ...]] = {
    "data.resize_policy": engine_config.RESIZE_POLICIES,
    "backbone.name": tuple(BACKBONES),
    "method.distribution": engine_config.DISTRIBUTION_MODES,
    "method.foreground": engine_config.FOREGROUND_MODES,
    "run.precision": engine_config.PRECISIONS,
    "run.device": engine_config.DEVICES,
    "run.selection_rule": engine_config.SELECTION_RULES,
}

# Optional text fields that name a file or a folder, with the kind of dialog their browse button opens.
PATH_FIELDS: dict[str, str] = {
    "backbone.weights": "file",
    "method.textures": "folder",
    "method.distribution_table": "file",
}

# Meaning and unit of the fields that have no docstring in glass_engine/config.py.
FIELD_HELP: dict[str, str] = {
    "data.batch_size": "Images per training and evaluation batch.",
    "backbone.name": "Pretrained torchvision network whose frozen features GLASS uses.",
    "backbone.layers": "Backbone modules whose outputs are embedded, comma-separated (for example layer2, layer3).",
    "backbone.pretrain_embed_dimension": "Length of each layer's pooled 3x3 neighbourhood vector.",
    "backbone.target_embed_dimension": "Length of the final patch embedding after the layers are aggregated.",
    "backbone.patchsize": "Side in feature cells of the neighbourhood that each patch embedding covers (odd).",
    "method.meta_epochs": "Number of training epochs.",
    "method.dsc_layers": "Number of linear layers of the discriminator.",
    "method.dsc_hidden": "Width (units) of the discriminator's hidden layers.",
    "method.dsc_margin": "Discriminator output above which a feature counts as anomalous in p_true and p_fake.",
    "method.pre_proj": "Number of linear projection layers before the discriminator; 0 disables the projection.",
    "method.mining": "Official setting kept for the record; hard-sample mining is controlled by p.",
    "method.lr": "Learning rate of the projection; the discriminator uses twice this value.",
    "method.step_size": "Length of each gradient-ascent move of GAS in feature space.",
    "method.beta_mean": "Mean of the texture blending weight beta of LAS (clipped to 0.2 .. 0.8).",
    "method.beta_std": "Standard deviation of the texture blending weight beta of LAS.",
    "method.rand_aug": "Change each texture with 3 random augmentations before blending it in.",
    "method.perlin_min_scale": "Smallest Perlin noise scale of LAS masks, as a power of 2.",
    "method.perlin_max_scale": "Largest Perlin noise scale of LAS masks, as a power of 2 (exclusive).",
    "run.seed": "Seed of every random generator of the run.",
    "run.device": "Where the network runs: auto (CUDA when available), cpu or cuda.",
    "run.cache_features": "Compute the embeddings of the clean training and test images once and keep them.",
    "run.save_maps": "Write the anomaly maps of the test images (maps.npy) for the Results view.",
}

# Decimals shown for floating-point fields; 3 unless listed.
FLOAT_DECIMALS: dict[str, int] = {
    "method.lr": 6,
    "method.step_size": 5,
    "method.noise": 4,
}
DEFAULT_DECIMALS = 3
FLOAT_MAXIMUM = 1000.0
INT_MAXIMUM = 2_147_483_647
_ERROR_STYLE = "color: #c62828;"


@dataclass(frozen=True)
class FieldSpec:
    """One configuration field: dotted key, kind of editor, and tooltip text."""

    key: str
    kind: str
    """int, float, bool, choice, list, text or optional_text."""
    help: str

    @property
    def section(self) -> str:
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        return self.key.partition(".")[2]


@lru_cache(maxsize=1)
def field_docs() -> dict[str, str]:
    """Return the docstring of every documented config field by dotted key, read from config.py's source.

    A dataclass field's docstring is the string literal on the line after the annotated assignment; Python
    keeps no such attribute at run time, so the class source is parsed.
    """
    docs: dict[str, str] = {}
    section_classes = {field.name: field.default_factory for field in dataclasses.fields(GlassConfig)}
    for section, section_class in section_classes.items():
        tree = ast.parse(textwrap.dedent(inspect.getsource(section_class)))
        body = tree.body[0].body
        for statement, following in zip(body, body[1:]):
            if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
                continue
            if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
                if isinstance(following.value.value, str):
                    docs[f"{section}.{statement.target.id}"] = inspect.cleandoc(following.value.value)
    return docs


def field_specs() -> list[FieldSpec]:
    """Return every field of GlassConfig in declaration order, with its editor kind and help text."""
    defaults = GlassConfig()
    docs = field_docs()
    specs: list[FieldSpec] = []
    for section in SECTIONS:
        section_value = getattr(defaults, section)
        for field in dataclasses.fields(section_value):
            key = f"{section}.{field.name}"
            specs.append(FieldSpec(key, _editor_kind(key, field, getattr(section_value, field.name)),
                                   docs.get(key) or FIELD_HELP.get(key, "")))
    return specs


def _editor_kind(key: str, field: dataclasses.Field, default: Any) -> str:
    if key in CHOICES:
        return "choice"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, list):
        return "list"
    return "optional_text" if "None" in str(field.type) else "text"


def field_label(spec: FieldSpec) -> str:
    """Return the row label: the field name in words, for example `Image size` for image_size."""
    words = spec.name.replace("_", " ")
    return words[0].upper() + words[1:]


def error_field(message: str, keys: list[str]) -> str | None:
    """Return the dotted key that an engine ConfigError message names first, or None when it names none."""
    found: list[tuple[int, str]] = []
    for key in keys:
        match = re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)
        if match:
            found.append((match.start(), key))
    return min(found)[1] if found else None


class _FieldEditor(QWidget):
    """The editor of one field and the label under it that shows the field's validation error."""

    edited = Signal()

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.editor = self._make_editor()
        tooltip = f"{spec.key}\n\n{spec.help}" if spec.help else spec.key
        self.editor.setToolTip(tooltip)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(_ERROR_STYLE)
        self.error_label.hide()

        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.editor, 1)
        if spec.key in PATH_FIELDS:
            browse = QToolButton()
            browse.setText("…")
            browse.setToolTip(QCoreApplication.translate("config_form", "Choose…"))
            browse.clicked.connect(self._browse)
            row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        layout.addLayout(row)
        layout.addWidget(self.error_label)

    def _make_editor(self) -> QWidget:
        kind, key = self.spec.kind, self.spec.key
        if kind == "int":
            editor = QSpinBox()
            editor.setRange(0, INT_MAXIMUM)
            editor.valueChanged.connect(lambda _value: self.edited.emit())
        elif kind == "float":
            editor = QDoubleSpinBox()
            decimals = FLOAT_DECIMALS.get(key, DEFAULT_DECIMALS)
            editor.setDecimals(decimals)
            editor.setRange(0.0, FLOAT_MAXIMUM)
            editor.setSingleStep(10.0 ** -(decimals - 1) if decimals > 1 else 0.1)
            editor.valueChanged.connect(lambda _value: self.edited.emit())
        elif kind == "bool":
            editor = QCheckBox()
            editor.toggled.connect(lambda _checked: self.edited.emit())
        elif kind == "choice":
            editor = QComboBox()
            for choice in CHOICES[key]:
                editor.addItem(choice, choice)
            editor.currentIndexChanged.connect(lambda _index: self.edited.emit())
        else:
            editor = QLineEdit()
            if kind == "list":
                editor.setPlaceholderText(QCoreApplication.translate("config_form", "comma-separated names"))
            elif key == "method.textures":
                editor.setPlaceholderText(QCoreApplication.translate("config_form", "built-in textures"))
            elif key == "backbone.weights":
                editor.setPlaceholderText(QCoreApplication.translate("config_form", "imported or torchvision weights"))
            elif kind == "optional_text":
                editor.setPlaceholderText(QCoreApplication.translate("config_form", "none"))
            editor.textChanged.connect(lambda _text: self.edited.emit())
        return editor

    def value(self) -> Any:
        kind, editor = self.spec.kind, self.editor
        if kind in ("int", "float"):
            return editor.value()
        if kind == "bool":
            return editor.isChecked()
        if kind == "choice":
            return editor.currentData()
        text = editor.text().strip()
        if kind == "list":
            return [part.strip() for part in text.split(",") if part.strip()]
        if kind == "optional_text":
            return text or None
        return text

    def set_value(self, value: Any) -> None:
        kind, editor = self.spec.kind, self.editor
        if kind in ("int", "float"):
            editor.setValue(value)
        elif kind == "bool":
            editor.setChecked(bool(value))
        elif kind == "choice":
            position = editor.findData(value)
            if position < 0:
                # A value this GUI does not list (from a newer config file) stays selectable.
                editor.addItem(str(value), value)
                position = editor.count() - 1
            editor.setCurrentIndex(position)
        elif kind == "list":
            editor.setText(", ".join(value))
        else:
            editor.setText("" if value is None else str(value))

    def set_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))

    def _browse(self) -> None:
        title = QCoreApplication.translate("config_form", "Choose {key}").format(key=self.spec.key)
        current = self.editor.text().strip()
        if PATH_FIELDS[self.spec.key] == "folder":
            path = QFileDialog.getExistingDirectory(self, title, current)
        else:
            path, _filter = QFileDialog.getOpenFileName(self, title, current)
        if path:
            self.editor.setText(path)


class ConfigForm(QWidget):
    """Edits a GlassConfig. Signals: changed() after every edit, validity_changed(bool)."""

    changed = Signal()
    validity_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._editors: dict[str, _FieldEditor] = {}
        self._loading = False
        self._valid = True
        self._error = ""

        self.preset_combo = QComboBox()
        self.preset_combo.addItem(self.tr("Choose a preset…"), "")
        for name in engine_config.PRESETS:
            self.preset_combo.addItem(name, name)
        self.preset_combo.setToolTip(self.tr(
            "official: the settings of the official GLASS MVTec AD script (WideResNet-50, 640 epochs).\n"
            "fast: fewer epochs and samples, for a CPU.\nmobilenet: MobileNetV2 backbone, otherwise as fast."))
        self.preset_combo.activated.connect(self._preset_chosen)
        self.error_summary = QLabel()
        self.error_summary.setWordWrap(True)
        self.error_summary.setStyleSheet(_ERROR_STYLE)
        self.error_summary.hide()

        self.tabs = QTabWidget()
        specs = field_specs()
        for section in SECTIONS:
            self.tabs.addTab(self._section_page([spec for spec in specs if spec.section == section]),
                             QCoreApplication.translate("config_form", SECTION_TITLES[section]))

        header = QHBoxLayout()
        header.addWidget(QLabel(self.tr("Preset:")))
        header.addWidget(self.preset_combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.error_summary)

        self._editors["backbone.name"].editor.currentIndexChanged.connect(self._backbone_changed)
        self.set_config(GlassConfig())

    def _section_page(self, specs: list[FieldSpec]) -> QScrollArea:
        page = QWidget()
        form = QFormLayout(page)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for spec in specs:
            editor = _FieldEditor(spec)
            editor.edited.connect(self._edited)
            self._editors[spec.key] = editor
            label = QLabel(field_label(spec))
            label.setToolTip(editor.editor.toolTip())
            form.addRow(label, editor)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(page)
        return scroll

    # ------------------------------------------------------------------------------------------------------
    # Values

    def keys(self) -> list[str]:
        return list(self._editors)

    def editor(self, key: str) -> QWidget:
        """Return the input widget of a dotted key (QSpinBox, QComboBox, …), for tests and focus."""
        return self._editors[key].editor

    def set_config(self, config: GlassConfig) -> None:
        """Show every value of `config`; this never emits `changed` per field, only once at the end."""
        payload = config.to_dict()
        self._loading = True
        try:
            for key, editor in self._editors.items():
                section, _, name = key.partition(".")
                editor.set_value(payload[section][name])
        finally:
            self._loading = False
        self._edited()

    def payload(self) -> dict[str, dict[str, Any]]:
        """Return the raw editor values as a config mapping, before validation."""
        payload: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for key, editor in self._editors.items():
            section, _, name = key.partition(".")
            payload[section][name] = editor.value()
        return payload

    def config(self) -> GlassConfig:
        """Return the validated configuration; raises ConfigError with the engine's message when invalid."""
        return GlassConfig.from_dict(self.payload())

    def set_value(self, key: str, value: Any) -> None:
        self._editors[key].set_value(value)

    def value(self, key: str) -> Any:
        return self._editors[key].value()

    def is_valid(self) -> bool:
        return self._valid

    def error(self) -> str:
        """Return the current validation error, or "" when the form is valid."""
        return self._error

    def field_error(self, key: str) -> str:
        label = self._editors[key].error_label
        return "" if label.isHidden() else label.text()

    # ------------------------------------------------------------------------------------------------------
    # Reactions

    def _edited(self) -> None:
        if self._loading:
            return
        try:
            self.config()
        except ConfigError as exc:
            self._show_error(str(exc))
        else:
            self._show_error("")
        self.changed.emit()

    def _show_error(self, message: str) -> None:
        for editor in self._editors.values():
            editor.set_error("")
        key = error_field(message, self.keys()) if message else None
        error_tab = SECTIONS.index(key.partition(".")[0]) if key is not None else -1
        for index in range(self.tabs.count()):
            color = Qt.GlobalColor.red if index == error_tab else self.palette().windowText().color()
            self.tabs.tabBar().setTabTextColor(index, color)
        if key is not None:
            self._editors[key].set_error(message)
        self.error_summary.setText(message)
        self.error_summary.setVisible(bool(message))
        self._error = message
        valid = not message
        if valid != self._valid:
            self._valid = valid
            self.validity_changed.emit(valid)

    def _preset_chosen(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if not name:
            return
        self.apply_preset(name)
        self.preset_combo.setCurrentIndex(0)

    def apply_preset(self, name: str) -> None:
        """Replace every value with the named preset's, keeping the device chosen here."""
        device = self.value("run.device")
        self.set_config(preset(name))
        self.set_value("run.device", device)
        logger.info("Applied preset %s to the training form", name)

    def _backbone_changed(self, _index: int) -> None:
        if self._loading:
            return
        name = self.value("backbone.name")
        layers = DEFAULT_LAYERS.get(name)
        if layers:
            self.set_value("backbone.layers", layers)
