"""The Inspect view: score images, folders, video files and cameras with a trained run.

The run comes from the project's runs or from a run folder or checkpoint chosen on disk, and the OK/NG
threshold defaults to the run's threshold in force. Images are scored in a worker thread, and the results
fill a sortable table and a thumbnail grid that share one model. The thumbnails show the heatmap on the
original image with an OK/NG badge. Video files, cameras and streams are scored by a `VideoSession`, which
shows the newest frame with its heatmap, the frame rate and the number of dropped frames.

Memory per inspected image is small and fixed: a JPEG thumbnail and the anomaly map at thumbnail size.
The larger preview reads the image file again when a row is selected.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractTableModel,
    QCoreApplication,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from glass_engine.data import IMAGE_EXTENSIONS, read_image
from glass_engine.errors import CancelledError, DatasetError, GlassError, OutputError
from glass_engine.fileio import atomic_write_text
from glass_engine.inference import Predictor, collect_image_paths, resolve_run
from glass_engine.runs import RunFolder
from glass_engine.video import InspectorStats, fit_within, overlay
from glass_gui.errors import show_error
from glass_gui.video_worker import DisplayFrame, FrameRecord, SourceInfo, VideoSession, rgb_to_qimage
from glass_gui.views import StudioContext, StudioView, register_view
from glass_gui.workers import Worker, task_runner

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 176
"""Longest side in pixels of the thumbnails in the grid."""
PREVIEW_SIDE = 900
"""Longest side in pixels of the selected image's preview."""
THUMBNAIL_CACHE = 600
"""Number of drawn thumbnails kept; they are redrawn when the threshold or opacity changes."""
JPEG_QUALITY = 90
DEFAULT_THRESHOLD = 0.5
"""Threshold used when a run has neither an operator threshold nor an F1-optimal one."""
STATS_INTERVAL_MS = 250
LOG_ROWS = 300
"""Rows kept in the video frame log, newest first."""

SortRole = Qt.ItemDataRole.UserRole + 1
ThumbnailRole = Qt.ItemDataRole.UserRole + 2
RowRole = Qt.ItemDataRole.UserRole + 3

OK_COLOUR = QColor(20, 170, 60)
NG_COLOUR = QColor(230, 30, 30)


# ----------------------------------------------------------------------------------------------------------
# Results of image inspection (no widgets)


@dataclass
class InspectionRow:
    """One scored image: its score and what is needed to draw its thumbnail again at any threshold."""

    path: Path
    score: float
    width: int
    height: int
    thumbnail_jpeg: bytes
    thumbnail_map: np.ndarray
    """uint8 anomaly map (map * 255) at the thumbnail's size, for redrawing the overlay."""


@dataclass
class InspectionOutcome:
    """Counts of an inspection job, returned once it has delivered all its rows."""

    total: int = 0
    scored: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def decide(score: float, threshold: float | None) -> str:
    """Return "NG" when score >= threshold, "OK" below it and "" without a threshold."""
    if threshold is None:
        return ""
    return "NG" if score >= threshold else "OK"


def decision_label(decision: str) -> str:
    """Return the translated text of a decision ("OK", "NG" or "")."""
    if decision == "NG":
        return QCoreApplication.translate("InspectView", "NG")
    if decision == "OK":
        return QCoreApplication.translate("InspectView", "OK")
    return ""


def record_decision(record: FrameRecord) -> str:
    """Return "NG", "OK" or "" (no threshold) for an inspected frame."""
    if record.is_defective is None:
        return ""
    return "NG" if record.is_defective else "OK"


