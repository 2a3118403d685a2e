"""The start page shown when no project is open: new, open, demo, and the recent projects."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from glass_engine.store import is_project

PathRole = Qt.ItemDataRole.UserRole + 1


class StartPage(QWidget):
    """Emits new_requested, open_requested, demo_requested and recent_chosen(Path)."""

    new_requested = Signal()
    open_requested = Signal()
    demo_requested = Signal()
    recent_chosen = Signal(Path)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        title = QLabel(self.tr("<h1>GLASS Studio</h1><p>Anomaly detection projects: images, masks, training "
                               "and results.</p>"))
        new_button = QPushButton(self.tr("New project…"))
        new_button.clicked.connect(self.new_requested)
        open_button = QPushButton(self.tr("Open project…"))
        open_button.clicked.connect(self.open_requested)
        demo_button = QPushButton(self.tr("Open demo project"))
        demo_button.clicked.connect(self.demo_requested)
        self.recent = QListWidget()
        self.recent.itemActivated.connect(self._activated)

        buttons = QHBoxLayout()
        for button in (new_button, open_button, demo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.addWidget(title)
        column.addLayout(buttons)
        column.addWidget(QLabel(self.tr("Recent projects")))
        column.addWidget(self.recent, 1)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(column, 3)
        outer.addStretch(1)

    def set_recent(self, folders: list[Path]) -> None:
        self.recent.clear()
        for folder in folders:
            item = QListWidgetItem(str(folder))
            item.setData(PathRole, str(folder))
            if not is_project(folder):
                item.setFlags(Qt.ItemFlag.NoItemFlags)
                item.setToolTip(self.tr("Not found"))
            self.recent.addItem(item)

    def _activated(self, item: QListWidgetItem) -> None:
        self.recent_chosen.emit(Path(item.data(PathRole)))
