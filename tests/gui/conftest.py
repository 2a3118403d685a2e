"""Fixtures of the GUI tests: offscreen Qt, QSettings and the user data folder inside temporary folders."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

# Qt reads the platform when the QApplication is created, so this must run before any test builds one. The
# offscreen plugin's default screen is 800x800 px, smaller than the main window's minimum size, so a config
# file gives it a desktop-sized screen.
_SCREEN_CONFIG = Path(tempfile.mkdtemp(prefix="glass-offscreen-")) / "screens.json"
_SCREEN_CONFIG.write_text(json.dumps({"screens": [{
    "name": "test screen", "x": 0, "y": 0, "width": 1920, "height": 1200,
    "logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1,
}]}))
os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_SCREEN_CONFIG}"

import pytest  # noqa: E402
from PySide6.QtCore import QCoreApplication, QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from glass_engine.demo import DemoSpec, create_demo_project  # noqa: E402
from glass_engine.store import Project  # noqa: E402

SMALL_DEMO = DemoSpec(train_good=6, test_good=3, defects_per_type=(2, 2, 1), size=64)


@pytest.fixture(scope="session", autouse=True)
def settings_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qsettings")
    QCoreApplication.setOrganizationName("GLASS Studio Tests")
    QCoreApplication.setApplicationName("GLASS Studio Tests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))
    return folder


@pytest.fixture(autouse=True)
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_in_tmp: Path) -> Path:
    home = tmp_path / "studio home"
    monkeypatch.setenv("GLASS_STUDIO_HOME", str(home))
    QSettings().clear()
    return home


@pytest.fixture(autouse=True)
def message_boxes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record message boxes instead of blocking on them; `question` returns Yes."""
    shown: list[tuple[str, str]] = []

    def fake_exec(box: QMessageBox) -> int:
        shown.append((box.windowTitle(), box.text()))
        return int(QMessageBox.StandardButton.Ok)

    def fake_question(parent, title, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        shown.append((title, text))
        return QMessageBox.StandardButton.Yes

    def fake_information(parent, title, text, *args, **kwargs):  # type: ignore[no-untyped-def]
        shown.append((title, text))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(QMessageBox, "question", fake_question)
    monkeypatch.setattr(QMessageBox, "information", fake_information)
    return shown


@pytest.fixture(autouse=True)
def no_threads_left(qapp):  # type: ignore[no-untyped-def]
    """Fail a test that leaves a worker thread running."""
    yield
    from glass_gui.workers import task_runner

    runner = task_runner()
    still_running = runner.running()
    assert runner.wait_all(20_000)
    assert not [worker.title for worker in still_running if not worker.done], "a worker thread was left running"


@pytest.fixture()
def demo_project(tmp_path: Path) -> Project:
    project = create_demo_project(tmp_path / "demo project", SMALL_DEMO)
    yield project
    project.close()