def make_row(path: Path, image: np.ndarray, original_map: np.ndarray, score: float) -> InspectionRow:
    thumbnail = fit_within(image, THUMBNAIL_SIDE)
    height, width = thumbnail.shape[:2]
    small_map = cv2.resize(original_map, (width, height), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DatasetError(f"Cannot encode a thumbnail of {path}.")
    quantised = np.rint(np.clip(small_map, 0.0, 1.0) * 255.0).astype(np.uint8)
    return InspectionRow(Path(path), float(score), image.shape[1], image.shape[0], encoded.tobytes(), quantised)


def draw_thumbnail(row: InspectionRow, threshold: float | None, alpha: float) -> np.ndarray:
    """Return the RGB thumbnail of a row with heatmap, outline and OK/NG badge."""
    thumbnail = cv2.cvtColor(cv2.imdecode(np.frombuffer(row.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR),
                             cv2.COLOR_BGR2RGB)
    return overlay(thumbnail, row.thumbnail_map.astype(np.float32) / 255.0, threshold, alpha, row.score)


def inspect_files(
    predictor: Predictor,
    paths: Sequence[Path],
    deliver: Callable[[list[InspectionRow]], None],
    progress: Callable[[int, int], None],
    cancelled: Callable[[], bool],
) -> InspectionOutcome:
    """Score image files batch by batch and pass each batch's rows to `deliver`; unreadable files are skipped.

    Batches have the run's batch size, like `Predictor.predict_paths`, so the scores equal those of
    `glass-engine predict` and of the run's scores.csv for the same files. Raises CancelledError when
    `cancelled()` turns true between batches.
    """
    outcome = InspectionOutcome(total=len(paths))
    batch_size = max(1, predictor.config.data.batch_size)
    done = 0
    progress(0, len(paths))
    for start in range(0, len(paths), batch_size):
        if cancelled():
            raise CancelledError(f"Inspection cancelled after {done} of {len(paths)} images.")
        images, names = [], []
        for path in paths[start:start + batch_size]:
            try:
                images.append(read_image(path))
                names.append(str(path))
            except DatasetError as exc:
                logger.warning("Skipped %s: %s", path, exc)
                outcome.skipped.append((Path(path), str(exc)))

        predictions = predictor.predict_arrays(images, names)
        rows = [
            make_row(Path(name), image, prediction.original_map, prediction.score)
            for name, image, prediction in zip(names, images, predictions)
        ]
        outcome.scored += len(rows)
        if rows:
            deliver(rows)
        done = min(len(paths), start + batch_size)
        progress(done, len(paths))
    return outcome


def write_results_csv(rows: Sequence[InspectionRow], threshold: float | None, out: Path) -> Path:
    """Write path, score, decision, threshold, width and height of each row to a CSV file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "score", "decision", "threshold", "width", "height"])
    threshold_text = "" if threshold is None else f"{threshold:.6f}"
    for row in rows:
        writer.writerow([str(row.path), f"{row.score:.8f}", decide(row.score, threshold), threshold_text,
                         row.width, row.height])
    atomic_write_text(Path(out), buffer.getvalue())
    return Path(out)


def report_writer() -> Callable[..., Path] | None:
    """Return `glass_engine.reports.write_inspection_report`, or None where that module is not installed."""
    try:
        from glass_engine.reports import write_inspection_report
    except ImportError:
        return None
    return write_inspection_report


def run_has_checkpoint(run_dir: Path) -> bool:
    run = RunFolder(Path(run_dir))
    return run.best_checkpoint.is_file() or run.last_checkpoint.is_file()


# ----------------------------------------------------------------------------------------------------------
# Model and delegate


class InspectionModel(QAbstractTableModel):
    """Rows of an image inspection; the decision follows the threshold, which may change at any time."""

    COLUMNS = (QT_TRANSLATE_NOOP("InspectionModel", "Image"),
               QT_TRANSLATE_NOOP("InspectionModel", "Score"),
               QT_TRANSLATE_NOOP("InspectionModel", "Decision"))
    IMAGE, SCORE, DECISION = range(3)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.rows: list[InspectionRow] = []
        self.threshold: float | None = DEFAULT_THRESHOLD
        self.alpha = 0.5
        self._thumbnails: OrderedDict[int, QPixmap] = OrderedDict()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.tr(self.COLUMNS[section])
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = index.column()
        decision = decide(row.score, self.threshold)

        if role == Qt.ItemDataRole.DisplayRole:
            if column == self.IMAGE:
                return row.path.name
            if column == self.SCORE:
                return f"{row.score:.4f}"
            return decision_label(decision)
        if role == SortRole:
            return (str(row.path), row.score, decision)[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tr("{path}\n{width} × {height} pixels").format(path=row.path, width=row.width,
                                                                      height=row.height)
        if role == Qt.ItemDataRole.ForegroundRole and column == self.DECISION and decision:
            return NG_COLOUR if decision == "NG" else OK_COLOUR
        if role == Qt.ItemDataRole.TextAlignmentRole and column == self.SCORE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == ThumbnailRole:
            return self._thumbnail(index.row())
        if role == RowRole:
            return row
        return None

    def _thumbnail(self, number: int) -> QPixmap:
        pixmap = self._thumbnails.get(number)
        if pixmap is None:
            image = draw_thumbnail(self.rows[number], self.threshold, self.alpha)
            pixmap = QPixmap.fromImage(rgb_to_qimage(image))
            self._thumbnails[number] = pixmap
            if len(self._thumbnails) > THUMBNAIL_CACHE:
                self._thumbnails.popitem(last=False)
        else:
            self._thumbnails.move_to_end(number)
        return pixmap

    def add_rows(self, rows: list[InspectionRow]) -> None:
        if not rows:
            return
        first = len(self.rows)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self.rows.extend(rows)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.rows = []
        self._thumbnails.clear()
        self.endResetModel()

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = threshold
        self._redraw()

    def set_alpha(self, alpha: float) -> None:
        self.alpha = alpha
        self._redraw()

    def _redraw(self) -> None:
        self._thumbnails.clear()
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(self.COLUMNS) - 1))

    def counts(self) -> tuple[int, int, int]:
        """Return (total, OK, NG) at the current threshold."""
        decisions = [decide(row.score, self.threshold) for row in self.rows]
        return len(decisions), decisions.count("OK"), decisions.count("NG")


class ThumbnailDelegate(QStyledItemDelegate):
    """Draws a thumbnail with its file name below, framed in the colour of its decision."""

    MARGIN = 6
    TEXT_HEIGHT = 18

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        side = THUMBNAIL_SIDE + 2 * self.MARGIN
        return QSize(side, side + self.TEXT_HEIGHT)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        painter.save()
        rect = option.rect
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(rect, option.palette.highlight())

        pixmap = index.data(ThumbnailRole)
        area = QRect(rect.x() + self.MARGIN, rect.y() + self.MARGIN, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
        if isinstance(pixmap, QPixmap) and not pixmap.isNull():
            size = pixmap.size().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(area.center())
            painter.drawPixmap(target, pixmap)
            row = index.data(RowRole)
            decision = decide(row.score, index.model().sourceModel().threshold) if row is not None else ""
            if decision:
                painter.setPen(QPen(NG_COLOUR if decision == "NG" else OK_COLOUR, 3))
                painter.drawRect(target.adjusted(-2, -2, 1, 1))

        text_rect = QRect(rect.x() + 2, area.bottom() + 3, rect.width() - 4, self.TEXT_HEIGHT)
        name = index.data(Qt.ItemDataRole.DisplayRole) or ""
        elided = option.fontMetrics.elidedText(name, Qt.TextElideMode.ElideMiddle, text_rect.width())
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.setPen(option.palette.highlightedText().color() if selected else option.palette.text().color())
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, elided)
        painter.restore()


class _RowRelay(QObject):
    """Carries result rows from the worker thread to the model; it lives in the GUI thread."""

    rows_ready = Signal(list)


# ----------------------------------------------------------------------------------------------------------
# Widgets


class ImageLabel(QLabel):
    """Shows a QImage scaled to fit, keeping its aspect ratio, with a placeholder text when empty."""

    def __init__(self, placeholder: str, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.setStyleSheet("QLabel { background: #202020; color: #b0b0b0; }")
        self.setText(placeholder)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        if image is None:
            self.setText(self._placeholder)
        self._rescale()

    def image(self) -> QImage | None:
        return self._image

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._image is None or self._image.isNull():
            self.setPixmap(QPixmap())
            return
        scaled = self._image.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.SmoothTransformation)
        self.setPixmap(QPixmap.fromImage(scaled))


class RunSelector(QWidget):
    """The run to inspect with (project runs, or a folder or checkpoint from disk) and its threshold.

    Signals: run_changed(path or None), threshold_changed(float).
    """

    run_changed = Signal(object)
    threshold_changed = Signal(float)

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context
        self._browsed: list[Path] = []
        self._current: Path | None = None

        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(28)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.setToolTip(self.tr("Trained run whose model scores the images and frames"))
        self.run_combo.currentIndexChanged.connect(lambda _index: self._selection_changed())

        browse_menu = QMenu(self)
        browse_menu.addAction(self.tr("Run folder…"), self._browse_folder)
        browse_menu.addAction(self.tr("Checkpoint file…"), self._browse_checkpoint)
        self.browse_button = QToolButton()
        self.browse_button.setText(self.tr("Open run"))
        self.browse_button.setMenu(browse_menu)
        self.browse_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)

        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setDecimals(4)
        self.threshold_spin.setSingleStep(0.01)
        self.threshold_spin.setValue(DEFAULT_THRESHOLD)
        self.threshold_spin.setToolTip(self.tr("Images and frames with a score at or above this value are NG"))
        self.threshold_spin.valueChanged.connect(lambda _value: self.threshold_changed.emit(self.threshold()))
        self._exact_threshold = DEFAULT_THRESHOLD
        self.reset_button = QPushButton(self.tr("Run's threshold"))
        self.reset_button.setToolTip(self.tr("Go back to the threshold stored with the run"))
        self.reset_button.clicked.connect(self.reset_threshold)
        self.save_button = QPushButton(self.tr("Save to run"))
        self.save_button.setToolTip(self.tr("Store this threshold with the run, for inspection and reports"))
        self.save_button.clicked.connect(self.save_threshold)
        self.info_label = QLabel()
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel(self.tr("Run:")))
        layout.addWidget(self.run_combo, 2)
        layout.addWidget(self.browse_button)
        layout.addSpacing(12)
        layout.addWidget(QLabel(self.tr("Threshold:")))
        layout.addWidget(self.threshold_spin)
        layout.addWidget(self.reset_button)
        layout.addWidget(self.save_button)
        layout.addSpacing(12)
        layout.addWidget(self.info_label, 3)
        self._update_buttons()

    def run_path(self) -> Path | None:
        """Return the selected run folder or checkpoint file, or None."""
        data = self.run_combo.currentData()
        return Path(data) if data else None

    def threshold(self) -> float:
        """Return the threshold in force: the run's exact value until the user changes the shown one."""
        # The spin box rounds to 4 decimals, and the F1-optimal threshold usually equals a test score, so
        # the rounded value could turn that image from NG to OK.
        shown = float(self.threshold_spin.value())
        if shown == round(self._exact_threshold, self.threshold_spin.decimals()):
            return self._exact_threshold
        return shown

    def refresh(self) -> None:
        """List the project's runs that have a checkpoint, newest first, then runs opened from disk."""
        current = self.run_path()
        project = self.context.project
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        preferred = None
        if project is not None:
            for record in reversed(project.runs()):
                if not run_has_checkpoint(record.run_dir):
                    continue
                self.run_combo.addItem(self._record_text(record), str(record.run_dir))
                if preferred is None and record.category == self.context.category:
                    preferred = str(record.run_dir)
        for path in self._browsed:
            self.run_combo.addItem(self.tr("{name} (from disk)").format(name=self._display_name(path)), str(path))
        if self.run_combo.count() == 0:
            self.run_combo.addItem(self.tr("No trained run: train one or open a run folder"), "")

        target = str(current) if current is not None else preferred
        position = self.run_combo.findData(target) if target else -1
        self.run_combo.setCurrentIndex(max(position, 0))
        self.run_combo.blockSignals(False)
        self._selection_changed()

    def _record_text(self, record: Any) -> str:
        text = f"{record.name} · {record.category}"
        auroc = (record.metrics or {}).get("image_auroc")
        if isinstance(auroc, (int, float)):
            text += self.tr(" · image AUROC {value:.3f}").format(value=auroc)
        return text

    @staticmethod
    def _display_name(path: Path) -> str:
        if path.is_file():
            parent = path.parent.parent if path.parent.name == "checkpoints" else path.parent
            return f"{parent.name}/{path.name}"
        return path.name

    def select_path(self, path: Path) -> None:
        """Select a run folder or checkpoint, adding it to the list when it is not a project run."""
        path = Path(path)
        position = self.run_combo.findData(str(path))
        if position < 0:
            if path not in self._browsed:
                self._browsed.append(path)
            self.refresh()
            position = self.run_combo.findData(str(path))
        self.run_combo.setCurrentIndex(position)

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Open run folder"))
        if folder:
            self.select_path(Path(folder))

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.tr("Open checkpoint"), "",
                                              self.tr("Checkpoints (*.pt);;All files (*)"))
        if path:
            self.select_path(Path(path))

    def _selection_changed(self) -> None:
        path = self.run_path()
        if path == self._current:
            return
        self._current = path
        self._update_buttons()
        self.reset_threshold()
        self.run_changed.emit(path)

    def run_folder(self) -> RunFolder | None:
        """Return the run of the selection, or None when nothing usable is selected."""
        path = self.run_path()
        if path is None:
            return None
        try:
            run, _checkpoint = resolve_run(path)
        except GlassError as exc:
            logger.warning("Run %s is not usable: %s", path, exc)
            return None
        return run

    def reset_threshold(self) -> None:
        """Show the run's threshold in force (operator's, else F1-optimal, else DEFAULT_THRESHOLD)."""
        run = self.run_folder()
        value = None
        if run is not None:
            try:
                value = run.threshold()
            except (GlassError, ValueError, OSError) as exc:
                logger.warning("Threshold of run %s is unreadable: %s", run.root, exc)
        if value is None:
            note = self.tr("The run has no threshold, so {value} is used.").format(value=DEFAULT_THRESHOLD)
            self.info_label.setText(note if run is not None else "")
            value = DEFAULT_THRESHOLD
        else:
            self.info_label.setText(self._run_info(run))
        self._exact_threshold = float(value)
        self.threshold_spin.setValue(float(value))
        # setValue emits nothing when the value is unchanged, but a new run must still reach the listeners.
        self.threshold_changed.emit(self.threshold())

    def _run_info(self, run: RunFolder | None) -> str:
        if run is None:
            return ""
        try:
            metrics = run.read_metrics() if run.metrics_path.is_file() else {}
        except GlassError:
            metrics = {}
        parts = [run.root.name]
        if isinstance(metrics.get("image_auroc"), (int, float)):
            parts.append(self.tr("image AUROC {value:.3f}").format(value=metrics["image_auroc"]))
        if isinstance(metrics.get("pixel_auroc"), (int, float)):
            parts.append(self.tr("pixel AUROC {value:.3f}").format(value=metrics["pixel_auroc"]))
        return " · ".join(parts)

    def save_threshold(self) -> None:
        run = self.run_folder()
        if run is None:
            return
        value = self.threshold()
        try:
            run.set_user_threshold(value)
            project = self.context.project
            if project is not None and not project.read_only:
                for record in project.runs():
                    if record.run_dir == run.root:
                        project.update_run(record.id, threshold=value)
        except GlassError as exc:
            logger.error("Saving threshold %s to run %s failed: %s", value, run.root, exc)
            show_error(self, self.tr("Threshold not saved"), str(exc))
            return
        logger.info("Saved threshold %.4f to run %s", value, run.root)
        self.context.runs_changed.emit()
        self.context.show_status(self.tr("Threshold {value:.4f} saved to the run.").format(value=value))

    def _update_buttons(self) -> None:
        has_run = self.run_path() is not None
        self.reset_button.setEnabled(has_run)
        self.save_button.setEnabled(has_run)


class ImagesPanel(QWidget):
    """Inspection of image files and folders: toolbar, progress, table, preview and thumbnail grid."""

    def __init__(self, view: InspectView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.model = InspectionModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SortRole)
        self._relay = _RowRelay(self)
        # A bound method of this GUI-thread widget, so Qt queues the rows emitted in the worker thread.
        self._relay.rows_ready.connect(self._add_rows)
        self.worker: Worker | None = None
        self.last_outcome: InspectionOutcome | None = None
        self._preview_request = 0
        self._preview_worker: Worker | None = None

        self._build_toolbar()
        self._build_results()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._toolbar)
        layout.addWidget(self.splitter, 1)
        self.model.rowsInserted.connect(lambda *_args: self._update_actions())
        self.model.modelReset.connect(self._update_actions)
        self._update_summary()
        self._update_actions()

    def _build_toolbar(self) -> None:
        self.images_button = QPushButton(self.tr("Inspect images…"))
        self.images_button.clicked.connect(self._choose_images)
        self.folder_button = QPushButton(self.tr("Inspect folder…"))
        self.folder_button.clicked.connect(self._choose_folder)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setFormat(self.tr("%v of %m"))
        self.progress.hide()
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.summary_label = QLabel()
        self.csv_button = QPushButton(self.tr("Export CSV…"))
        self.csv_button.clicked.connect(self._export_csv)
        self.excel_button = QPushButton(self.tr("Export Excel report…"))
        self.excel_button.clicked.connect(self._export_excel)
        self._report_writer = report_writer()
        if self._report_writer is None:
            self.excel_button.setToolTip(self.tr("Excel reports need the glass_engine.reports module, "
                                                 "which this installation does not have."))
        else:
            self.excel_button.setToolTip(self.tr("Write the results, with thumbnails, in the report format (.xlsx)"))

        self._toolbar = QHBoxLayout()
        for widget in (self.images_button, self.folder_button, self.progress, self.cancel_button):
            self._toolbar.addWidget(widget)
        self._toolbar.addSpacing(12)
        self._toolbar.addWidget(self.summary_label, 1)
        self._toolbar.addWidget(self.csv_button)
        self._toolbar.addWidget(self.excel_button)

    def _build_results(self) -> None:
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(InspectionModel.IMAGE, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(InspectionModel.IMAGE, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(InspectionModel.SCORE, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(InspectionModel.DECISION, QHeaderView.ResizeMode.ResizeToContents)

        self.grid = QListView()
        self.grid.setModel(self.proxy)
        self.grid.setSelectionModel(self.table.selectionModel())
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setSpacing(4)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setItemDelegate(ThumbnailDelegate(self.grid))

        self.preview = ImageLabel(self.tr("Select an image to see its heatmap"))
        self.preview_caption = QLabel()
        self.preview_caption.setWordWrap(True)
        preview_box = QWidget()
        preview_layout = QVBoxLayout(preview_box)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(self.preview, 1)
        preview_layout.addWidget(self.preview_caption)

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.table)
        left.addWidget(preview_box)
        left.setSizes([300, 400])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.grid)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.table.selectionModel().currentRowChanged.connect(lambda current, _previous: self._show_preview(current))

    # -- inspection ---------------------------------------------------------------------------------------

    def _choose_images(self) -> None:
        patterns = " ".join(f"*{extension}" for extension in sorted(IMAGE_EXTENSIONS))
        files, _ = QFileDialog.getOpenFileNames(self, self.tr("Inspect images"), "",
                                                self.tr("Images ({patterns});;All files (*)").format(patterns=patterns))
        if files:
            self.inspect_paths([Path(file) for file in files])

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Inspect folder"))
        if folder:
            self.inspect_paths([Path(folder)])

    def inspect_paths(self, inputs: list[Path]) -> None:
        """Score image files and folders (searched recursively) with the selected run, replacing the results."""
        if self.is_busy() or self.view.video_panel.is_running():
            return
        self.model.clear()
        self.last_outcome = None
        self.preview.set_image(None)
        self.preview_caption.clear()
        self.view.with_predictor(lambda predictor: self._start(predictor, list(inputs)))

    def _start(self, predictor: Predictor, inputs: list[Path]) -> None:
        relay = self._relay

        def task(progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> InspectionOutcome:
            paths, skipped = collect_image_paths(inputs)
            for path, reason in skipped:
                logger.info("Not inspected: %s (%s)", path, reason)
            if not paths:
                raise DatasetError(
                    "No image files found in {inputs}. Choose image files or a folder that contains images.".format(
                        inputs=", ".join(str(item) for item in inputs)
                    )
                )
            return inspect_files(predictor, paths, relay.rows_ready.emit, progress, cancelled)

        self.worker = task_runner().start(task, self.tr("Inspecting images"))
        self.worker.progress.connect(self._on_progress)
        self.worker.succeeded.connect(self._on_succeeded)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self._update_actions()
        self.view.update_busy()

    def _add_rows(self, rows: list[InspectionRow]) -> None:
        self.model.add_rows(rows)
        self._update_summary()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)

    def is_busy(self) -> bool:
        return self.worker is not None

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_succeeded(self, outcome: InspectionOutcome) -> None:
        self.last_outcome = outcome
        self.view.context.show_status(self.tr("Inspected {count} images.").format(count=outcome.scored))
        if self.proxy.rowCount() and not self.table.selectionModel().hasSelection():
            self.select_row(0)

    def _on_failed(self, message: str, details: str) -> None:
        show_error(self, self.tr("Inspection failed"), message, details)

    def _on_cancelled(self) -> None:
        self.view.context.show_status(
            self.tr("Inspection cancelled; {count} images were scored.").format(count=self.model.rowCount())
        )

    def _on_finished(self) -> None:
        self.worker = None
        self.progress.hide()
        self.cancel_button.hide()
        self._update_summary()
        self._update_actions()
        self.view.update_busy()

    # -- results ------------------------------------------------------------------------------------------

    def set_threshold(self, threshold: float) -> None:
        self.model.set_threshold(threshold)
        self._update_summary()
        self._show_preview(self.table.selectionModel().currentIndex())

    def set_alpha(self, alpha: float) -> None:
        self.model.set_alpha(alpha)
        self._show_preview(self.table.selectionModel().currentIndex())

    def select_row(self, proxy_row: int) -> None:
        index = self.proxy.index(proxy_row, 0)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().setCurrentIndex(index, flags)

    def _update_summary(self) -> None:
        total, ok, ng = self.model.counts()
        text = self.tr("Total {total} · OK {ok} · NG {ng}").format(total=total, ok=ok, ng=ng)
        if self.last_outcome is not None and self.last_outcome.skipped:
            text += self.tr(" · {count} unreadable").format(count=len(self.last_outcome.skipped))
            self.summary_label.setToolTip("\n".join(f"{path}: {reason}" for path, reason in self.last_outcome.skipped))
        else:
            self.summary_label.setToolTip("")
        self.summary_label.setText(text)

    def _update_actions(self) -> None:
        has_rows = self.model.rowCount() > 0
        busy = self.is_busy()
        self.csv_button.setEnabled(has_rows and not busy)
        self.excel_button.setEnabled(has_rows and not busy and self._report_writer is not None)

    def set_inputs_enabled(self, enabled: bool) -> None:
        self.images_button.setEnabled(enabled)
        self.folder_button.setEnabled(enabled)

    def _show_preview(self, proxy_index: QModelIndex) -> None:
        """Draw the selected image at preview size in a worker; a newer selection wins over an older one."""
        if not proxy_index.isValid():
            return
        row: InspectionRow = self.proxy.data(proxy_index, RowRole)
        threshold, alpha = self.model.threshold, self.model.alpha
        self._preview_request += 1
        request = self._preview_request
        decision = decide(row.score, threshold)
        self.preview_caption.setText(self.tr("{name} · score {score:.4f} · {decision}").format(
            name=row.path.name, score=row.score, decision=decision_label(decision)))

        def task(_progress: Callable[[int, int], None], _cancelled: Callable[[], bool]) -> tuple[int, QImage]:
            return request, render_preview(row, threshold, alpha)

        worker = task_runner().start(task, self.tr("Drawing preview"))
        worker.succeeded.connect(self._on_preview)
        worker.failed.connect(lambda message, _details: self.preview_caption.setText(message))
        self._preview_worker = worker

    def _on_preview(self, result: tuple[int, QImage]) -> None:
        request, image = result
        if request == self._preview_request:
            self.preview.set_image(image)

    # -- export -------------------------------------------------------------------------------------------

    def _export_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, self.tr("Export results as CSV"), "inspection.csv",
                                              self.tr("CSV files (*.csv)"))
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> None:
        try:
            write_results_csv(self.model.rows, self.model.threshold, path)
        except OutputError as exc:
            logger.error("CSV export to %s failed: %s", path, exc)
            show_error(self, self.tr("Export failed"), str(exc))
            return
        self.view.context.show_status(self.tr("Results written to {path}").format(path=path))

    def _export_excel(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, self.tr("Export Excel report"), "inspection.xlsx",
                                              self.tr("Excel workbooks (*.xlsx)"))
        if path:
            self.export_excel(Path(path))

    def export_excel(self, path: Path) -> Worker | None:
        """Write the report in a worker; return the worker, or None where reports are not available."""
        writer = self._report_writer
        if writer is None:
            return None
        threshold, alpha = self.model.threshold, self.model.alpha
        rows = list(self.model.rows)
        run = self.view.run_selector.run_folder()
        run_dir = run.root if run is not None else None

        def task(progress: Callable[[int, int], None], _cancelled: Callable[[], bool]) -> Path:
            report_rows = [
                {"path": str(row.path), "score": row.score, "decision": decide(row.score, threshold) or None,
                 "heatmap": draw_thumbnail(row, threshold, alpha)}
                for row in rows
            ]
            progress(0, 0)
            return writer(report_rows, path, run_dir, threshold)

        worker = task_runner().start(task, self.tr("Writing Excel report"))
        worker.succeeded.connect(
            lambda out: self.view.context.show_status(self.tr("Report written to {path}").format(path=out)))
        worker.failed.connect(lambda message, details: show_error(self, self.tr("Export failed"), message, details))
        return worker


