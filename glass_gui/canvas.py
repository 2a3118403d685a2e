"""The mask painting canvas: an image with an editable mask overlay in a zoomable, pannable QGraphicsView."""

from __future__ import annotations

import enum
import logging

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QResizeEvent,
    QUndoCommand,
    QUndoStack,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QStyleOptionGraphicsItem,
    QWidget,
)

from glass_gui import mask_ops
from glass_gui.mask_ops import Region

logger = logging.getLogger(__name__)

MIN_ZOOM = 0.02
MAX_ZOOM = 64.0
WHEEL_STEP = 1.25
POLYGON_CLOSE_DISTANCE_PX = 8.0
"""A click this close (in screen pixels) to the first vertex closes the polygon."""


class Tool(enum.Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    POLYGON = "polygon"
    RECTANGLE = "rectangle"
    WAND = "wand"
    PAN = "pan"


class MaskOverlayItem(QGraphicsItem):
    """Draws the mask in one colour from an RGBA buffer that edits update in place, region by region."""

    def __init__(self) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._rgba = np.zeros((1, 1, 4), np.uint8)
        self._image = QImage()
        self._color = QColor(255, 40, 40)

    def set_mask(self, mask: np.ndarray, color: QColor) -> None:
        self.prepareGeometryChange()
        self._color = QColor(color)
        height, width = mask.shape
        self._rgba = np.zeros((height, width, 4), np.uint8)
        # The QImage shares the numpy buffer, so later in-place writes show without a copy.
        self._image = QImage(self._rgba.data, width, height, width * 4, QImage.Format.Format_RGBA8888)
        self.update_region(mask, (0, height, 0, width))

    def update_region(self, mask: np.ndarray, region: Region) -> None:
        y0, y1, x0, x1 = region
        patch = mask[y0:y1, x0:x1] > 0
        rgba = np.array([self._color.red(), self._color.green(), self._color.blue(), 255], np.uint8)
        self._rgba[y0:y1, x0:x1] = np.where(patch[..., None], rgba, np.uint8(0))
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self._rgba.shape[1], self._rgba.shape[0])

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        exposed = option.exposedRect.intersected(self.boundingRect()).toAlignedRect()
        if exposed.isEmpty():
            return
        painter.drawImage(exposed, self._image, exposed)


class MaskEditCommand(QUndoCommand):
    """One undoable edit: the region's pixels before and after."""

    def __init__(self, canvas: "MaskCanvas", region: Region, before: np.ndarray, after: np.ndarray, text: str):
        super().__init__(text)
        self._canvas = canvas
        self._region = region
        self._before = before
        self._after = after

    def redo(self) -> None:
        self._canvas.write_region(self._region, self._after)

    def undo(self) -> None:
        self._canvas.write_region(self._region, self._before)


