"""The import dialog: choose or drop a dataset folder, review what discovery found, then import it.

Scanning and importing run in worker threads. Nothing is written to the project before the user presses
Import, and each category is imported in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from glass_engine.data import LAYOUTS, DatasetIndex, detect_layout, discover, list_categories
from glass_engine.errors import CancelledError, GlassError
from glass_engine.store import ImportSummary, Project
from glass_gui.workers import Worker, task_runner

logger = logging.getLogger(__name__)


@dataclass
class ScanResult:
    """Result of scanning a folder: one index per readable category and an error per failed one."""

    root: Path
    layout: str
    indexes: list[DatasetIndex] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def scan_folder(root: Path, layout: str, progress, cancelled) -> ScanResult:  # type: ignore[no-untyped-def]
    """Discover every category of `root`; a category that fails is listed with its error, not raised."""
    resolved = detect_layout(root) if layout == "auto" else layout
    categories = list_categories(root, resolved)
    result = ScanResult(root, resolved)
    if not categories:
        result.errors.append(("", f"No category found in {root} for the {resolved} layout."))
    for done, category in enumerate(categories, start=1):
        if cancelled():
            raise CancelledError(f"Scan of {root} cancelled.")
        try:
            result.indexes.append(discover(root, category, resolved))
        except GlassError as exc:
            logger.warning("Category %s of %s cannot be imported: %s", category, root, exc)
            result.errors.append((category, str(exc)))
        progress(done, len(categories))
    return result


def local_folder(urls: list) -> Path | None:  # type: ignore[type-arg]
    """Return the first dropped local folder, or None."""
    for url in urls:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir():
                return path
    return None


class ImportDialog(QDialog):
    """Emits `imported(list[ImportSummary])` after a successful import."""

    imported = Signal(list)
    scan_finished = Signal()
    """Emitted when a scan ends (found, failed or cancelled) and the dialog accepts new work."""

    COLUMNS = ("category", "train good", "test good", "test defect", "defect types", "masks", "skipped")

    def __init__(self, project: Project, parent: QWidget | None = None, folder: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("Import images"))
        self.setAcceptDrops(True)
        self.resize(860, 560)
        self._project = project
        self._scan: ScanResult | None = None
        self._worker: Worker | None = None
        self.summaries: list[ImportSummary] = []

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText(self.tr("Choose a dataset folder or drop one here"))
        self.folder_edit.returnPressed.connect(lambda: self.set_folder(Path(self.folder_edit.text())))
        browse = QPushButton(self.tr("Browse…"))
        browse.clicked.connect(self._browse)
        self.layout_combo = QComboBox()
        names = {"auto": self.tr("Detect layout"), "mvtec": self.tr("MVTec AD"), "visa": self.tr("VisA"),
                 "folder": self.tr("Plain folders")}
        for layout in LAYOUTS:
            self.layout_combo.addItem(names.get(layout, layout), layout)
        self.layout_combo.currentIndexChanged.connect(lambda _index: self._rescan())

        self.summary_label = QLabel(self.tr("Supported layouts: MVTec AD (CATEGORY/train/good, test/<type>, "
                                            "ground_truth/<type>), VisA (split_csv/1cls.csv) and plain folders "
                                            "(good/ beside one folder per defect type)."))
        self.summary_label.setWordWrap(True)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels([
            self.tr("Category"), self.tr("Train good"), self.tr("Test good"), self.tr("Test defect"),
            self.tr("Defect types"), self.tr("Masks matched"), self.tr("Skipped"),
        ])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problems = QTreeWidget()
        self.problems.setHeaderLabels([self.tr("File or category"), self.tr("Reason")])
        self.problems.setRootIsDecorated(True)

        self.progress = QProgressBar()
        self.progress.hide()
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.clicked.connect(self._cancel_or_close)
        self.import_button = QPushButton(self.tr("Import"))
        self.import_button.setDefault(True)
        self.import_button.setEnabled(False)
        self.import_button.clicked.connect(self.start_import)

        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        folder_row.addWidget(self.layout_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        buttons.addStretch(0)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.import_button)
        layout = QVBoxLayout(self)
        layout.addLayout(folder_row)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.table, 2)
        layout.addWidget(QLabel(self.tr("Skipped files and warnings")))
        layout.addWidget(self.problems, 1)
        layout.addLayout(buttons)

        if folder is not None:
            self.set_folder(folder)

    # ------------------------------------------------------------------------------------------------------
    # Choosing a folder

    def _browse(self) -> None:
        start = self.folder_edit.text() or str(Path.home())
        chosen = QFileDialog.getExistingDirectory(self, self.tr("Dataset folder"), start)
        if chosen:
            self.set_folder(Path(chosen))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and local_folder(event.mimeData().urls()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folder = local_folder(event.mimeData().urls())
        if folder is not None:
            event.acceptProposedAction()
            self.set_folder(folder)

    def set_folder(self, folder: Path) -> None:
        self.folder_edit.setText(str(folder))
        self._rescan()

    def _rescan(self) -> None:
        text = self.folder_edit.text().strip()
        if not text or self._busy():
            return
        root = Path(text)
        layout = self.layout_combo.currentData()
        self._scan = None
        self.table.setRowCount(0)
        self.problems.clear()
        self.import_button.setEnabled(False)
        self.summary_label.setText(self.tr("Scanning {root}…").format(root=root))
        worker = self._start(lambda progress, cancelled: scan_folder(root, layout, progress, cancelled),
                             self.tr("Scan dataset"))
        worker.succeeded.connect(self._show_scan)
        worker.failed.connect(self._scan_failed)
        worker.cancelled.connect(lambda: self.summary_label.setText(self.tr("Scan cancelled.")))
        # Connected after _start's own handler, so the dialog is idle again when listeners hear of it.
        worker.finished.connect(self.scan_finished)

    def _scan_failed(self, message: str, _details: str) -> None:
        self.summary_label.setText(message)

    def _show_scan(self, scan: ScanResult) -> None:
        self._scan = scan
        self.table.setRowCount(len(scan.indexes))
        for row, index in enumerate(scan.indexes):
            counts = index.counts()
            types = ", ".join(f"{name} {count}" for name, count in counts["defect_types"].items())
            values = [index.category, counts["train_good"], counts["test_good"], counts["test_defective"],
                      types, counts["masks"], counts["skipped"]]
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if column == 0:
                    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                    item.setCheckState(Qt.CheckState.Checked)
                else:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, column, item)
        self._show_problems(scan)

        images = sum(len(index.train) + len(index.test) for index in scan.indexes)
        self.summary_label.setText(
            self.tr("{root}: {layout} layout, {categories} categories, {images} images.").format(
                root=scan.root, layout=scan.layout, categories=len(scan.indexes), images=images
            )
        )
        self.import_button.setEnabled(bool(scan.indexes) and not self._project.read_only)

    def _show_problems(self, scan: ScanResult) -> None:
        for category, message in scan.errors:
            QTreeWidgetItem(self.problems, [category or str(scan.root), message])
        for index in scan.indexes:
            if not index.skipped and not index.warnings:
                continue
            parent = QTreeWidgetItem(self.problems, [
                index.category,
                self.tr("{skipped} skipped, {warnings} warnings").format(
                    skipped=len(index.skipped), warnings=len(index.warnings)),
            ])
            for path, reason in index.skipped:
                QTreeWidgetItem(parent, [str(path), reason])
            for warning in index.warnings:
                QTreeWidgetItem(parent, [self.tr("warning"), warning])
            parent.setExpanded(len(index.skipped) + len(index.warnings) <= 20)
        self.problems.resizeColumnToContents(0)

    # ------------------------------------------------------------------------------------------------------
    # Importing

    def selected_indexes(self) -> list[DatasetIndex]:
        if self._scan is None:
            return []
        return [
            index for row, index in enumerate(self._scan.indexes)
            if self.table.item(row, 0).checkState() == Qt.CheckState.Checked
        ]

    def start_import(self) -> None:
        indexes = self.selected_indexes()
        if not indexes or self._busy():
            return
        project = self._project

        def run(progress, cancelled):  # type: ignore[no-untyped-def]
            summaries = []
            for index in indexes:
                summaries.append(project.import_index(index, progress, cancelled))
            return summaries

        self.import_button.setEnabled(False)
        worker = self._start(run, self.tr("Import images"))
        worker.succeeded.connect(self._imported)
        worker.failed.connect(self._import_failed)
        worker.cancelled.connect(self._import_cancelled)

    def _imported(self, summaries: list[ImportSummary]) -> None:
        self.summaries = summaries
        self.imported.emit(summaries)
        self.accept()

    def _import_failed(self, message: str, _details: str) -> None:
        self.summary_label.setText(self.tr("Import failed: {message}").format(message=message))
        self.import_button.setEnabled(True)

    def _import_cancelled(self) -> None:
        self.summary_label.setText(self.tr("Import cancelled. Categories already imported stay in the project; "
                                           "the interrupted one was not changed."))
        self.import_button.setEnabled(True)

    # ------------------------------------------------------------------------------------------------------
    # Worker plumbing

    def _start(self, task, title: str) -> Worker:  # type: ignore[no-untyped-def]
        worker = task_runner().start(task, title)
        self._worker = worker
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.setText(self.tr("Stop"))
        worker.progress.connect(self._progress)
        worker.finished.connect(self._worker_done)
        return worker

    def _progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _worker_done(self) -> None:
        self._worker = None
        self.progress.hide()
        self.cancel_button.setText(self.tr("Cancel"))

    def _busy(self) -> bool:
        return self._worker is not None

    def _cancel_or_close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        else:
            self.reject()

    def reject(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        super().reject()
