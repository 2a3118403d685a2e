"""The project panel: project name, categories with their image counts, and the runs of the category."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from glass_engine.store import CategoryCounts, Project
from glass_gui.views import StudioContext

logger = logging.getLogger(__name__)

CategoryRole = Qt.ItemDataRole.UserRole + 1


class ProjectPanel(QWidget):
    """Lists categories; selecting one sets the context's category for every view."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.runs = QListWidget()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(QLabel(self.tr("Categories")))
        layout.addWidget(self.tree, 3)
        layout.addWidget(QLabel(self.tr("Runs")))
        layout.addWidget(self.runs, 1)

        context.project_changed.connect(lambda _project: self.refresh())
        context.images_changed.connect(self.refresh)
        context.runs_changed.connect(self._refresh_runs)
        context.category_changed.connect(self._category_changed)
        self.refresh()

    def refresh(self) -> None:
        project = self.context.project
        self.tree.blockSignals(True)
        self.tree.clear()
        if project is None:
            self.title.setText(self.tr("No project open"))
            self.tree.blockSignals(False)
            self.runs.clear()
            return

        read_only = self.tr(" (read-only)") if project.read_only else ""
        self.title.setText(f"<b>{project.name}</b>{read_only}<br><small>{project.folder}</small>")
        for category, counts in sorted(project.category_counts().items()):
            self._add_category(category, counts)
        self.tree.blockSignals(False)
        self._category_changed(self.context.category or "")
        self._refresh_runs()

    def _add_category(self, category: str, counts: CategoryCounts) -> None:
        item = QTreeWidgetItem(self.tree, [self.tr("{name} ({count})").format(name=category, count=counts.total)])
        item.setData(0, CategoryRole, category)
        lines = [
            self.tr("train: {good} good").format(good=counts.count("train", "good")),
            self.tr("test: {good} good, {defect} defect").format(
                good=counts.count("test", "good"), defect=counts.count("test", "defect")),
        ]
        if counts.count("validation"):
            lines.append(self.tr("validation: {good} good, {defect} defect").format(
                good=counts.count("validation", "good"), defect=counts.count("validation", "defect")))
        if counts.defect_types:
            lines.append(", ".join(f"{name} {count}" for name, count in sorted(counts.defect_types.items())))
        lines.append(self.tr("masks: {count}").format(count=counts.annotated))
        if counts.missing:
            lines.append(self.tr("missing files: {count}").format(count=counts.missing))
        for line in lines:
            child = QTreeWidgetItem(item, [line])
            child.setData(0, CategoryRole, category)
            child.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.setExpanded(True)

    def _selection_changed(self) -> None:
        items = self.tree.selectedItems()
        if items:
            category = items[0].data(0, CategoryRole)
            if category != self.context.category:
                self.context.set_category(category)

    def _category_changed(self, category: str) -> None:
        self.tree.blockSignals(True)
        for row in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(row)
            item.setSelected(item.data(0, CategoryRole) == category)
        self.tree.blockSignals(False)
        self._refresh_runs()

    def _refresh_runs(self) -> None:
        self.runs.clear()
        project = self.context.project
        if project is None or self.context.category is None:
            return
        for run in reversed(project.runs(self.context.category)):
            self.runs.addItem(self.tr("{name} ({status})").format(name=run.name, status=run.status))