def render_preview(row: InspectionRow, threshold: float | None, alpha: float) -> QImage:
    """Read the image again and draw its heatmap at preview size; the map is the thumbnail's, enlarged."""
    image = fit_within(read_image(row.path), PREVIEW_SIDE)
    height, width = image.shape[:2]
    anomaly_map = cv2.resize(row.thumbnail_map.astype(np.float32) / 255.0, (width, height),
                             interpolation=cv2.INTER_LINEAR)
    return rgb_to_qimage(overlay(image, anomaly_map, threshold, alpha, row.score))


class VideoPanel(QWidget):
    """Inspection of a video file, camera or stream, with the newest frame, counters and a frame log."""

    def __init__(self, view: InspectView, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = view
        self.session: VideoSession | None = None
        self.last_stats: InspectorStats | None = None
        self.source_info: SourceInfo | None = None
        self.frames_shown = 0
        self._last_record: FrameRecord | None = None

        self._build_controls()
        self.display = ImageLabel(self.tr("Open a video file or a camera and press Start"))
        self.log = QTableWidget(0, 4)
        self.log.setHorizontalHeaderLabels([self.tr("Frame"), self.tr("Time (s)"), self.tr("Score"),
                                            self.tr("Decision")])
        self.log.verticalHeader().hide()
        self.log.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.log.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.log.setMinimumWidth(260)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.display)
        splitter.addWidget(self.log)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)

        self.frame_label = QLabel()
        self.stats_label = QLabel()
        status_row = QHBoxLayout()
        status_row.addWidget(self.frame_label, 1)
        status_row.addWidget(self.stats_label)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self._source_row)
        layout.addLayout(self._options_row)
        layout.addWidget(splitter, 1)
        layout.addLayout(status_row)

        self._timer = QTimer(self)
        self._timer.setInterval(STATS_INTERVAL_MS)
        self._timer.timeout.connect(self._update_stats)
        self._update_controls()

    def _build_controls(self) -> None:
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText(self.tr("Video file, camera number (0, 1, …) or stream URL"))
        self.file_button = QPushButton(self.tr("Video file…"))
        self.file_button.clicked.connect(self._choose_file)
        self.realtime_check = QCheckBox(self.tr("Real time"))
        self.realtime_check.setChecked(True)
        self.realtime_check.setToolTip(self.tr(
            "Play a video file at its frame rate and drop frames the model cannot keep up with, like a camera. "
            "Off: inspect every frame of the file as fast as the model allows."))
        self.start_button = QPushButton(self.tr("Start"))
        self.start_button.clicked.connect(self.start_from_input)
        self.pause_button = QPushButton(self.tr("Pause"))
        self.pause_button.clicked.connect(self.toggle_pause)
        self.step_button = QPushButton(self.tr("Step"))
        self.step_button.setToolTip(self.tr("Inspect one frame while paused"))
        self.step_button.clicked.connect(self.step)
        self.stop_button = QPushButton(self.tr("Stop"))
        self.stop_button.clicked.connect(self.stop)

        self._source_row = QHBoxLayout()
        self._source_row.addWidget(QLabel(self.tr("Source:")))
        self._source_row.addWidget(self.source_edit, 1)
        for widget in (self.file_button, self.realtime_check, self.start_button, self.pause_button,
                       self.step_button, self.stop_button):
            self._source_row.addWidget(widget)

        self.save_check = QCheckBox(self.tr("Save NG frames to"))
        self.save_check.toggled.connect(self._save_toggled)
        self.save_edit = QLineEdit()
        self.save_edit.setPlaceholderText(self.tr("Folder for NG frames, overlays and ng_frames.csv"))
        self.save_button = QPushButton(self.tr("Choose…"))
        self.save_button.clicked.connect(self._choose_save_folder)
        self.alpha_slider = QSlider(Qt.Orientation.Horizontal)
        self.alpha_slider.setRange(0, 100)
        self.alpha_slider.setValue(50)
        self.alpha_slider.setMaximumWidth(160)
        self.alpha_slider.setToolTip(self.tr("Opacity of the heatmap over the image"))
        self.alpha_slider.valueChanged.connect(lambda value: self.view.set_alpha(value / 100.0))

        self._options_row = QHBoxLayout()
        self._options_row.addWidget(self.save_check)
        self._options_row.addWidget(self.save_edit, 1)
        self._options_row.addWidget(self.save_button)
        self._options_row.addSpacing(12)
        self._options_row.addWidget(QLabel(self.tr("Heatmap opacity:")))
        self._options_row.addWidget(self.alpha_slider)

    # -- control ------------------------------------------------------------------------------------------

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.tr("Open video file"), "", self.tr(
            "Videos (*.mp4 *.avi *.mov *.mkv *.m4v *.wmv *.mpg *.mpeg);;All files (*)"))
        if path:
            self.source_edit.setText(path)

    def _choose_save_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Folder for NG frames"))
        if folder:
            self.save_edit.setText(folder)
            self.save_check.setChecked(True)
            self._save_toggled(True)

    def ng_folder(self) -> Path | None:
        text = self.save_edit.text().strip()
        return Path(text) if self.save_check.isChecked() and text else None

    def _save_toggled(self, checked: bool) -> None:
        if checked and not self.save_edit.text().strip():
            self._choose_save_folder()
            return
        if self.session is not None and self.session.running:
            try:
                self.session.set_ng_folder(self.ng_folder())
            except GlassError as exc:
                logger.error("Cannot save NG frames: %s", exc)
                show_error(self, self.tr("Cannot save NG frames"), str(exc))
                self.save_check.setChecked(False)

    def start_from_input(self) -> None:
        text = self.source_edit.text().strip()
        if not text:
            show_error(self, self.tr("No source"), self.tr(
                "Enter a video file, a camera number such as 0, or a stream URL, then press Start."))
            return
        self.start(text, self.realtime_check.isChecked())

    def start(self, source: str | int | Path, realtime: bool) -> None:
        """Load the run if needed, then open `source` and inspect its frames."""
        if self.is_running() or self.view.images_panel.is_busy():
            return
        self.view.with_predictor(lambda predictor: self._start_session(predictor, source, realtime))

    def _start_session(self, predictor: Predictor, source: str | int | Path, realtime: bool) -> None:
        self.log.setRowCount(0)
        self.frames_shown = 0
        self.last_stats = None
        self.source_info = None
        self._last_record = None
        self.display.set_image(None)
        self.frame_label.setText(self.tr("Opening {source}…").format(source=source))
        self.stats_label.clear()

        session = VideoSession(predictor, self.view.threshold(), self.view.alpha, self)
        session.opened.connect(self._on_opened)
        session.frame_ready.connect(self._on_frame_ready)
        session.failed.connect(self._on_failed)
        session.finished.connect(self._on_finished)
        self.session = session
        session.start(source, realtime, self.ng_folder())
        self._timer.start()
        self._update_controls()
        self.view.update_busy()

    def toggle_pause(self) -> None:
        if self.session is None:
            return
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()
        self._update_controls()

    def step(self) -> None:
        if self.session is not None:
            self.session.step()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.stop_button.setEnabled(False)

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.shutdown()

    def is_running(self) -> bool:
        return self.session is not None and self.session.running

    def set_threshold(self, threshold: float) -> None:
        if self.session is not None:
            self.session.set_threshold(threshold)

    def set_alpha(self, alpha: float) -> None:
        if self.session is not None:
            self.session.set_alpha(alpha)

    # -- session signals ----------------------------------------------------------------------------------

    def _on_opened(self, info: SourceInfo) -> None:
        self.source_info = info
        mode = self.tr("real time") if info.realtime else self.tr("every frame")
        self.frame_label.setText(self.tr("Inspecting {name} ({mode})").format(name=info.name, mode=mode))

    def _on_frame_ready(self) -> None:
        if self.session is None:
            return
        frame, records = self.session.take_frames()
        self._add_log_rows(records)
        if frame is not None:
            self._show_frame(frame)

    def _show_frame(self, frame: DisplayFrame) -> None:
        self.frames_shown += 1
        self._last_record = frame.record
        self.display.set_image(frame.image)
        record = frame.record
        decision = record_decision(record)
        self.frame_label.setText(self.tr("Frame {index} · {time:.2f} s · score {score:.4f} · {decision}").format(
            index=record.index, time=record.timestamp, score=record.score, decision=decision_label(decision)))

    def _add_log_rows(self, records: list[FrameRecord]) -> None:
        for record in records:
            self.log.insertRow(0)
            decision = record_decision(record)
            values = (str(record.index), f"{record.timestamp:.2f}", f"{record.score:.4f}", decision_label(decision))
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                if column == 3 and decision:
                    item.setForeground(NG_COLOUR if decision == "NG" else OK_COLOUR)
                self.log.setItem(0, column, item)
        if self.log.rowCount() > LOG_ROWS:
            self.log.setRowCount(LOG_ROWS)

    def _on_failed(self, message: str) -> None:
        show_error(self, self.tr("Video inspection failed"), message)

    def _on_finished(self, stats: InspectorStats) -> None:
        self._on_frame_ready()
        self._timer.stop()
        self.last_stats = stats
        self._show_stats(stats)
        if stats.error is None and stats.read:
            self.view.context.show_status(self.tr("Video inspection ended: {processed} frames inspected, "
                                                  "{dropped} dropped.").format(processed=stats.processed,
                                                                               dropped=stats.dropped))
        self._update_controls()
        self.view.update_busy()

    def _update_stats(self) -> None:
        if self.session is not None:
            stats = self.session.stats()
            if stats is not None:
                self._show_stats(stats)

    def _show_stats(self, stats: InspectorStats) -> None:
        fps = self.tr("{value:.1f} fps").format(value=stats.fps) if stats.fps else self.tr("– fps")
        if stats.source_fps:
            fps += self.tr(" (source {value:.1f} fps)").format(value=stats.source_fps)
        text = self.tr("{fps} · inspected {processed} · dropped {dropped} · NG {ng}").format(
            fps=fps, processed=stats.processed, dropped=stats.dropped, ng=stats.ng)
        if stats.saved:
            text += self.tr(" · saved {saved}").format(saved=stats.saved)
        if stats.paused:
            text += self.tr(" · paused")
        self.stats_label.setText(text)

    def _update_controls(self) -> None:
        running = self.is_running()
        self.start_button.setEnabled(not running)
        self.source_edit.setEnabled(not running)
        self.file_button.setEnabled(not running)
        self.realtime_check.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.pause_button.setText(self.tr("Resume") if running and self.session.paused else self.tr("Pause"))
        self.step_button.setEnabled(running and self.session.paused)
        self.stop_button.setEnabled(running)


