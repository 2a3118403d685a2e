"""Per-user GUI settings kept in QSettings: recent projects and window geometry only.

Everything that belongs to a project lives in its own database (glass_engine.store).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

logger = logging.getLogger(__name__)

ORGANIZATION = "GLASS Studio"
APPLICATION = "GLASS Studio"
MAX_RECENT = 10
_RECENT_KEY = "projects/recent"
_GEOMETRY_KEY = "window/geometry"
_STATE_KEY = "window/state"


class StudioSettings:
    """Typed access to the application's QSettings (organisation and application names set at start-up)."""

    def __init__(self) -> None:
        self._settings = QSettings()

    def recent_projects(self) -> list[Path]:
        """Return recent project folders, the most recent first."""
        raw = self._settings.value(_RECENT_KEY, "[]")
        try:
            entries = json.loads(raw) if isinstance(raw, str) else []
        except json.JSONDecodeError:
            logger.warning("Ignoring unreadable recent-projects list in %s", self._settings.fileName())
            entries = []
        return [Path(entry) for entry in entries if isinstance(entry, str)]

    def add_recent(self, folder: Path) -> None:
        folder = Path(folder)
        entries = [folder] + [entry for entry in self.recent_projects() if entry != folder]
        self._write_recent(entries[:MAX_RECENT])

    def remove_recent(self, folder: Path) -> None:
        self._write_recent([entry for entry in self.recent_projects() if entry != Path(folder)])

    def last_project(self) -> Path | None:
        recent = self.recent_projects()
        return recent[0] if recent else None

    def _write_recent(self, entries: list[Path]) -> None:
        self._settings.setValue(_RECENT_KEY, json.dumps([str(entry) for entry in entries]))
        self._settings.sync()

    def save_window(self, window: QMainWindow) -> None:
        self._settings.setValue(_GEOMETRY_KEY, window.saveGeometry())
        self._settings.setValue(_STATE_KEY, window.saveState())
        self._settings.sync()

    def restore_window(self, window: QMainWindow) -> bool:
        """Restore size, position and dock layout; return False when nothing was saved yet."""
        geometry = self._settings.value(_GEOMETRY_KEY)
        state = self._settings.value(_STATE_KEY)
        restored = False
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            restored = window.restoreGeometry(geometry)
        if isinstance(state, QByteArray) and not state.isEmpty():
            window.restoreState(state)
        return restored