class MaskCanvas(QGraphicsView):
    """Shows an RGB image with its mask and edits the mask with brush, eraser, polygon, rectangle and wand.

    Left button paints with the current tool; Ctrl with polygon, rectangle or wand removes from the mask
    instead of adding. Middle button, the pan tool, or Space with the left button pans; the wheel zooms at
    the cursor. Every edit is one command on `undo_stack`.
    """

    mask_edited = Signal()
    zoom_changed = Signal(float)
    cursor_moved = Signal(int, int)

    def __init__(self, undo_stack: QUndoStack | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.undo_stack = undo_stack or QUndoStack(self)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QBrush(QColor(48, 48, 48)))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        self._image_item = QGraphicsPixmapItem()
        self._overlay = MaskOverlayItem()
        self._overlay.setOpacity(0.5)
        self._preview = QGraphicsPathItem()
        self._preview.setPen(_cosmetic_pen(QColor(255, 230, 0)))
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(_cosmetic_pen(QColor(255, 255, 255)))
        for z, item in enumerate((self._image_item, self._overlay, self._preview, self._cursor)):
            item.setZValue(z)
            self.scene().addItem(item)
        self._cursor.setVisible(False)

        self._image: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._color = QColor(255, 40, 40)
        self._tool = Tool.BRUSH
        self._brush_size = 15
        self._tolerance = 20
        self._editable = True
        self._fit_mode = True

        self._stroke_before: np.ndarray | None = None
        self._stroke_last: tuple[float, float] | None = None
        self._rect_start: tuple[float, float] | None = None
        self._polygon: list[tuple[float, float]] = []
        self._pan_last: QPointF | None = None
        self._space_down = False

    # ------------------------------------------------------------------------------------------------------
    # Content

    def set_image(self, image: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Show an RGB uint8 image with a mask of the same height and width (empty when None)."""
        height, width = image.shape[:2]
        self._image = np.ascontiguousarray(image)
        qimage = QImage(self._image.data, width, height, width * 3, QImage.Format.Format_RGB888).copy()
        self._image_item.setPixmap(QPixmap.fromImage(qimage))
        self._mask = np.zeros((height, width), np.uint8) if mask is None else (np.asarray(mask) > 0).astype(np.uint8)
        self._overlay.set_mask(self._mask, self._color)
        self._overlay.setVisible(True)
        self._cancel_shapes()
        self.undo_stack.clear()
        self.scene().setSceneRect(QRectF(0, 0, width, height))
        self.fit()

    def clear_image(self) -> None:
        self._image = None
        self._mask = None
        self._image_item.setPixmap(QPixmap())
        self._overlay.set_mask(np.zeros((1, 1), np.uint8), self._color)
        self._overlay.setVisible(False)
        self._cancel_shapes()
        self.undo_stack.clear()

    def has_image(self) -> bool:
        return self._image is not None

    def mask(self) -> np.ndarray | None:
        """Return a copy of the mask as bool, or None without an image."""
        return None if self._mask is None else self._mask.astype(bool)

    def image_shape(self) -> tuple[int, int] | None:
        return None if self._image is None else self._image.shape[:2]

    def write_region(self, region: Region, patch: np.ndarray) -> None:
        if self._mask is None:
            return
        y0, y1, x0, x1 = region
        self._mask[y0:y1, x0:x1] = patch
        self._overlay.update_region(self._mask, region)
        self.mask_edited.emit()

    def replace_mask(self, new_mask: np.ndarray, text: str) -> bool:
        """Push one undoable edit that turns the mask into `new_mask`; return False when nothing changes."""
        if self._mask is None or not self._editable:
            return False
        new_mask = (np.asarray(new_mask) > 0).astype(np.uint8)
        region = mask_ops.changed_region(self._mask, new_mask)
        if region is None:
            return False
        y0, y1, x0, x1 = region
        before = self._mask[y0:y1, x0:x1].copy()
        after = new_mask[y0:y1, x0:x1].copy()
        self.undo_stack.push(MaskEditCommand(self, region, before, after, text))
        return True

    def fill_holes(self) -> bool:
        if self._mask is None:
            return False
        return self.replace_mask(mask_ops.fill_holes(self._mask), self.tr("Fill holes"))

    def clear_mask(self) -> bool:
        if self._mask is None:
            return False
        return self.replace_mask(np.zeros_like(self._mask), self.tr("Clear mask"))

    # ------------------------------------------------------------------------------------------------------
    # Settings

    def set_tool(self, tool: Tool) -> None:
        self._cancel_shapes()
        self._tool = tool
        self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if tool is Tool.PAN else Qt.CursorShape.CrossCursor)
        self._cursor.setVisible(False)

    def tool(self) -> Tool:
        return self._tool

    def set_brush_size(self, diameter: int) -> None:
        """Set the brush and eraser diameter in image pixels."""
        self._brush_size = max(1, int(diameter))

    def brush_size(self) -> int:
        return self._brush_size

    def set_tolerance(self, tolerance: int) -> None:
        """Set the magic wand's maximum difference per channel from the clicked pixel (0 to 255)."""
        self._tolerance = int(np.clip(tolerance, 0, 255))

    def set_mask_color(self, color: QColor) -> None:
        self._color = QColor(color)
        if self._mask is not None:
            self._overlay.set_mask(self._mask, self._color)

    def set_mask_opacity(self, opacity: float) -> None:
        self._overlay.setOpacity(float(np.clip(opacity, 0.0, 1.0)))

    def set_editable(self, editable: bool) -> None:
        self._editable = editable
        self._cancel_shapes()

    # ------------------------------------------------------------------------------------------------------
    # Zoom

    def zoom(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self._fit_mode = True
        if self._image is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoom_updated()

    def actual_size(self) -> None:
        self._fit_mode = False
        self.resetTransform()
        self._zoom_updated()

    def zoom_by(self, factor: float) -> None:
        self._fit_mode = False
        current = self.zoom()
        target = float(np.clip(current * factor, MIN_ZOOM, MAX_ZOOM))
        self.scale(target / current, target / current)
        self._zoom_updated()

    def _zoom_updated(self) -> None:
        # Show single pixels sharply when zoomed in, smooth when zoomed out.
        mode = Qt.TransformationMode.FastTransformation if self.zoom() >= 1.0 else Qt.TransformationMode.SmoothTransformation
        self._image_item.setTransformationMode(mode)
        self.zoom_changed.emit(self.zoom())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(WHEEL_STEP**steps)
        event.accept()

    # ------------------------------------------------------------------------------------------------------
    # Mouse and keyboard

    def scene_point(self, view_pos: QPointF) -> tuple[float, float]:
        """Map a viewport position to image coordinates, keeping the sub-pixel part."""
        inverse, _ = self.viewportTransform().inverted()
        point = inverse.map(QPointF(view_pos))
        return point.x(), point.y()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        panning = button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and (self._tool is Tool.PAN or self._space_down)
        )
        if panning:
            self._pan_last = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button != Qt.MouseButton.LeftButton or self._mask is None or not self._editable:
            super().mousePressEvent(event)
            return

        point = self.scene_point(event.position())
        subtract = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if self._tool in (Tool.BRUSH, Tool.ERASER):
            self._stroke_before = self._mask.copy()
            self._stroke_last = point
            self._stamp(point, point)
        elif self._tool is Tool.RECTANGLE:
            self._rect_start = point
        elif self._tool is Tool.POLYGON:
            self._add_polygon_vertex(point, event.position(), subtract)
        elif self._tool is Tool.WAND:
            self._apply_wand(point, subtract)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = self.scene_point(event.position())
        self._update_cursor(point)
        self.cursor_moved.emit(int(np.floor(point[0])), int(np.floor(point[1])))

        if self._pan_last is not None:
            delta = event.position() - self._pan_last
            self._pan_last = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
        elif self._stroke_last is not None:
            self._stamp(self._stroke_last, point)
            self._stroke_last = point
        elif self._rect_start is not None:
            self._show_rectangle_preview(self._rect_start, point)
        elif self._polygon:
            self._show_polygon_preview(point)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_last is not None and event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.LeftButton):
            self._pan_last = None
            self.set_tool(self._tool)
        elif event.button() == Qt.MouseButton.LeftButton and self._stroke_before is not None:
            self._finish_stroke()
        elif event.button() == Qt.MouseButton.LeftButton and self._rect_start is not None:
            subtract = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
            self._finish_rectangle(self.scene_point(event.position()), subtract)
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self._tool is Tool.POLYGON and len(self._polygon) >= 3:
            self._close_polygon(bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier))
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and len(self._polygon) >= 3:
            self._close_polygon(bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier))
        elif key == Qt.Key.Key_Escape and (self._polygon or self._rect_start is not None):
            self._cancel_shapes()
        elif key == Qt.Key.Key_Backspace and self._polygon:
            self._polygon.pop()
            self._show_polygon_preview(None)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.set_tool(self._tool)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event: object) -> None:
        self._cursor.setVisible(False)
        super().leaveEvent(event)

    # ------------------------------------------------------------------------------------------------------
    # Tool actions

    def _stamp(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        value = 0 if self._tool is Tool.ERASER else 1
        region = mask_ops.stamp_segment(self._mask, start, end, self._brush_size / 2.0, value)
        if region is not None:
            self._overlay.update_region(self._mask, region)

    def _finish_stroke(self) -> None:
        before, self._stroke_before = self._stroke_before, None
        self._stroke_last = None
        region = mask_ops.changed_region(before, self._mask)
        if region is None:
            return
        y0, y1, x0, x1 = region
        text = self.tr("Erase") if self._tool is Tool.ERASER else self.tr("Brush stroke")
        command = MaskEditCommand(self, region, before[y0:y1, x0:x1].copy(), self._mask[y0:y1, x0:x1].copy(), text)
        self.undo_stack.push(command)

    def _finish_rectangle(self, end: tuple[float, float], subtract: bool) -> None:
        start, self._rect_start = self._rect_start, None
        self._preview.setPath(QPainterPath())
        new_mask = self._mask.copy()
        mask_ops.fill_rectangle(new_mask, start, end, 0 if subtract else 1)
        self.replace_mask(new_mask, self.tr("Rectangle"))

    def _add_polygon_vertex(self, point: tuple[float, float], view_pos: QPointF, subtract: bool) -> None:
        if len(self._polygon) >= 3:
            first = self.mapFromScene(QPointF(*self._polygon[0]))
            if (QPointF(first) - view_pos).manhattanLength() <= POLYGON_CLOSE_DISTANCE_PX:
                self._close_polygon(subtract)
                return
        self._polygon.append(point)
        self._show_polygon_preview(point)

    def _close_polygon(self, subtract: bool) -> None:
        points, self._polygon = self._polygon, []
        self._preview.setPath(QPainterPath())
        new_mask = self._mask.copy()
        mask_ops.fill_polygon(new_mask, points, 0 if subtract else 1)
        self.replace_mask(new_mask, self.tr("Polygon"))

    def _apply_wand(self, point: tuple[float, float], subtract: bool) -> None:
        seed = (int(np.floor(point[0])), int(np.floor(point[1])))
        region = mask_ops.magic_wand(self._image, seed, self._tolerance)
        if not region.any():
            return
        new_mask = self._mask.copy()
        new_mask[region] = 0 if subtract else 1
        self.replace_mask(new_mask, self.tr("Magic wand"))

    def _cancel_shapes(self) -> None:
        self._polygon = []
        self._rect_start = None
        self._preview.setPath(QPainterPath())

    def _show_rectangle_preview(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        path = QPainterPath()
        path.addRect(QRectF(QPointF(*start), QPointF(*end)).normalized())
        self._preview.setPath(path)

    def _show_polygon_preview(self, cursor: tuple[float, float] | None) -> None:
        path = QPainterPath()
        if self._polygon:
            path.moveTo(QPointF(*self._polygon[0]))
            for vertex in self._polygon[1:]:
                path.lineTo(QPointF(*vertex))
            if cursor is not None:
                path.lineTo(QPointF(*cursor))
        self._preview.setPath(path)

    def _update_cursor(self, point: tuple[float, float]) -> None:
        show = self._tool in (Tool.BRUSH, Tool.ERASER) and self._mask is not None and self._pan_last is None
        self._cursor.setVisible(show)
        if show:
            radius = self._brush_size / 2.0
            self._cursor.setRect(QRectF(point[0] - radius, point[1] - radius, 2 * radius, 2 * radius))


def _cosmetic_pen(color: QColor) -> QPen:
    pen = QPen(color)
    pen.setCosmetic(True)
    pen.setWidth(1)
    return pen
