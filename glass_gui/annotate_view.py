"""The Annotate view: paint defect masks with brush, eraser, polygon, rectangle and magic wand.

Masks are saved as 8-bit PNG files (0 and 255) at the image's size under the project's masks/ folder,
with atomic writes. Unsaved changes are saved when another image is shown, every `AUTOSAVE_MS`, before the
project closes and on Ctrl+S.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from PySide6.QtCore import QT_TRANSLATE_NOOP, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QColor, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from glass_engine.data import read_image
from glass_engine.errors import GlassError
from glass_engine.store import DEFAULT_DEFECT_TYPE, ImageRecord, Project
from glass_gui.canvas import MaskCanvas, Tool
from glass_gui.errors import show_error
from glass_gui.views import StudioContext, StudioView, register_view

logger = logging.getLogger(__name__)

AUTOSAVE_MS = 30_000
BRUSH_SIZE_RANGE = (1, 1000)
DEFAULT_BRUSH_SIZE = 15
DEFAULT_TOLERANCE = 20


class AnnotateView(StudioView):
    """Mask editor for one image at a time, with next/previous through a sequence from the Images view."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self.undo_stack = QUndoStack(self)
        self.canvas = MaskCanvas(self.undo_stack, self)
        self._record: ImageRecord | None = None
        self._sequence: list[int] = []
        self._pending_save = False

        self._build_tools()
        self._build_options()
        self._build_navigation()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b35900;")
        self.message.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._navigation_row)
        layout.addLayout(self._options_row)
        layout.addWidget(self.message)
        body = QHBoxLayout()
        body.addWidget(self.tool_bar)
        body.addWidget(self.canvas, 1)
        layout.addLayout(body, 1)

        self._autosave = QTimer(self)
        self._autosave.setInterval(AUTOSAVE_MS)
        self._autosave.timeout.connect(self._autosave_now)
        self._autosave.start()

        self.undo_stack.cleanChanged.connect(lambda _clean: self._update_title())
        self.canvas.zoom_changed.connect(lambda zoom: self.zoom_label.setText(f"{zoom * 100:.0f} %"))
        context.project_changed.connect(self._project_changed)
        context.category_changed.connect(lambda _category: self._category_changed())
        context.open_image_requested.connect(self.show_image)
        context.images_changed.connect(self._images_changed)
        self._set_enabled(False)

    # ------------------------------------------------------------------------------------------------------
    # Construction

    def _build_tools(self) -> None:
        self.tool_bar = QToolBar()
        self.tool_bar.setOrientation(Qt.Orientation.Vertical)
        self.tool_bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        group = QActionGroup(self)
        self.tool_actions: dict[Tool, QAction] = {}
        tools = (
            (Tool.BRUSH, self.tr("Brush"), "B", self.tr("Paint the mask (B)")),
            (Tool.ERASER, self.tr("Eraser"), "E", self.tr("Erase the mask (E)")),
            (Tool.POLYGON, self.tr("Polygon"), "P",
             self.tr("Click the corners; double-click, Enter or a click on the first corner fills (P). "
                     "Ctrl removes, Esc cancels, Backspace drops the last corner.")),
            (Tool.RECTANGLE, self.tr("Rectangle"), "R", self.tr("Drag a rectangle to fill it (R); Ctrl removes.")),
            (Tool.WAND, self.tr("Magic wand"), "W",
             self.tr("Fill the connected area of similar colour (W); Ctrl removes. Tolerance sets how similar.")),
            (Tool.PAN, self.tr("Pan"), "H", self.tr("Drag to move the view (H). Middle button or Space pans too.")),
        )
        for tool, text, shortcut, tip in tools:
            action = QAction(text, self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            action.setToolTip(tip)
            action.triggered.connect(lambda _checked=False, t=tool: self.set_tool(t))
            group.addAction(action)
            self.tool_bar.addAction(action)
            self.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions[Tool.BRUSH].setChecked(True)

        self.tool_bar.addSeparator()
        self.fill_holes_action = self._action(self.tr("Fill holes"), "Ctrl+H", self.canvas.fill_holes)
        self.clear_action = self._action(self.tr("Clear mask"), "Ctrl+Shift+Del", self.canvas.clear_mask)
        self.undo_action = self.undo_stack.createUndoAction(self, self.tr("Undo"))
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.redo_action = self.undo_stack.createRedoAction(self, self.tr("Redo"))
        self.redo_action.setShortcuts([QKeySequence.StandardKey.Redo, QKeySequence("Ctrl+Shift+Z")])
        for action in (self.fill_holes_action, self.clear_action, self.undo_action, self.redo_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.tool_bar.addAction(action)
            self.addAction(action)

    def _action(self, text: str, shortcut: str, slot) -> QAction:  # type: ignore[no-untyped-def]
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_options(self) -> None:
        self.brush_size = QSpinBox()
        self.brush_size.setRange(*BRUSH_SIZE_RANGE)
        self.brush_size.setValue(DEFAULT_BRUSH_SIZE)
        self.brush_size.setSuffix(self.tr(" px"))
        self.brush_size.setToolTip(self.tr("Brush and eraser diameter in image pixels ([ and ] change it)"))
        self.brush_size.valueChanged.connect(self.canvas.set_brush_size)
        self.canvas.set_brush_size(DEFAULT_BRUSH_SIZE)
        smaller = self._action("", "[", lambda: self.brush_size.setValue(max(1, round(self.brush_size.value() / 1.25))))
        larger = self._action("", "]", lambda: self.brush_size.setValue(round(self.brush_size.value() * 1.25) + 1))

        self.tolerance = QSpinBox()
        self.tolerance.setRange(0, 255)
        self.tolerance.setValue(DEFAULT_TOLERANCE)
        self.tolerance.setToolTip(self.tr("Magic wand: largest difference per colour channel from the clicked pixel"))
        self.tolerance.valueChanged.connect(self.canvas.set_tolerance)
        self.canvas.set_tolerance(DEFAULT_TOLERANCE)

        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setFixedWidth(110)
        self.opacity.setToolTip(self.tr("Mask opacity"))
        self.opacity.valueChanged.connect(lambda value: self.canvas.set_mask_opacity(value / 100.0))
        self.color_button = QPushButton(self.tr("Colour…"))
        self.color_button.clicked.connect(self._choose_color)
        self._color = QColor(255, 40, 40)
        self._paint_color_button()

        fit = self._action(self.tr("Fit"), "F", self.canvas.fit)
        actual = self._action(self.tr("1:1"), "1", self.canvas.actual_size)
        fit_button, actual_button = QPushButton(fit.text()), QPushButton(actual.text())
        fit_button.clicked.connect(self.canvas.fit)
        actual_button.clicked.connect(self.canvas.actual_size)
        fit_button.setToolTip(self.tr("Fit the image in the window (F)"))
        actual_button.setToolTip(self.tr("One image pixel per screen pixel (1)"))
        self.zoom_label = QLabel("100 %")
        for action in (smaller, larger, fit, actual):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.addAction(action)

        row = QHBoxLayout()
        row.addWidget(QLabel(self.tr("Size")))
        row.addWidget(self.brush_size)
        row.addWidget(QLabel(self.tr("Tolerance")))
        row.addWidget(self.tolerance)
        row.addWidget(QLabel(self.tr("Opacity")))
        row.addWidget(self.opacity)
        row.addWidget(self.color_button)
        row.addStretch(1)
        row.addWidget(fit_button)
        row.addWidget(actual_button)
        row.addWidget(self.zoom_label)
        self._options_row = row

    def _build_navigation(self) -> None:
        self.previous_action = self._action(self.tr("Previous"), "PgUp", self.previous_image)
        self.next_action = self._action(self.tr("Next"), "PgDown", self.next_image)
        self.save_action = self._action(self.tr("Save"), "Ctrl+S", self.save)
        for action in (self.previous_action, self.next_action, self.save_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.addAction(action)
        self.previous_button = QPushButton(self.tr("◀ Previous"))
        self.previous_button.setToolTip(self.tr("Previous image (Page Up)"))
        self.previous_button.clicked.connect(self.previous_image)
        self.next_button = QPushButton(self.tr("Next ▶"))
        self.next_button.setToolTip(self.tr("Next image (Page Down)"))
        self.next_button.clicked.connect(self.next_image)
        self.save_button = QPushButton(self.tr("Save"))
        self.save_button.setToolTip(self.tr("Save the mask (Ctrl+S)"))
        self.save_button.clicked.connect(self.save)
        self.title_label = QLabel()

        self.label_combo = QComboBox()
        self.label_combo.addItem(self.tr("Good"), "good")
        self.label_combo.addItem(self.tr("Defect"), "defect")
        self.type_combo = QComboBox()
        self.type_combo.setEditable(True)
        self.type_combo.setMinimumWidth(120)
        self.type_combo.setToolTip(self.tr("Defect type; type a new name and press Enter to add one"))
        self.label_combo.activated.connect(lambda _index: self._label_edited())
        self.type_combo.activated.connect(lambda _index: self._label_edited())
        self.type_combo.lineEdit().editingFinished.connect(self._label_edited)

        row = QHBoxLayout()
        row.addWidget(self.previous_button)
        row.addWidget(self.next_button)
        row.addWidget(self.title_label, 1)
        row.addWidget(QLabel(self.tr("Label")))
        row.addWidget(self.label_combo)
        row.addWidget(self.type_combo)
        row.addWidget(self.save_button)
        self._navigation_row = row

    # ------------------------------------------------------------------------------------------------------
    # Showing images

    def current_record(self) -> ImageRecord | None:
        return self._record

    def set_tool(self, tool: Tool) -> None:
        self.canvas.set_tool(tool)
        self.tool_actions[tool].setChecked(True)

    def show_image(self, image_id: int, sequence: list[int] | None = None) -> bool:
        """Save the current mask if changed, then show `image_id`; return False if the save failed."""
        if not self.save_if_dirty():
            return False
        if sequence:
            self._sequence = list(sequence)
        elif image_id not in self._sequence:
            self._sequence = [image_id]
        self._load(image_id)
        return True

    def next_image(self) -> None:
        self._step(1)

    def previous_image(self) -> None:
        self._step(-1)

    def _step(self, offset: int) -> None:
        if self._record is None or self._record.id not in self._sequence:
            return
        position = self._sequence.index(self._record.id) + offset
        if 0 <= position < len(self._sequence):
            self.show_image(self._sequence[position])

    def activated(self) -> None:
        project = self.context.project
        if self._record is None and project is not None and self.context.category:
            ids = [record.id for record in project.images(category=self.context.category)]
            if ids:
                self.show_image(ids[0], ids)
        self.canvas.setFocus()

    def _load(self, image_id: int) -> None:
        project = self.context.project
        if project is None:
            return
        try:
            record = project.image(image_id)
        except GlassError as exc:
            logger.warning("Image %d cannot be shown: %s", image_id, exc)
            self._clear(str(exc))
            return
        self._record = record
        self._pending_save = False
        self._show_labels(record)

        if record.missing or not record.path.is_file():
            self._clear(self.tr("The image file {path} is missing. Relink it in the Images view.").format(path=record.path),
                        keep_record=True)
            return
        try:
            # NOTE: read on the GUI thread. That takes well under a second for camera-sized images; very
            # large files (tens of megapixels) would pause the window while they load.
            image = read_image(record.path)
        except GlassError as exc:
            logger.warning("Cannot read image %s: %s", record.path, exc)
            self._clear(str(exc), keep_record=True)
            return
        mask, note = self._load_mask(project, record, image.shape[:2])
        self.canvas.set_image(image, mask)
        self.undo_stack.setClean()
        editable = not project.read_only
        self.canvas.set_editable(editable)
        self._set_enabled(True)
        if not editable:
            note = self.tr("The project is read-only: {reason}.").format(reason=project.read_only_reason)
        self._show_message(note)
        self._update_title()

    def _load_mask(self, project: Project, record: ImageRecord, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
        """Return the stored mask fitted to `shape` (or None) and a note for the user."""
        try:
            mask = project.read_mask(record.id)
        except GlassError as exc:
            logger.warning("Cannot read the mask of %s: %s", record.path, exc)
            return None, str(exc)
        if mask is None or mask.shape == shape:
            return mask, ""

        if self._confirm_resize(mask.shape, shape):
            resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            self._pending_save = True
            return resized > 0, self.tr("The mask was resized to the image size; save to keep the change.")
        return None, self.tr(
            "The mask of {width}x{height} px does not fit the image and was not loaded. "
            "Painting and saving replaces it."
        ).format(width=mask.shape[1], height=mask.shape[0])

    def _confirm_resize(self, mask_shape: tuple[int, int], image_shape: tuple[int, int]) -> bool:
        answer = QMessageBox.question(
            self,
            self.tr("Mask size does not match"),
            self.tr(
                "The mask is {mask_w}x{mask_h} px but the image is {image_w}x{image_h} px. "
                "Resize the mask to the image size (nearest neighbour)?"
            ).format(mask_w=mask_shape[1], mask_h=mask_shape[0], image_w=image_shape[1], image_h=image_shape[0]),
        )
        return answer == QMessageBox.StandardButton.Yes

    def _clear(self, note: str = "", keep_record: bool = False) -> None:
        if not keep_record:
            self._record = None
        self.canvas.clear_image()
        self._pending_save = False
        self._set_enabled(False)
        self._show_message(note)
        self._update_title()

    def _show_message(self, note: str) -> None:
        self.message.setText(note)
        self.message.setVisible(bool(note))

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.tool_bar, self.save_button, self.brush_size, self.tolerance, self.label_combo, self.type_combo):
            widget.setEnabled(enabled)
        self.save_action.setEnabled(enabled)
        has_record = self._record is not None
        self.label_combo.setEnabled(has_record)
        self.type_combo.setEnabled(has_record)

    def _update_title(self) -> None:
        record = self._record
        if record is None:
            self.title_label.setText(self.tr("No image"))
            return
        position = self._sequence.index(record.id) + 1 if record.id in self._sequence else 1
        dirty = "*" if self.is_dirty() else ""
        self.title_label.setText(
            self.tr("{name}{dirty} ({position} of {count}, {split})").format(
                name=record.display_name, dirty=dirty, position=position, count=max(len(self._sequence), 1), split=record.split
            )
        )
        self.previous_button.setEnabled(position > 1)
        self.next_button.setEnabled(position < len(self._sequence))

    def _show_labels(self, record: ImageRecord) -> None:
        project = self.context.project
        self.label_combo.setCurrentIndex(self.label_combo.findData(record.label))
        self.type_combo.blockSignals(True)
        self.type_combo.clear()
        types = project.defect_types(record.category) if project is not None else []
        self.type_combo.addItems(types or [DEFAULT_DEFECT_TYPE])
        self.type_combo.setCurrentText(record.defect_type or (types[0] if types else DEFAULT_DEFECT_TYPE))
        self.type_combo.setVisible(record.label == "defect")
        self.type_combo.blockSignals(False)

    # ------------------------------------------------------------------------------------------------------
    # Editing labels and saving

    def _label_edited(self) -> None:
        project = self.context.project
        record = self._record
        if project is None or record is None or project.read_only:
            return
        label = self.label_combo.currentData()
        defect_type = self.type_combo.currentText().strip() or DEFAULT_DEFECT_TYPE
        if label == record.label and (label == "good" or defect_type == record.defect_type):
            return
        try:
            project.relabel([record.id], label, defect_type if label == "defect" else None)
        except GlassError as exc:
            logger.warning("Relabel of %s failed: %s", record.path, exc)
            show_error(self, self.tr("Cannot change the label"), str(exc))
            return
        self._record = project.image(record.id)
        self.type_combo.setVisible(label == "defect")
        self._update_title()
        self.context.notify_images_changed()

    def is_dirty(self) -> bool:
        return self.canvas.has_image() and (self._pending_save or not self.undo_stack.isClean())

    def save(self) -> bool:
        """Write the current mask to the project; return True when saved (or nothing to save)."""
        project = self.context.project
        record = self._record
        if project is None or record is None or not self.canvas.has_image():
            return True
        if project.read_only:
            return True
        try:
            project.set_mask(record.id, self.canvas.mask())
        except GlassError as exc:
            logger.error("Saving the mask of %s failed: %s", record.path, exc)
            show_error(self, self.tr("Cannot save the mask"), str(exc))
            return False
        self._pending_save = False
        self.undo_stack.setClean()
        self._record = project.image(record.id)
        self._update_title()
        self.context.show_status(self.tr("Saved the mask of {name}").format(name=record.name))
        self.context.notify_images_changed()
        return True

    def save_if_dirty(self) -> bool:
        return self.save() if self.is_dirty() else True

    def save_state(self) -> None:
        self.save_if_dirty()

    def _autosave_now(self) -> None:
        if self.is_dirty():
            logger.info("Autosaving the mask of %s", self._record.path if self._record else "?")
            self.save()

    def _choose_color(self) -> None:
        color = QColorDialog.getColor(self._color, self, self.tr("Mask colour"))
        if color.isValid():
            self._color = color
            self.canvas.set_mask_color(color)
            self._paint_color_button()

    def _paint_color_button(self) -> None:
        self.color_button.setStyleSheet(f"QPushButton {{ border-left: 14px solid {self._color.name()}; }}")

    # ------------------------------------------------------------------------------------------------------
    # Context changes

    def _project_changed(self, _project: Project | None) -> None:
        self._sequence = []
        self._clear()

    def _category_changed(self) -> None:
        if self._record is not None and self._record.category != self.context.category:
            self.save_if_dirty()
            self._sequence = []
            self._clear()

    def _images_changed(self) -> None:
        project = self.context.project
        if project is None or self._record is None:
            return
        try:
            self._record = project.image(self._record.id)
        except GlassError:
            self._sequence = [i for i in self._sequence if i != self._record.id]
            self._clear(self.tr("The image was removed from the project."))
            return
        self._show_labels(self._record)
        self._update_title()


register_view("annotate", QT_TRANSLATE_NOOP("views", "Annotate"), AnnotateView, order=20)
