"""Tests of the import dialog on the real KolektorSDD commutator data and on generated folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from glass_engine.store import Project
from glass_gui.import_dialog import ImportDialog

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
KOLEKTOR = SHARED / "kolektorsdd"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def count_images(folder: Path) -> int:
    return sum(1 for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


def scan(qtbot, dialog: ImportDialog, folder: Path) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(dialog.scan_finished, timeout=60_000):
        dialog.set_folder(folder)


def column(dialog: ImportDialog, row: int, name: str) -> str:
    return dialog.table.item(row, ImportDialog.COLUMNS.index(name)).text()


@pytest.mark.shared_data
def test_import_kolektor_commutator(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    category = KOLEKTOR / "commutator"
    if not category.is_dir():
        pytest.skip(f"shared dataset {category} is not available")
    train_good = count_images(category / "train" / "good")
    test_good = count_images(category / "test" / "good")
    defect_types = sorted(p.name for p in (category / "test").iterdir() if p.is_dir() and p.name != "good")
    test_defect = {name: count_images(category / "test" / name) for name in defect_types}
    masks = {name: count_images(category / "ground_truth" / name) for name in defect_types}

    with Project.create(tmp_path / "kolektor project") as project:
        dialog = ImportDialog(project)
        qtbot.addWidget(dialog)
        scan(qtbot, dialog, KOLEKTOR)

        assert dialog.table.rowCount() == 1
        assert column(dialog, 0, "category") == "commutator"
        assert int(column(dialog, 0, "train good")) == train_good
        assert int(column(dialog, 0, "test good")) == test_good
        assert int(column(dialog, 0, "test defect")) == sum(test_defect.values())
        assert int(column(dialog, 0, "masks")) == sum(masks.values())
        assert project.count() == 0, "nothing is written before Import"

        with qtbot.waitSignal(dialog.imported, timeout=120_000):
            dialog.start_import()

        assert project.count(split="train", label="good") == train_good
        assert project.count(split="test", label="good") == test_good
        for name in defect_types:
            assert project.count(label="defect", defect_type=name) == test_defect[name]
            assert project.count(defect_type=name, annotated=True) == masks[name]
        record = project.images(label="defect")[0]
        image = cv2.imread(str(record.path), cv2.IMREAD_UNCHANGED)
        assert (record.height, record.width) == image.shape[:2]


def write_png(path: Path, value: int = 100, size: tuple[int, int] = (20, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", np.full(size, value, np.uint8))
    assert ok
    path.write_bytes(data.tobytes())


def test_skipped_files_listed_with_reason(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "dätä sét"
    for i in range(3):
        write_png(root / "wïdget" / "train" / "good" / f"{i}.png")
    write_png(root / "wïdget" / "test" / "good" / "0.png")
    write_png(root / "wïdget" / "test" / "bent lead" / "0.png")
    write_png(root / "wïdget" / "ground_truth" / "bent lead" / "0_mask.png", 255)
    (root / "wïdget" / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "wïdget" / "train" / "good" / "empty.png").write_bytes(b"")

    with Project.create(tmp_path / "prøject") as project:
        dialog = ImportDialog(project)
        qtbot.addWidget(dialog)
        scan(qtbot, dialog, root)

        assert int(column(dialog, 0, "train good")) == 3
        assert int(column(dialog, 0, "skipped")) == 2
        reasons = {}
        top = dialog.problems.topLevelItem(0)
        for index in range(top.childCount()):
            child = top.child(index)
            reasons[Path(child.text(0)).name] = child.text(1)
        assert "not an image" in reasons["notes.txt"]
        assert "empty" in reasons["empty.png"]

        with qtbot.waitSignal(dialog.imported, timeout=30_000):
            dialog.start_import()
        assert project.count() == 5
        assert project.count(defect_type="bent lead", annotated=True) == 1


def test_drop_folder_starts_scan(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "dropped"
    write_png(root / "good" / "a.png")
    write_png(root / "good" / "b.png")
    write_png(root / "scratch" / "c.png")
    with Project.create(tmp_path / "p") as project:
        dialog = ImportDialog(project)
        qtbot.addWidget(dialog)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(root))])
        event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        # Qt delivers drop events only during a real drag, so the handlers are called directly.
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier)
        dialog.dragEnterEvent(enter)
        assert enter.isAccepted()
        with qtbot.waitSignal(dialog.scan_finished, timeout=30_000):
            dialog.dropEvent(event)
        assert dialog.folder_edit.text() == str(root)
        assert dialog.layout_combo.currentData() == "auto"
        assert "folder layout" in dialog.summary_label.text()
        assert int(column(dialog, 0, "test defect")) == 1


def test_unknown_layout_message(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "nothing here").mkdir()
    with Project.create(tmp_path / "p") as project:
        dialog = ImportDialog(project)
        qtbot.addWidget(dialog)
        scan(qtbot, dialog, tmp_path / "nothing here")
        assert "matches no known dataset layout" in dialog.summary_label.text()
        assert not dialog.import_button.isEnabled()
