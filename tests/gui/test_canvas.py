"""Tests of the mask canvas and the mask operations, against masks computed independently by brute force."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from glass_gui import mask_ops
from glass_gui.canvas import MaskCanvas, Tool

HEIGHT, WIDTH = 48, 64


def disc_pixels(center: tuple[float, float], radius: float) -> np.ndarray:
    """Pixels whose centre (x + 0.5, y + 0.5) lies within `radius` of `center`, by looping over every pixel."""
    expected = np.zeros((HEIGHT, WIDTH), bool)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            if (x + 0.5 - center[0]) ** 2 + (y + 0.5 - center[1]) ** 2 <= radius**2:
                expected[y, x] = True
    return expected


def segment_pixels(a: tuple[float, float], b: tuple[float, float], radius: float) -> np.ndarray:
    """Union of discs stamped every 1/64 px along a-b: an approximation from the other side than the code's."""
    expected = np.zeros((HEIGHT, WIDTH), bool)
    length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
    for t in np.linspace(0.0, 1.0, max(2, int(length * 64) + 1)):
        expected |= disc_pixels((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])), radius)
    return expected


@pytest.fixture()
def canvas(qtbot):  # type: ignore[no-untyped-def]
    widget = MaskCanvas()
    qtbot.addWidget(widget)
    widget.resize(500, 400)
    widget.show()
    qtbot.waitExposed(widget)
    widget.set_image(np.full((HEIGHT, WIDTH, 3), 128, np.uint8))
    return widget


def view_point(canvas: MaskCanvas, x: float, y: float) -> QPoint:
    return canvas.mapFromScene(QPointF(x, y))


def scene_of(canvas: MaskCanvas, point: QPoint) -> tuple[float, float]:
    mapped = canvas.mapToScene(point)
    return mapped.x(), mapped.y()


def send_mouse(canvas: MaskCanvas, kind, point: QPoint, button, buttons) -> None:  # type: ignore[no-untyped-def]
    event = QMouseEvent(kind, QPointF(point), QPointF(canvas.viewport().mapToGlobal(point)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(canvas.viewport(), event)


def test_brush_click_sets_disc(canvas: MaskCanvas, qtbot) -> None:  # type: ignore[no-untyped-def]
    canvas.set_tool(Tool.BRUSH)
    canvas.set_brush_size(9)
    point = view_point(canvas, 30.3, 20.7)

    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)

    expected = disc_pixels(scene_of(canvas, point), 4.5)
    assert 50 < expected.sum() < 80
    assert np.array_equal(canvas.mask(), expected)


def test_brush_drag_sets_capsule(canvas: MaskCanvas) -> None:
    canvas.set_brush_size(5)
    start, end = view_point(canvas, 10.2, 10.9), view_point(canvas, 40.6, 30.1)
    left = Qt.MouseButton.LeftButton

    send_mouse(canvas, QMouseEvent.Type.MouseButtonPress, start, left, left)
    send_mouse(canvas, QMouseEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, left)
    send_mouse(canvas, QMouseEvent.Type.MouseButtonRelease, end, left, Qt.MouseButton.NoButton)

    expected = segment_pixels(scene_of(canvas, start), scene_of(canvas, end), 2.5)
    differing = canvas.mask() != expected
    # The 1/64 px sampling of the reference may miss a pixel whose centre is exactly at the radius.
    assert differing.sum() <= 2
    assert canvas.undo_stack.count() == 1


def test_undo_clears_and_redo_restores(canvas: MaskCanvas, qtbot) -> None:  # type: ignore[no-untyped-def]
    canvas.set_brush_size(7)
    point = view_point(canvas, 20.0, 20.0)
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)
    painted = canvas.mask()
    assert painted.any()

    canvas.undo_stack.undo()
    assert not canvas.mask().any()

    canvas.undo_stack.redo()
    assert np.array_equal(canvas.mask(), painted)


def test_eraser_removes_disc(canvas: MaskCanvas, qtbot) -> None:  # type: ignore[no-untyped-def]
    canvas.replace_mask(np.ones((HEIGHT, WIDTH), bool), "fill")
    canvas.set_tool(Tool.ERASER)
    canvas.set_brush_size(6)
    point = view_point(canvas, 33.0, 12.0)

    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)

    assert np.array_equal(canvas.mask(), ~disc_pixels(scene_of(canvas, point), 3.0))


