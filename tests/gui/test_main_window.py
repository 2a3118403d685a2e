"""Tests of the main window, the view registry, the start-up choices, the error hook and --screenshots."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QRect

from glass_engine.data import discover, read_mask
from glass_engine.store import Project
from glass_gui import views
from glass_gui.main_window import MainWindow, demo_folder
from glass_gui.views import PlaceholderView, StudioView, register_view

VIEW_KEYS = ["images", "annotate", "train", "results", "inspect"]


@pytest.fixture()
def window(qtbot):  # type: ignore[no-untyped-def]
    created = MainWindow()
    qtbot.addWidget(created)
    created.show()
    qtbot.waitExposed(created)
    yield created
    created.close()


def test_tabs_in_order_with_placeholders(window: MainWindow) -> None:
    assert list(window.views) == VIEW_KEYS
    titles = [window.tabs.tabText(index) for index in range(window.tabs.count())]
    assert titles == ["Images", "Annotate", "Train", "Results", "Inspect"]
    for key in ("train", "results", "inspect"):
        if f"glass_gui.{key}_view" not in sys.modules:
            assert isinstance(window.views[key], PlaceholderView)


def test_registered_view_replaces_placeholder(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(views, "_registry", dict(views._registry))

    class ResultsStandIn(StudioView):
        pass

    register_view("results", "Results", ResultsStandIn, order=40)
    created = MainWindow()
    qtbot.addWidget(created)
    assert isinstance(created.views["results"], ResultsStandIn)
    assert list(created.views) == VIEW_KEYS
    created.close()


def test_first_launch_opens_demo(window: MainWindow, qtbot) -> None:  # type: ignore[no-untyped-def]
    assert not demo_folder().exists()
    with qtbot.waitSignal(window.context.project_changed, timeout=60_000):
        window.open_initial_project()
    project = window.context.project
    assert project.folder == demo_folder()
    assert project.categories() == ["surface"]
    assert window.context.category == "surface"
    assert project.count() == 96
    assert window.stack.currentIndex() == 1
    assert window.views["images"].model.rowCount() == 96


def test_last_project_reopened(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "my prøject"
    Project.create(folder, "Mine").close()
    first = MainWindow()
    qtbot.addWidget(first)
    assert first.open_project(folder)
    first.close()

    second = MainWindow()
    qtbot.addWidget(second)
    second.open_initial_project()
    assert second.context.project.folder == folder
    assert second.settings.recent_projects()[0] == folder
    assert not demo_folder().exists()
    second.close()


def test_geometry_remembered(qtbot) -> None:  # type: ignore[no-untyped-def]
    first = MainWindow()
    qtbot.addWidget(first)
    wanted = QRect(40, 50, 1010, 907)
    first.setGeometry(wanted)
    first.show()
    qtbot.waitExposed(first)
    first.close()

    second = MainWindow()
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (1010, 907)
    second.close()


def test_open_non_project_shows_error(window: MainWindow, tmp_path: Path, message_boxes) -> None:  # type: ignore[no-untyped-def]
    assert not window.open_project(tmp_path)
    assert len(message_boxes) == 1
    title, text = message_boxes[0]
    assert title == "Cannot open project"
    assert "not a GLASS Studio project" in text
    assert window.context.project is None


def test_read_only_project_shows_banner(window: MainWindow, demo_project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from glass_engine import store

    folder = demo_project.folder
    demo_project.close()
    monkeypatch.setattr(store, "_folder_writable", lambda path: False)
    assert window.open_project(folder)
    assert window.banner.isVisibleTo(window)
    assert "read-only" in window.banner.text().lower()
    assert not window.import_action.isEnabled()


def test_open_image_switches_to_annotate(window: MainWindow, demo_project: Project) -> None:
    folder = demo_project.folder
    demo_project.close()
    window.open_project(folder)
    record = window.context.project.images(label="defect")[0]
    window.context.open_image(record.id, [record.id])
    assert window.tabs.currentWidget() is window.views["annotate"]
    assert window.views["annotate"].current_record().id == record.id


def test_export_from_window(window: MainWindow, demo_project: Project, tmp_path: Path, qtbot, message_boxes) -> None:  # type: ignore[no-untyped-def]
    folder = demo_project.folder
    demo_project.close()
    window.open_project(folder)
    project = window.context.project

    window.start_export(tmp_path / "exported")
    qtbot.waitUntil(lambda: any(title == "Export finished" for title, _ in message_boxes), timeout=30_000)

    index = discover(tmp_path / "exported", "surface", "mvtec")
    assert len(index.train) + len(index.test) == project.count()
    for sample in index.test:
        if sample.label == 1:
            source = next(r for r in project.images(defect_type=sample.defect_type) if r.name == sample.path.name)
            assert np.array_equal(read_mask(sample.mask_path), read_mask(source.mask_path))


def test_exception_hook_logs_and_shows_one_dialog(qtbot, monkeypatch, message_boxes, caplog) -> None:  # type: ignore[no-untyped-def]
    from glass_gui.errors import install_exception_hook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_exception_hook()
    try:
        raise ValueError("broken widget state")
    except ValueError:
        with caplog.at_level(logging.CRITICAL):
            sys.excepthook(*sys.exc_info())
    qtbot.waitUntil(lambda: len(message_boxes) == 1, timeout=2000)
    QCoreApplication.processEvents()

    assert len(message_boxes) == 1
    assert "broken widget state" in message_boxes[0][1]
    assert any("Uncaught exception" in record.message for record in caplog.records)


def test_screenshots_option_writes_one_png_per_view(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    env = dict(os.environ, GLASS_STUDIO_HOME=str(tmp_path / "home"), QT_QPA_PLATFORM="offscreen",
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    result = subprocess.run(
        [sys.executable, "-m", "glass_gui.app", "--screenshots", str(out)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]

    written = sorted(path.name for path in out.glob("*.png"))
    views = [f"{number:02d}_{key}.png" for number, key in enumerate(VIEW_KEYS, start=1)]
    results_number = VIEW_KEYS.index("results") + 1
    results_tabs = [
        f"{results_number:02d}{letter}_results_{tab}.png"
        for letter, tab in (("b", "curves"), ("c", "distribution"), ("d", "compare_runs"))
    ]
    assert written == sorted(views + results_tabs)
    for name in written:
        image = cv2.imread(str(out / name))
        assert image.shape[:2] == (900, 1400)
        assert image.std() > 5, f"{name} looks blank"
