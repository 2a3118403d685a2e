"""Tests of the Annotate view: painting, saving, autosave, reopening, and masks of the wrong size."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from glass_engine.data import discover
from glass_engine.store import Project
from glass_gui.annotate_view import AnnotateView
from glass_gui.canvas import Tool
from glass_gui.views import StudioContext


def make_view(qtbot, project: Project) -> AnnotateView:  # type: ignore[no-untyped-def]
    context = StudioContext()
    view = AnnotateView(context)
    view._test_context = context  # keep the context alive as long as the view
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    qtbot.waitExposed(view)
    # Shortcuts only fire in the active window.
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    context.set_project(project)
    return view


def click_disc(view: AnnotateView, qtbot, x: float, y: float, size: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Click the brush at image point (x, y); return the disc expected from where the click lands."""
    canvas = view.canvas
    view.set_tool(Tool.BRUSH)
    view.brush_size.setValue(size)
    point = canvas.mapFromScene(QPointF(x, y))
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=point)
    centre = canvas.mapToScene(point)
    height, width = canvas.image_shape()
    ys, xs = np.mgrid[0:height, 0:width]
    return (xs + 0.5 - centre.x()) ** 2 + (ys + 0.5 - centre.y()) ** 2 <= (size / 2) ** 2


def test_paint_save_reopen(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(split="test", label="good")[0]
    view = make_view(qtbot, demo_project)
    view.show_image(record.id, [record.id])

    expected = click_disc(view, qtbot, 20.2, 30.6, 11)
    assert view.is_dirty()
    qtbot.keyClick(view.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)

    assert not view.is_dirty()
    saved = cv2.imread(str(demo_project.mask_file_for(record.id)), cv2.IMREAD_UNCHANGED)
    assert saved.dtype == np.uint8
    assert saved.shape == (64, 64)
    assert np.array_equal(saved == 255, expected)
    assert np.array_equal(saved == 0, ~expected)

    folder = demo_project.folder
    view.context.set_project(None)
    demo_project.close()
    with Project.open(folder) as reopened:
        assert np.array_equal(reopened.read_mask(record.id), expected)
        second = make_view(qtbot, reopened)
        second.show_image(record.id)
        assert np.array_equal(second.canvas.mask(), expected)
        second.context.set_project(None)


def test_undo_then_save_leaves_no_mask(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(split="train")[0]
    view = make_view(qtbot, demo_project)
    view.show_image(record.id)
    click_disc(view, qtbot, 30, 30, 9)
    view.undo_action.trigger()

    assert not view.canvas.mask().any()
    assert view.save()
    assert not demo_project.image(record.id).annotated


def test_next_image_autosaves(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    records = demo_project.images(split="train")
    ids = [record.id for record in records]
    view = make_view(qtbot, demo_project)
    view.show_image(ids[0], ids)
    expected = click_disc(view, qtbot, 10, 10, 5)

    qtbot.keyClick(view.canvas, Qt.Key.Key_PageDown)

    assert view.current_record().id == ids[1]
    assert np.array_equal(demo_project.read_mask(ids[0]), expected)
    qtbot.keyClick(view.canvas, Qt.Key.Key_PageUp)
    assert view.current_record().id == ids[0]
    assert np.array_equal(view.canvas.mask(), expected)


def test_autosave_timer(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(split="train")[0]
    view = make_view(qtbot, demo_project)
    view.show_image(record.id)
    expected = click_disc(view, qtbot, 40, 12, 7)
    view._autosave.setInterval(50)

    qtbot.waitUntil(lambda: not view.is_dirty(), timeout=3000)
    assert np.array_equal(demo_project.read_mask(record.id), expected)


def test_existing_dataset_mask_is_shown(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(label="defect")[0]
    on_disk = cv2.imread(str(record.mask_path), cv2.IMREAD_GRAYSCALE) > 0
    view = make_view(qtbot, demo_project)
    view.show_image(record.id)
    assert np.array_equal(view.canvas.mask(), on_disk)
    assert not view.is_dirty()


@pytest.mark.parametrize("accept", [True, False])
def test_mask_of_other_size(qtbot, demo_project: Project, tmp_path: Path, monkeypatch, accept: bool) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(split="test", label="good")[0]
    small = np.zeros((32, 32), np.uint8)
    small[4:12, 8:16] = 255
    mask_file = tmp_path / "small_mask.png"
    cv2.imwrite(str(mask_file), small)
    demo_project.set_mask_path(record.id, mask_file)
    asked = []
    view = make_view(qtbot, demo_project)
    monkeypatch.setattr(view, "_confirm_resize", lambda mask_shape, image_shape: asked.append((mask_shape, image_shape)) or accept)

    view.show_image(record.id)

    assert asked == [((32, 32), (64, 64))]
    assert view.canvas.mask().shape == (64, 64)
    if accept:
        expected = np.zeros((64, 64), bool)
        expected[8:24, 16:32] = True
        assert np.array_equal(view.canvas.mask(), expected)
        assert view.is_dirty()
        assert view.save()
        assert demo_project.read_mask(record.id).shape == (64, 64)
    else:
        assert not view.canvas.mask().any()
        assert "does not fit" in view.message.text()
        assert view.message.isVisibleTo(view)


def test_relabel_from_annotate(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    record = demo_project.images(split="test", label="good")[0]
    view = make_view(qtbot, demo_project)
    view.show_image(record.id)
    view.label_combo.setCurrentIndex(view.label_combo.findData("defect"))
    view.type_combo.setCurrentText("dent")
    view._label_edited()
    changed = demo_project.image(record.id)
    assert changed.label == "defect"
    assert changed.defect_type == "dent"


def test_paths_with_spaces_and_non_ascii(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "dätä sét" / "ünï cat"
    for split, folder in (("train", "good"), ("test", "good"), ("test", "kräck")):
        target = data / split / folder
        target.mkdir(parents=True)
        ok, encoded = cv2.imencode(".png", np.full((40, 50, 3), 90, np.uint8))
        (target / "bild 1.png").write_bytes(encoded.tobytes())
    with Project.create(tmp_path / "prøjekt mit space") as project:
        project.import_index(discover(data.parent, "ünï cat", "mvtec"))
        record = project.images(defect_type="kräck")[0]
        view = make_view(qtbot, project)
        view.show_image(record.id)
        expected = click_disc(view, qtbot, 25, 20, 9)
        assert view.save()
        assert np.array_equal(project.read_mask(record.id), expected)
        assert "ünï cat" in str(project.mask_file_for(record.id))
        view.context.set_project(None)


def test_read_only_project_cannot_paint(qtbot, demo_project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from glass_engine import store

    folder = demo_project.folder
    record = demo_project.images(label="defect")[0]
    demo_project.close()
    monkeypatch.setattr(store, "_folder_writable", lambda path: False)
    with Project.open(folder) as read_only:
        view = make_view(qtbot, read_only)
        view.show_image(record.id)
        before = view.canvas.mask()
        assert before.any()
        click_disc(view, qtbot, 20, 20, 9)
        assert np.array_equal(view.canvas.mask(), before)
        assert not view.is_dirty()
        assert "read-only" in view.message.text()
        view.context.set_project(None)