# ----------------------------------------------------------------------------------------------------------
# The view


class InspectView(StudioView):
    """Scores images, folders, videos and cameras with a trained run and its threshold."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self.predictor: Predictor | None = None
        self._predictor_path: Path | None = None
        self._loader: Worker | None = None
        self._after_load: list[Callable[[Predictor], None]] = []
        self.alpha = 0.5

        self.run_selector = RunSelector(context)
        self.images_panel = ImagesPanel(self)
        self.video_panel = VideoPanel(self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.images_panel, self.tr("Images"))
        self.tabs.addTab(self.video_panel, self.tr("Video and camera"))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.run_selector)
        layout.addWidget(self.tabs, 1)

        self.run_selector.run_changed.connect(self._run_changed)
        self.run_selector.threshold_changed.connect(self._threshold_changed)
        context.project_changed.connect(lambda _project: self.run_selector.refresh())
        context.runs_changed.connect(self.run_selector.refresh)
        context.category_changed.connect(lambda _category: self.run_selector.refresh())
        self.run_selector.refresh()
        self.update_busy()

    def activated(self) -> None:
        self.run_selector.refresh()

    def save_state(self) -> None:
        self.video_panel.shutdown()
        self.images_panel.cancel()

    def threshold(self) -> float:
        return self.run_selector.threshold()

    def set_alpha(self, alpha: float) -> None:
        self.alpha = alpha
        self.images_panel.set_alpha(alpha)
        self.video_panel.set_alpha(alpha)

    def _threshold_changed(self, threshold: float) -> None:
        self.images_panel.set_threshold(threshold)
        self.video_panel.set_threshold(threshold)

    def _run_changed(self, path: Path | None) -> None:
        if path != self._predictor_path:
            self.predictor = None
            self._predictor_path = None
        self.update_busy()

    def update_busy(self) -> None:
        """Allow one job at a time: the images and the video share the loaded model."""
        busy = self.images_panel.is_busy() or self.video_panel.is_running() or self._loader is not None
        has_run = self.run_selector.run_path() is not None
        self.run_selector.run_combo.setEnabled(not busy)
        self.run_selector.browse_button.setEnabled(not busy)
        self.images_panel.set_inputs_enabled(not busy and has_run)
        self.video_panel.start_button.setEnabled(not busy and has_run)

    def with_predictor(self, callback: Callable[[Predictor], None]) -> None:
        """Call `callback(predictor)` with the selected run's model, loading it in a worker first if needed."""
        path = self.run_selector.run_path()
        if path is None:
            show_error(self, self.tr("No run selected"), self.tr("Choose a trained run or open a run folder first."))
            return
        if self.predictor is not None and self._predictor_path == path:
            callback(self.predictor)
            return
        self._after_load.append(callback)
        if self._loader is not None:
            return

        def task(_progress: Callable[[int, int], None], _cancelled: Callable[[], bool]) -> Predictor:
            return Predictor(path)

        self._loader = task_runner().start(task, self.tr("Loading run"))
        self._loader.succeeded.connect(lambda predictor: self._loaded(path, predictor))
        self._loader.failed.connect(self._load_failed)
        self._loader.finished.connect(self._load_finished)
        self.context.show_status(self.tr("Loading run {name}…").format(name=path.name), 0)
        self.update_busy()

    def _loaded(self, path: Path, predictor: Predictor) -> None:
        self.predictor = predictor
        self._predictor_path = path
        self.context.show_status(self.tr("Run {name} loaded ({device}).").format(name=path.name,
                                                                                 device=predictor.device))

    def _load_failed(self, message: str, details: str) -> None:
        self._after_load.clear()
        show_error(self, self.tr("Run not loaded"), message, details)

    def _load_finished(self) -> None:
        self._loader = None
        callbacks, self._after_load = self._after_load, []
        self.update_busy()
        if self.predictor is not None:
            for callback in callbacks:
                callback(self.predictor)