def test_wand_selects_square(qtbot) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    image = np.full((HEIGHT, WIDTH, 3), 50, np.int16)
    image[10:30, 15:40] = 200
    image += rng.integers(-5, 6, image.shape).astype(np.int16)
    image = image.astype(np.uint8)
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(500, 400)
    canvas.show()
    canvas.set_image(image)
    canvas.set_tool(Tool.WAND)
    canvas.set_tolerance(15)

    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_point(canvas, 20.5, 15.5))

    expected = np.zeros((HEIGHT, WIDTH), bool)
    expected[10:30, 15:40] = True
    assert np.array_equal(canvas.mask(), expected)


def test_wand_tolerance_zero_is_single_value() -> None:
    image = np.zeros((5, 5), np.uint8)
    image[:, 2:] = 1
    region = mask_ops.magic_wand(image, (0, 0), 0)
    assert region[:, :2].all()
    assert not region[:, 2:].any()


def test_rectangle_covers_pixel_centres() -> None:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask_ops.fill_rectangle(mask, (10.6, 5.2), (3.4, 12.7), 1)
    expected = np.zeros((HEIGHT, WIDTH), bool)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            expected[y, x] = 3.4 <= x + 0.5 <= 10.6 and 5.2 <= y + 0.5 <= 12.7
    assert np.array_equal(mask.astype(bool), expected)


def _inside_polygon(px: float, py: float, points: list[tuple[float, float]]) -> bool:
    inside = False
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        if (y0 > py) != (y1 > py) and px < x0 + (py - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _distance_to_edges(px: float, py: float, points: list[tuple[float, float]]) -> float:
    best = np.inf
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        best = min(best, float(np.hypot(px - x0 - t * dx, py - y0 - t * dy)))
    return best


def test_polygon_matches_ray_casting() -> None:
    points = [(5.3, 4.1), (50.2, 10.7), (30.8, 40.4), (12.1, 30.9)]
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask_ops.fill_polygon(mask, points, 1)
    for y in range(HEIGHT):
        for x in range(WIDTH):
            centre = (x + 0.5, y + 0.5)
            # Rasterisers differ only for pixels whose centre is within a pixel of an edge.
            if _distance_to_edges(*centre, points) > 1.0:
                assert bool(mask[y, x]) == _inside_polygon(*centre, points), (x, y)
    assert mask[20, 25] == 1


def test_polygon_tool_fills_on_double_click(canvas: MaskCanvas, qtbot) -> None:  # type: ignore[no-untyped-def]
    canvas.set_tool(Tool.POLYGON)
    corners = [view_point(canvas, x, y) for x, y in ((8, 8), (40, 8), (40, 30), (8, 30))]
    for corner in corners:
        qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=corner)
    qtbot.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=corners[-1])

    mask = canvas.mask()
    assert mask[15, 20]
    assert mask[9:29, 9:39].all()
    assert not mask[32:, :].any()
    assert canvas.undo_stack.count() == 1


def test_fill_holes_and_clear(canvas: MaskCanvas) -> None:
    ring = np.zeros((HEIGHT, WIDTH), bool)
    ring[10:30, 10:30] = True
    ring[15:25, 15:25] = False
    canvas.replace_mask(ring, "ring")

    assert canvas.fill_holes()
    filled = np.zeros((HEIGHT, WIDTH), bool)
    filled[10:30, 10:30] = True
    assert np.array_equal(canvas.mask(), filled)

    assert canvas.clear_mask()
    assert not canvas.mask().any()
    canvas.undo_stack.undo()
    assert np.array_equal(canvas.mask(), filled)


def test_zoom_fit_and_actual_size(canvas: MaskCanvas) -> None:
    canvas.fit()
    fitted = canvas.zoom()
    assert fitted == pytest.approx(min(canvas.viewport().width() / WIDTH, canvas.viewport().height() / HEIGHT), rel=0.05)
    canvas.actual_size()
    assert canvas.zoom() == 1.0
    canvas.zoom_by(2.0)
    assert canvas.zoom() == 2.0


def test_grayscale_16bit_image_shows(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2

    from glass_engine.data import read_image

    ramp = (np.arange(WIDTH, dtype=np.uint16)[None, :] * 1000).repeat(HEIGHT, axis=0)
    path = tmp_path / "ramp 16 bit.png"
    ok, data = cv2.imencode(".png", ramp)
    assert ok
    path.write_bytes(data.tobytes())
    canvas = MaskCanvas()
    qtbot.addWidget(canvas)
    canvas.set_image(read_image(path))
    grabbed = canvas._image_item.pixmap().toImage()
    assert (grabbed.width(), grabbed.height()) == (WIDTH, HEIGHT)
    # 16-bit values scale to 8 bits, so the ramp still rises from left to right.
    left, right = grabbed.pixelColor(1, 5).red(), grabbed.pixelColor(WIDTH - 2, 5).red()
    assert right > left + 100