register_view("inspect", QT_TRANSLATE_NOOP("views", "Inspect"), InspectView, order=50)


# ----------------------------------------------------------------------------------------------------------
# Screenshots


def prepare_screenshot_state(view: InspectView, run_dir: Path | None = None,
                             images: Sequence[Path] | None = None) -> bool:
    """Fill the view with results for a screenshot, synchronously in the GUI thread.

    Uses `run_dir`, else the newest project run that has a checkpoint, and scores `images`, else the
    images listed in the run's scores.csv. Returns False when there is no run or no image to show.
    """
    view.run_selector.refresh()
    if run_dir is not None:
        view.run_selector.select_path(Path(run_dir))
    path = view.run_selector.run_path()
    if path is None:
        logger.info("No run to show in the Inspect view screenshot")
        return False

    try:
        predictor = Predictor(path)
        if images is None:
            run = view.run_selector.run_folder()
            rows = run.read_scores() if run is not None and run.scores_path.is_file() else []
            images = [Path(row["path"]) for row in rows if Path(row["path"]).is_file()]
        if not images:
            logger.info("No images to show in the Inspect view screenshot")
            return False
        view.predictor, view._predictor_path = predictor, path
        panel = view.images_panel
        panel.model.clear()
        outcome = inspect_files(predictor, list(images), panel.model.add_rows, lambda _done, _total: None,
                                lambda: False)
    except GlassError as exc:
        logger.error("Inspect view screenshot not prepared: %s", exc)
        return False

    panel.last_outcome = outcome
    panel._update_summary()
    panel._update_actions()
    panel.table.sortByColumn(InspectionModel.SCORE, Qt.SortOrder.DescendingOrder)
    panel.select_row(0)
    row = panel.proxy.data(panel.proxy.index(0, 0), RowRole)
    panel.preview.set_image(render_preview(row, panel.model.threshold, panel.model.alpha))
    view.tabs.setCurrentWidget(panel)
    return True
