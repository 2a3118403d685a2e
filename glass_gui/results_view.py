"""The Results view: per-image results with heatmaps, the OK/NG threshold, curves, distributions, comparisons.

Everything shown is read from the run folder (glass_engine.runs) and computed by the engine: the confusion
matrix by `evaluation.confusion_at`, each image's decision by `reports.decide` (score >= threshold is NG),
maps in image geometry by `Preprocessor.map_to_original`. The threshold that the operator sets is saved
with the run (`RunFolder.set_user_threshold`), where inspection and reports read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QT_TRANSLATE_NOOP,
    QAbstractTableModel,
    QCoreApplication,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QCloseEvent, QColor, QIcon, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from glass_engine import evaluation, reports
from glass_engine.config import GlassConfig
from glass_engine.data import Preprocessor, read_image, read_mask
from glass_engine.errors import GlassError
from glass_engine.runs import RunFolder
from glass_engine.store import Project, RunRecord
from glass_gui.errors import show_error
from glass_gui.plots import (
    DEFECT_BRUSH,
    GOOD_BRUSH,
    CurveSet,
    HeatmapViewer,
    histogram_edges,
    make_plot_widget,
    mask_contours,
)
from glass_gui.thumbnails import ThumbnailLoader
from glass_gui.train_worker import OVERRIDE_MODES, distribution_overrides, set_distribution_override
from glass_gui.views import StudioContext, StudioView, register_view, titled_box
from glass_gui.workers import run_with_progress

logger = logging.getLogger(__name__)

SLIDER_STEPS = 1000
SAVE_DELAY_MS = 600
"""The operator's threshold is saved this long after the last change, so dragging writes once."""
FILTERS = ("all", "fp", "fn", "wrong", "good", "defect")
COMPARE_METRICS = {
    "image_auroc": QT_TRANSLATE_NOOP("results", "Image AUROC"),
    "image_ap": QT_TRANSLATE_NOOP("results", "Image AP"),
    "pixel_auroc": QT_TRANSLATE_NOOP("results", "Pixel AUROC"),
    "pixel_ap": QT_TRANSLATE_NOOP("results", "Pixel AP"),
    "pixel_aupro": QT_TRANSLATE_NOOP("results", "AUPRO"),
    "pixel_pro_official": QT_TRANSLATE_NOOP("results", "PRO (official)"),
    "threshold": QT_TRANSLATE_NOOP("results", "Threshold in force"),
    "best_epoch": QT_TRANSLATE_NOOP("results", "Selected epoch"),
    "selection_rule": QT_TRANSLATE_NOOP("results", "Selection rule"),
    "distribution_mode": QT_TRANSLATE_NOOP("results", "Distribution"),
}
DISTRIBUTION_FIELDS = ("points", "radius", "side_x", "side_y", "l1_density", "l2_density")
GRID_ICON = 112


# --------------------------------------------------------------------------------------------------------
# Data of one run


@dataclass
class RunResults:
    """The result files of one finished run, loaded for display."""

    record: RunRecord
    folder: RunFolder
    rows: list[dict[str, Any]]
    scores: np.ndarray
    labels: np.ndarray
    metrics: dict[str, Any]
    curves: dict[str, Any]
    config: GlassConfig
    image_ids: list[int | None]
    """Project image id of each row, None for an image the project does not contain."""
    maps: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, project: Project, record: RunRecord) -> "RunResults":
        folder = RunFolder(record.run_dir)
        rows = folder.read_scores()
        ids = {str(image.path): image.id for image in project.images(category=record.category, order="id")}
        maps = None
        notes = []
        if folder.maps_path.is_file():
            maps = np.load(folder.maps_path, mmap_mode="r")
        else:
            notes.append(_tr("This run kept no anomaly maps (run.save_maps was off)."))
        return cls(
            record=record,
            folder=folder,
            rows=rows,
            scores=np.array([row["score"] for row in rows], dtype=np.float64),
            labels=np.array([row["label"] for row in rows], dtype=np.int64),
            metrics=folder.read_metrics() if folder.metrics_path.is_file() else {},
            curves=folder.read_curves(),
            config=folder.read_config(),
            image_ids=[ids.get(str(row["path"])) for row in rows],
            maps=maps,
            notes=notes,
        )

    def f1_threshold(self) -> float | None:
        value = self.metrics.get("threshold")
        return None if value is None else float(value)

    def threshold(self) -> float | None:
        return self.folder.threshold()

    def preprocessor(self) -> Preprocessor:
        data = self.config.data
        return Preprocessor(data.image_size, data.resize_policy, data.crop_ratio)

    def original_map(self, row: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Return the anomaly map of row `row` in the geometry of its image (H, W), or None without maps."""
        index = self.rows[row].get("map_index")
        if self.maps is None or index is None:
            return None
        return self.preprocessor().map_to_original(np.asarray(self.maps[index], dtype=np.float32), shape)


def _tr(text: str) -> str:
    """Translate text of code outside widgets (context `results`)."""
    return QCoreApplication.translate("results", text)


# --------------------------------------------------------------------------------------------------------
# Per-image table


class ResultsTableModel(QAbstractTableModel):
    """Rows of scores.csv: image, true label, defect type, score, decision, and a card column for the grid."""

    COLUMNS = (
        QT_TRANSLATE_NOOP("results", "Image"),
        QT_TRANSLATE_NOOP("results", "True label"),
        QT_TRANSLATE_NOOP("results", "Defect type"),
        QT_TRANSLATE_NOOP("results", "Score"),
        QT_TRANSLATE_NOOP("results", "Decision"),
        QT_TRANSLATE_NOOP("results", "Card"),
    )
    CARD_COLUMN = 5
    SortRole = Qt.ItemDataRole.UserRole + 1
    KindRole = Qt.ItemDataRole.UserRole + 2
    """fp, fn, tp or tn of a row at the current threshold, for the filters."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.results: RunResults | None = None
        self.threshold: float | None = None
        self._thumbnails: dict[int, QIcon] = {}
        self.loader: ThumbnailLoader | None = None

    def set_results(self, results: RunResults | None, loader: ThumbnailLoader | None) -> None:
        self.beginResetModel()
        self.results = results
        self.loader = loader
        self._thumbnails = {}
        self.threshold = None if results is None else results.threshold()
        self.endResetModel()

    def set_threshold(self, threshold: float | None) -> None:
        self.threshold = threshold
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 4), self.index(self.rowCount() - 1, self.CARD_COLUMN))

    def thumbnail_ready(self, row: int, image: QImage) -> None:
        # A QIcon, not a QPixmap: views scale icons to their iconSize but draw pixmaps at their own size.
        self._thumbnails[row] = QIcon(QPixmap.fromImage(image))
        index = self.index(row, self.CARD_COLUMN)
        self.dataChanged.emit(self.index(row, 0), index, [Qt.ItemDataRole.DecorationRole])

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() or self.results is None else len(self.results.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return _tr(self.COLUMNS[section])
        return None

    def decision(self, row: int) -> str | None:
        return reports.decide(self.results.rows[row]["score"], self.threshold)

    def kind(self, row: int) -> str | None:
        decision = self.decision(row)
        if decision is None:
            return None
        defective = self.results.rows[row]["label"] == 1
        if decision == "NG":
            return "tp" if defective else "fp"
        return "fn" if defective else "tn"

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.results is None:
            return None
        row, column = index.row(), index.column()
        record = self.results.rows[row]
        if role == self.KindRole:
            return self.kind(row)
        if role in (Qt.ItemDataRole.DisplayRole, self.SortRole):
            return self._display(record, row, column, sort=role == self.SortRole)
        if role == Qt.ItemDataRole.DecorationRole and column in (0, self.CARD_COLUMN):
            return self._decoration(row, record)
        if role == Qt.ItemDataRole.BackgroundRole and column in (4, self.CARD_COLUMN):
            kind = self.kind(row)
            if kind in ("fp", "fn"):
                return QBrush(QColor(255, 205, 210))
            if kind in ("tp", "tn"):
                return QBrush(QColor(200, 230, 201))
        if role == Qt.ItemDataRole.SizeHintRole and column == self.CARD_COLUMN:
            # Fixed, so that the grid does not size its cells before the thumbnails arrive.
            return QSize(GRID_ICON + 32, GRID_ICON + 40)
        if role == Qt.ItemDataRole.ToolTipRole:
            return str(record["path"])
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, record: dict[str, Any], row: int, column: int, sort: bool) -> Any:
        name = Path(str(record["path"])).name
        label = _tr("defect") if record["label"] == 1 else _tr("good")
        if column == 0:
            return name
        if column == 1:
            return label
        if column == 2:
            return record["defect_type"] if record["label"] == 1 else ""
        if column == 3:
            return record["score"] if sort else f"{record['score']:.4f}"
        if column == 4:
            return self.decision(row) or "–"
        if sort:
            return record["score"]
        return f"{record['score']:.3f} {self.decision(row) or ''} · {label}\n{name}"

    def _decoration(self, row: int, record: dict[str, Any]) -> QIcon | None:
        icon = self._thumbnails.get(row)
        if icon is None and self.loader is not None:
            self.loader.request(row, Path(str(record["path"])))
        return icon


class ResultsFilterProxy(QSortFilterProxyModel):
    """Shows all rows, or only false positives, false negatives, wrong decisions, good or defective images."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.mode = "all"
        self.setSortRole(ResultsTableModel.SortRole)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.refilter()

    def refilter(self) -> None:
        """Apply the filter again, after the threshold changed the rows' decisions."""
        # Qt 6.10 deprecates invalidateFilter in favour of the begin/end pair, which older releases lack.
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if self.mode == "all":
            return True
        model = self.sourceModel()
        kind = model.data(model.index(source_row, 0, source_parent), ResultsTableModel.KindRole)
        label = model.results.rows[source_row]["label"]
        accepted = {
            "fp": kind == "fp",
            "fn": kind == "fn",
            "wrong": kind in ("fp", "fn"),
            "good": label == 0,
            "defect": label == 1,
        }
        return accepted[self.mode]


# --------------------------------------------------------------------------------------------------------
# Threshold


class ThresholdPanel(QWidget):
    """Histogram of good and defective scores with a threshold line, a slider and the confusion matrix.

    Signal threshold_changed(float) follows every move; the view saves the value after SAVE_DELAY_MS.
    """

    threshold_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.results: RunResults | None = None
        self._range = (0.0, 1.0)
        self._updating = False
        self.threshold: float | None = None

        self.plot_widget = make_plot_widget(self.tr("Score histogram"), self.tr("score"), self.tr("images"))
        self.plot_widget.setMinimumHeight(180)
        plot = self.plot_widget.getPlotItem()
        plot.addLegend(offset=(-5, 5), labelTextColor="#222", brush=pg.mkBrush(255, 255, 255, 200))
        self.good_item = plot.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=GOOD_BRUSH,
                                   pen=pg.mkPen((46, 125, 50), width=1), name=self.tr("good"))
        self.defect_item = plot.plot([0, 1], [0], stepMode="center", fillLevel=0, brush=DEFECT_BRUSH,
                                     pen=pg.mkPen((198, 40, 40), width=1), name=self.tr("defective"))
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#111", width=2),
                                    hoverPen=pg.mkPen("#1565c0", width=3))
        plot.addItem(self.line)
        self.line.sigPositionChanged.connect(lambda line: self.set_threshold(float(line.value())))

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.valueChanged.connect(self._slider_moved)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setSingleStep(0.001)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self.set_threshold)
        self.f1_button = QPushButton(self.tr("F1-optimal"))
        self.f1_button.setToolTip(self.tr("Go back to the threshold with the best F1 on the test set."))
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)

        self.cells: dict[str, QLabel] = {}
        matrix = QGridLayout()
        matrix.addWidget(QLabel(self.tr("Predicted OK")), 0, 1, Qt.AlignmentFlag.AlignCenter)
        matrix.addWidget(QLabel(self.tr("Predicted NG")), 0, 2, Qt.AlignmentFlag.AlignCenter)
        matrix.addWidget(QLabel(self.tr("Actual good")), 1, 0)
        matrix.addWidget(QLabel(self.tr("Actual defect")), 2, 0)
        for key, row, column in (("tn", 1, 1), ("fp", 1, 2), ("fn", 2, 1), ("tp", 2, 2)):
            cell = QLabel("–")
            cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cell.setMinimumSize(70, 34)
            correct = key in ("tn", "tp")
            cell.setStyleSheet(f"background: {'#c8e6c9' if correct else '#ffcdd2'}; font-size: 14pt;"
                               "border-radius: 3px;")
            matrix.addWidget(cell, row, column)
            self.cells[key] = cell
        self.ratio_label = QLabel()

        controls = QHBoxLayout()
        controls.addWidget(QLabel(self.tr("Threshold")))
        controls.addWidget(self.spin)
        controls.addWidget(self.f1_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.slider)
        layout.addLayout(controls)
        layout.addWidget(self.source_label)
        matrix_box = QGroupBox(self.tr("Confusion matrix"))
        matrix_layout = QVBoxLayout(matrix_box)
        matrix_layout.addLayout(matrix)
        matrix_layout.addWidget(self.ratio_label)
        layout.addWidget(matrix_box)

    def set_results(self, results: RunResults | None) -> None:
        self.results = results
        if results is None or not len(results.scores):
            self.good_item.setData([0, 1], [0])
            self.defect_item.setData([0, 1], [0])
            self.threshold = None
            self._show_counts(None)
            return
        low, high = float(results.scores.min()), float(results.scores.max())
        margin = max((high - low) * 0.05, 1e-4)
        self._range = (max(0.0, low - margin), min(1.0, high + margin))
        bins = int(np.clip(np.sqrt(len(results.scores)) * 2, 10, 60))
        edges = histogram_edges(low, high, bins)
        good, _ = np.histogram(results.scores[results.labels == 0], bins=edges)
        defect, _ = np.histogram(results.scores[results.labels == 1], bins=edges)
        self.good_item.setData(edges, good)
        self.defect_item.setData(edges, defect)
        # Moving the line into its new bounds emits sigPositionChanged; that is not an operator's change.
        self._updating = True
        try:
            self.line.setBounds(self._range)
            self.spin.setRange(*self._range)
        finally:
            self._updating = False
        self.threshold = None
        self.plot_widget.getPlotItem().setXRange(*self._range, padding=0.02)
        threshold = results.threshold()
        self.set_threshold(threshold if threshold is not None else (low + high) / 2, emit=False)

    def set_threshold(self, threshold: float, emit: bool = True) -> None:
        if self._updating or self.results is None:
            return
        threshold = float(threshold)
        if threshold == self.threshold:
            return
        self.threshold = threshold
        self._updating = True
        try:
            low, high = self._range
            self.slider.setValue(int(round((threshold - low) / max(high - low, 1e-12) * SLIDER_STEPS)))
            self.spin.setValue(threshold)
            self.line.setValue(threshold)
        finally:
            self._updating = False
        self._show_counts(evaluation.confusion_at(self.results.scores, self.results.labels, threshold))
        self._show_source()
        if emit:
            self.threshold_changed.emit(threshold)

    def _slider_moved(self, value: int) -> None:
        low, high = self._range
        self.set_threshold(low + (high - low) * value / SLIDER_STEPS)

    def _show_source(self) -> None:
        f1_threshold = self.results.f1_threshold() if self.results is not None else None
        if f1_threshold is not None and f1_threshold == self.threshold:
            f1 = self.results.metrics.get("threshold_f1")
            text = self.tr("F1-optimal threshold (F1 {f1:.3f} on the test set).").format(f1=f1 or 0.0)
        else:
            text = self.tr("Operator threshold; inspection and reports use it.")
        self.source_label.setText(text)

    def _show_counts(self, counts: dict[str, Any] | None) -> None:
        for key, cell in self.cells.items():
            cell.setText("–" if counts is None else str(counts[key]))
        if counts is None:
            self.ratio_label.setText("")
            return

        def ratio(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        self.counts = counts
        self.ratio_label.setText(self.tr(
            "Precision {precision} · Recall {recall} · F1 {f1} · Accuracy {accuracy}\n"
            "False positives {fp} · False negatives {fn}").format(
            precision=ratio(counts["precision"]), recall=ratio(counts["recall"]), f1=ratio(counts["f1"]),
            accuracy=ratio(counts["accuracy"]), fp=counts["fp"], fn=counts["fn"]))


# --------------------------------------------------------------------------------------------------------
# Curves, distribution and comparison


class CurvesPanel(QWidget):
    """ROC, precision-recall and PRO curves of curves.json, with the areas from metrics.json in the legends."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.roc = make_plot_widget(self.tr("ROC"), self.tr("false positive rate"), self.tr("true positive rate"))
        self.pr = make_plot_widget(self.tr("Precision-recall"), self.tr("recall"), self.tr("precision"))
        self.pro = make_plot_widget(self.tr("Per-region overlap (PRO)"), self.tr("false positive rate"),
                                    self.tr("PRO"))
        self.sets = {name: CurveSet(widget.getPlotItem(), antialias=True) for name, widget in
                     (("roc", self.roc), ("pr", self.pr), ("pro", self.pro))}
        self.note = QLabel()
        self.note.setWordWrap(True)
        row = QHBoxLayout()
        for widget in (self.roc, self.pr, self.pro):
            widget.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1.02), padding=0.02)
            row.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(row, 1)
        layout.addWidget(self.note)

    def set_results(self, results: RunResults | None) -> None:
        for curve_set in self.sets.values():
            for curve in list(curve_set.curves.values()):
                curve_set.plot.removeItem(curve)
            curve_set.curves.clear()
            if curve_set.plot.legend is not None:
                curve_set.plot.legend.clear()
        if results is None:
            self.note.setText("")
            return
        metrics, curves = results.metrics, results.curves
        image, pixel = curves.get("image") or {}, curves.get("pixel") or {}

        def area(key: str) -> str:
            value = metrics.get(key)
            return "n/a" if value is None else f"{value:.3f}"

        if image.get("roc"):
            self.sets["roc"].set_data(self.tr("image, AUROC {area}").format(area=area("image_auroc")),
                                      image["roc"]["fpr"], image["roc"]["tpr"])
        if pixel.get("roc"):
            self.sets["roc"].set_data(self.tr("pixel, AUROC {area}").format(area=area("pixel_auroc")),
                                      pixel["roc"]["fpr"], pixel["roc"]["tpr"])
        if image.get("pr"):
            self.sets["pr"].set_data(self.tr("image, AP {area}").format(area=area("image_ap")),
                                     image["pr"]["recall"], image["pr"]["precision"])
        if pixel.get("pr"):
            self.sets["pr"].set_data(self.tr("pixel, AP {area}").format(area=area("pixel_ap")),
                                     pixel["pr"]["recall"], pixel["pr"]["precision"])
        if pixel.get("pro"):
            limit = evaluation.PRO_FPR_LIMIT
            self.sets["pro"].set_data(
                self.tr("AUPRO up to FPR {limit:.0%}: {area}").format(limit=limit, area=area("pixel_aupro")),
                pixel["pro"]["fpr"], pixel["pro"]["pro"])
            self.pro.getPlotItem().setXRange(0, limit, padding=0.02)
        missing = [name for name, present in ((self.tr("image curves"), bool(image)),
                                               (self.tr("pixel curves"), bool(pixel))) if not present]
        self.note.setText(self.tr("Not available for this run: {names} (the test set lacks good or defective "
                                  "images, or masks).").format(names=", ".join(missing)) if missing else "")


class DistributionPanel(QWidget):
    """Per category: the judged distribution, its FFT quantities and spectrum, and the override for training."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context
        headers = [self.tr("Category"), self.tr("Judged mode"), self.tr("Source"), self.tr("Points"),
                   self.tr("Radius"), self.tr("Side x"), self.tr("Side y"), self.tr("L1 density"),
                   self.tr("L2 density"), self.tr("From run"), self.tr("Next training")]
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._show_spectrum)

        self.spectrum = QLabel(self.tr("Select a category to see the spectrum of its mean training image."))
        self.spectrum.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.spectrum.setMinimumSize(200, 120)
        self.spectrum.setWordWrap(True)
        self.spectra: dict[str, Path] = {}
        self._spectrum_pixmap = QPixmap()
        note = QLabel(self.tr(
            "Manifold or hypersphere decides how GLASS shapes its synthetic anomaly features. The judgement "
            "comes from the spectrum of the mean training image. The figure shows the mean image and, beside "
            "it, the spectrum points above the threshold. “Next training” forces a mode for the next training "
            "of the category."))
        note.setWordWrap(True)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.spectrum)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addWidget(splitter, 1)

    def refresh(self) -> None:
        project = self.context.project
        self.table.setRowCount(0)
        self.spectra = {}
        if project is None:
            return
        overrides = distribution_overrides(project)
        categories = project.categories()
        self.table.setRowCount(len(categories))
        for row, category in enumerate(categories):
            done = [run for run in project.runs(category) if run.status == "done"]
            distribution: dict[str, Any] = {}
            run_name = "–"
            if done:
                folder = RunFolder(done[-1].run_dir)
                distribution = folder.read_distribution()
                run_name = done[-1].name
                if folder.spectrum_path.is_file():
                    self.spectra[category] = folder.spectrum_path
            values = [category, distribution.get("mode", self.tr("not judged yet")),
                      str(distribution.get("source", "–"))]
            for key in DISTRIBUTION_FIELDS:
                values.append(_format_value(distribution.get(key)))
            values.append(run_name)
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
            combo = QComboBox()
            labels = {"auto": self.tr("auto (judge again)"), "manifold": self.tr("manifold"),
                      "hypersphere": self.tr("hypersphere")}
            for mode in OVERRIDE_MODES:
                combo.addItem(labels[mode], mode)
            combo.setCurrentIndex(OVERRIDE_MODES.index(overrides.get(category, "auto")))
            combo.setEnabled(not project.read_only)
            combo.currentIndexChanged.connect(
                lambda _index, c=category, box=combo: self._override_changed(c, box.currentData()))
            self.table.setCellWidget(row, len(values), combo)
            if category == self.context.category:
                self.table.selectRow(row)

    def override_combo(self, category: str) -> QComboBox | None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == category:
                return self.table.cellWidget(row, self.table.columnCount() - 1)
        return None

    def _override_changed(self, category: str, mode: str) -> None:
        project = self.context.project
        if project is None:
            return
        try:
            set_distribution_override(project, category, mode)
        except GlassError as exc:
            show_error(self, self.tr("Cannot save the override"), str(exc))
            return
        self.context.show_status(self.tr("Next training of {category}: distribution {mode}")
                                 .format(category=category, mode=mode))

    def _show_spectrum(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        category = self.table.item(rows[0].row(), 0).text()
        path = self.spectra.get(category)
        if path is None:
            self._spectrum_pixmap = QPixmap()
            self.spectrum.setPixmap(QPixmap())
            self.spectrum.setText(self.tr("No spectrum for {category}: no finished run judged it by FFT.")
                                  .format(category=category))
            return
        self._spectrum_pixmap = QPixmap(str(path))
        self._scale_spectrum()

    def _scale_spectrum(self) -> None:
        if self._spectrum_pixmap.isNull():
            return
        self.spectrum.setPixmap(self._spectrum_pixmap.scaled(
            self.spectrum.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._scale_spectrum()


def flatten_config(payload: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, values in payload.items() for key, value in values.items()}


def config_differences(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Return, for every dotted key whose value is not the same in all `configs`, the values in order."""
    flat = [flatten_config(config) for config in configs]
    keys = sorted({key for values in flat for key in values})
    differing = {}
    for key in keys:
        values = [values.get(key) for values in flat]
        if any(value != values[0] for value in values[1:]):
            differing[key] = values
    return differing


class ComparePanel(QWidget):
    """Metrics of the checked runs side by side, and the configuration keys in which they differ."""

    export_requested = Signal(list)

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context
        self.run_list = QListWidget()
        self.run_list.itemChanged.connect(lambda _item: self.update_tables())
        self.metrics_table = QTableWidget()
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.diff_table = QTableWidget()
        self.diff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.export_button = QPushButton(self.tr("Export Excel report of checked runs…"))
        self.export_button.clicked.connect(lambda: self.export_requested.emit(self.checked_runs()))

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel(self.tr("Finished runs")))
        left_layout.addWidget(self.run_list, 1)
        left_layout.addWidget(self.export_button)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(titled_box(self.tr("Metrics"), self.metrics_table))
        self.diff_note = QLabel()
        diff_box = titled_box(self.tr("Settings that differ"), self.diff_table)
        diff_box.layout().insertWidget(0, self.diff_note)
        right.addWidget(diff_box)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 4)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def refresh(self) -> None:
        project = self.context.project
        checked = {run.id for run in self.checked_runs()}
        self.run_list.blockSignals(True)
        self.run_list.clear()
        if project is not None:
            runs = [run for run in project.runs() if run.status == "done"]
            latest = {run.category: run.id for run in runs}
            for run in reversed(runs):
                item = QListWidgetItem(f"{run.category} — {run.name}")
                item.setData(Qt.ItemDataRole.UserRole, run)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                is_checked = run.id in checked if checked else run.id in latest.values()
                item.setCheckState(Qt.CheckState.Checked if is_checked else Qt.CheckState.Unchecked)
                self.run_list.addItem(item)
        self.run_list.blockSignals(False)
        self.update_tables()

    def checked_runs(self) -> list[RunRecord]:
        return [self.run_list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.run_list.count())
                if self.run_list.item(row).checkState() == Qt.CheckState.Checked]

    def set_checked(self, run_ids: list[int]) -> None:
        for row in range(self.run_list.count()):
            item = self.run_list.item(row)
            checked = item.data(Qt.ItemDataRole.UserRole).id in run_ids
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def update_tables(self) -> None:
        runs = self.checked_runs()
        self.export_button.setEnabled(bool(runs))
        headers = [self.tr("Category"), self.tr("Run"), *(_tr(title) for title in COMPARE_METRICS.values())]
        self.metrics_table.clear()
        self.metrics_table.setColumnCount(len(headers))
        self.metrics_table.setHorizontalHeaderLabels(headers)
        self.metrics_table.setRowCount(len(runs))
        for row, run in enumerate(runs):
            metrics = dict(run.metrics or {})
            if run.threshold is not None:
                metrics["threshold"] = run.threshold
            if metrics.get("best_epoch") is not None:
                metrics["best_epoch"] = int(metrics["best_epoch"]) + 1
            values = [run.category, run.name] + [_format_value(metrics.get(key)) for key in COMPARE_METRICS]
            for column, value in enumerate(values):
                self.metrics_table.setItem(row, column, QTableWidgetItem(value))
        self.metrics_table.resizeColumnsToContents()

        configs = []
        for run in runs:
            try:
                configs.append(GlassConfig.from_yaml(run.config_yaml).to_dict() if run.config_yaml else {})
            except GlassError as exc:
                logger.warning("Run %s has an unreadable configuration: %s", run.name, exc)
                configs.append({})
        differences = config_differences(configs) if len(configs) > 1 else {}
        if len(runs) < 2:
            self.diff_note.setText(self.tr("Check two or more runs to see the settings in which they differ."))
        elif not differences:
            self.diff_note.setText(self.tr("The checked runs have the same settings."))
        else:
            self.diff_note.setText(self.tr("{count} settings differ; all others are equal.").format(
                count=len(differences)))
        self.diff_table.clear()
        self.diff_table.setColumnCount(len(runs))
        self.diff_table.setHorizontalHeaderLabels([f"{run.category}\n{run.name}" for run in runs])
        self.diff_table.setRowCount(len(differences))
        self.diff_table.setVerticalHeaderLabels(list(differences))
        for row, values in enumerate(differences.values()):
            for column, value in enumerate(values):
                self.diff_table.setItem(row, column, QTableWidgetItem(_format_value(value)))
        self.diff_table.resizeColumnsToContents()


def _format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


# --------------------------------------------------------------------------------------------------------
# The view


class ResultsView(StudioView):
    """Shows the results of the selected run of the current category."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self.results: RunResults | None = None
        self._current_row: int | None = None
        self._loader: ThumbnailLoader | None = None
        self._pending_threshold: float | None = None
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_threshold)

        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(30)
        self.run_combo.currentIndexChanged.connect(lambda _index: self._run_selected())
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.export_button = QPushButton(self.tr("Export Excel report…"))
        self.export_button.clicked.connect(lambda: self.export_report([self.results.record] if self.results else []))

        self.model = ResultsTableModel(self)
        self.proxy = ResultsFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.grid_proxy = ResultsFilterProxy(self)
        self.grid_proxy.setSourceModel(self.model)
        self.grid_proxy.sort(ResultsTableModel.CARD_COLUMN, Qt.SortOrder.DescendingOrder)

        self.threshold_panel = ThresholdPanel()
        self.threshold_panel.threshold_changed.connect(self._threshold_changed)
        self.threshold_panel.f1_button.clicked.connect(self.use_f1_threshold)
        self._build_image_lists()
        self.viewer = HeatmapViewer()
        self._build_proposal_controls()
        self.curves = CurvesPanel()
        self.distribution = DistributionPanel(context)
        self.compare = ComparePanel(context)
        self.compare.export_requested.connect(self.export_report)

        images_tab = QSplitter(Qt.Orientation.Horizontal)
        images_tab.addWidget(self.threshold_panel)
        middle = QSplitter(Qt.Orientation.Vertical)
        middle.addWidget(self.list_tabs)
        middle.addWidget(self.viewer)
        middle.setSizes([330, 520])
        images_tab.addWidget(middle)
        images_tab.setStretchFactor(0, 2)
        images_tab.setStretchFactor(1, 5)

        self.tabs = QTabWidget()
        self.tabs.addTab(images_tab, self.tr("Images and threshold"))
        self.tabs.addTab(self.curves, self.tr("Curves"))
        self.tabs.addTab(self.distribution, self.tr("Distribution"))
        self.tabs.addTab(self.compare, self.tr("Compare runs"))

        header = QHBoxLayout()
        header.addWidget(QLabel(self.tr("Run:")))
        header.addWidget(self.run_combo)
        header.addWidget(self.summary_label, 1)
        header.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(header)
        layout.addWidget(self.tabs, 1)

        context.project_changed.connect(lambda _project: self.refresh())
        context.category_changed.connect(lambda _category: self.refresh())
        context.runs_changed.connect(self.refresh)
        self._update_export_action()
        self.refresh()

    def _build_image_lists(self) -> None:
        self.filter_combo = QComboBox()
        labels = {"all": self.tr("All images"), "fp": self.tr("False positives only"),
                  "fn": self.tr("False negatives only"), "wrong": self.tr("Wrong decisions"),
                  "good": self.tr("Good images"), "defect": self.tr("Defective images")}
        for key in FILTERS:
            self.filter_combo.addItem(labels[key], key)
        self.filter_combo.currentIndexChanged.connect(lambda _index: self._filter_changed())
        self.count_label = QLabel()

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(3, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setColumnHidden(ResultsTableModel.CARD_COLUMN, True)
        self.table.setIconSize(QSize(28, 28))
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(
            lambda current, _previous: self._row_chosen(self.proxy.mapToSource(current)))

        self.grid = QListView()
        self.grid.setModel(self.grid_proxy)
        self.grid.setModelColumn(ResultsTableModel.CARD_COLUMN)
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(GRID_ICON, GRID_ICON))
        self.grid.setGridSize(QSize(GRID_ICON + 36, GRID_ICON + 44))
        self.grid.setSpacing(4)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setUniformItemSizes(True)
        self.grid.setWordWrap(True)
        self.grid.selectionModel().currentChanged.connect(
            lambda current, _previous: self._row_chosen(self.grid_proxy.mapToSource(current)))

        self.list_tabs = QTabWidget()
        self.list_tabs.addTab(self.table, self.tr("Table"))
        self.list_tabs.addTab(self.grid, self.tr("Grid by score"))
        top = QHBoxLayout()
        top.addWidget(self.filter_combo)
        top.addWidget(self.count_label, 1)
        self.list_tabs.setCornerWidget(self._wrap(top))

    def _build_proposal_controls(self) -> None:
        self._original_map: np.ndarray | None = None
        self._mask_level: float | None = None
        self._mask_level_follows = True
        self.mask_level_spin = QDoubleSpinBox()
        self.mask_level_spin.setRange(0.0, 1.0)
        self.mask_level_spin.setDecimals(4)
        self.mask_level_spin.setSingleStep(0.01)
        self.mask_level_spin.setKeyboardTracking(False)
        self.mask_level_spin.setToolTip(self.tr(
            "Anomaly-map level of the proposed mask (blue outline). It follows the threshold until you change "
            "it. The map is smoothed, so its peak is often below the image score: lower the level when the "
            "outline is empty."))
        self.mask_level_spin.valueChanged.connect(self._mask_level_edited)
        self.propose_button = QPushButton(self.tr("Propose mask…"))
        self.propose_button.setToolTip(self.tr(
            "Turn the anomaly map at the mask level into a mask and open it in the Annotate view for correction."))
        self.propose_button.clicked.connect(self.propose_mask)
        self.viewer.controls.addWidget(QLabel(self.tr("Mask level")))
        self.viewer.controls.addWidget(self.mask_level_spin)
        self.viewer.controls.addWidget(self.propose_button)

    def mask_level(self) -> float | None:
        """Return the map level of proposed masks: the threshold, unless the operator set another level."""
        return self._mask_level

    def set_mask_level(self, level: float | None, follows_threshold: bool = False) -> None:
        self._mask_level = level
        self._mask_level_follows = follows_threshold
        self.mask_level_spin.blockSignals(True)
        self.mask_level_spin.setValue(level or 0.0)
        self.mask_level_spin.blockSignals(False)
        self._show_proposal()

    def _mask_level_edited(self, value: float) -> None:
        self.set_mask_level(value)

    def _show_proposal(self) -> None:
        level = self._mask_level
        if self._original_map is None or level is None:
            self.viewer.set_proposal([])
            return
        self.viewer.set_proposal(mask_contours(self._original_map >= level))

    def _wrap(self, layout: QHBoxLayout) -> QWidget:
        widget = QWidget()
        layout.setContentsMargins(4, 0, 4, 0)
        widget.setLayout(layout)
        return widget

    # ------------------------------------------------------------------------------------------------------
    # Runs

    def refresh(self) -> None:
        """Reload the list of finished runs of the current category, keeping the selected run when possible."""
        project = self.context.project
        selected = self.results.record.id if self.results is not None else None
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        runs: list[RunRecord] = []
        if project is not None and self.context.category:
            runs = [run for run in project.runs(self.context.category) if run.status == "done"]
        for run in reversed(runs):
            auroc = (run.metrics or {}).get("image_auroc")
            text = run.name if auroc is None else self.tr("{name} (image AUROC {auroc:.3f})").format(
                name=run.name, auroc=auroc)
            self.run_combo.addItem(text, run.id)
        position = self.run_combo.findData(selected) if selected is not None else -1
        if position < 0 and runs:
            position = 0
        self.run_combo.setCurrentIndex(position)
        self.run_combo.blockSignals(False)
        if self.run_combo.currentData() != selected or selected is None:
            self._run_selected()
        self.distribution.refresh()
        self.compare.refresh()

    def select_run(self, run_id: int) -> bool:
        """Show run `run_id` (a finished run of the current category); return whether it is listed."""
        position = self.run_combo.findData(run_id)
        if position < 0:
            return False
        self.run_combo.setCurrentIndex(position)
        return True

    def _run_selected(self) -> None:
        self._flush_threshold()
        project = self.context.project
        run_id = self.run_combo.currentData()
        self.results = None
        if project is not None and run_id is not None:
            try:
                self.results = RunResults.load(project, project.run(run_id))
            except (GlassError, OSError, ValueError) as exc:
                logger.error("Cannot load the results of run %s: %s", run_id, exc)
                show_error(self, self.tr("Cannot show the run"), str(exc))
        self._show_results()

    def _show_results(self) -> None:
        results = self.results
        if self._loader is not None:
            self._loader.stop()
            self._loader.deleteLater()
            self._loader = None
        project = self.context.project
        if results is not None and project is not None:
            self._loader = ThumbnailLoader(project.thumbnails_dir, parent=self)
            self._loader.ready.connect(self.model.thumbnail_ready)
        self.model.set_results(results, self._loader)
        self.threshold_panel.set_results(results)
        self.model.set_threshold(self.threshold_panel.threshold)
        self.curves.set_results(results)
        self.viewer.clear()
        self._current_row = None
        self._original_map = None
        self.set_mask_level(self.threshold_panel.threshold, follows_threshold=True)
        self._update_summary()
        self._update_count()
        self._update_export_action()
        self.propose_button.setEnabled(False)
        if results is not None and self.proxy.rowCount():
            self.table.selectRow(0)

    def _update_summary(self) -> None:
        results = self.results
        if results is None:
            self.summary_label.setText(self.tr("No finished run for this category yet. Train one in the Train view.")
                                       if self.context.project is not None else "")
            return
        metrics = results.metrics

        def value(key: str) -> str:
            number = metrics.get(key)
            return "n/a" if number is None else f"{number:.3f}"

        text = self.tr("Image AUROC {image} · pixel AUROC {pixel} · AUPRO {aupro} · {mode} · selected epoch "
                       "{epoch} ({rule})").format(
            image=value("image_auroc"), pixel=value("pixel_auroc"), aupro=value("pixel_aupro"),
            mode=metrics.get("distribution_mode") or "–",
            epoch=(metrics.get("best_epoch") or 0) + 1, rule=metrics.get("selection_rule") or "–")
        if metrics.get("pretrained_backbone") is False:
            text += " · " + self.tr("RANDOM backbone weights: results are not meaningful")
        notes = " ".join(results.notes)
        self.summary_label.setText(text + (f"\n{notes}" if notes else ""))

    # ------------------------------------------------------------------------------------------------------
    # Threshold

    def _threshold_changed(self, threshold: float) -> None:
        self.model.set_threshold(threshold)
        self.proxy.refilter()
        self.grid_proxy.refilter()
        self._update_count()
        self._pending_threshold = threshold
        self._save_timer.start()
        if self._mask_level_follows:
            self.set_mask_level(threshold, follows_threshold=True)
        if self._current_row is not None:
            self._update_caption(self._current_row)

    def save_threshold(self) -> None:
        """Write the pending operator threshold into the run folder and the project."""
        threshold, self._pending_threshold = self._pending_threshold, None
        results, project = self.results, self.context.project
        if threshold is None or results is None or project is None or project.read_only:
            return
        try:
            results.folder.set_user_threshold(threshold)
            project.update_run(results.record.id, threshold=threshold)
        except (GlassError, OSError) as exc:
            logger.error("Cannot save the threshold of run %s: %s", results.folder.root, exc)
            show_error(self, self.tr("Cannot save the threshold"), str(exc))
            return
        logger.info("Saved threshold %.6f for run %s", threshold, results.folder.root)
        self.context.show_status(self.tr("Threshold {value:.4f} saved with the run").format(value=threshold))

    def _flush_threshold(self) -> None:
        if self._save_timer.isActive():
            self._save_timer.stop()
            self.save_threshold()

    def use_f1_threshold(self) -> None:
        """Drop the operator's threshold, so the F1-optimal one applies again."""
        results, project = self.results, self.context.project
        if results is None or results.f1_threshold() is None:
            return
        self._save_timer.stop()
        self._pending_threshold = None
        if project is not None and not project.read_only:
            results.folder.update_info(user_threshold=None)
            project.update_run(results.record.id, threshold=results.f1_threshold())
        self.threshold_panel.set_threshold(results.f1_threshold(), emit=False)
        self.model.set_threshold(self.threshold_panel.threshold)
        if self._mask_level_follows:
            self.set_mask_level(self.threshold_panel.threshold, follows_threshold=True)
        self.proxy.refilter()
        self.grid_proxy.refilter()
        self._update_count()

    # ------------------------------------------------------------------------------------------------------
    # Images

    def _filter_changed(self) -> None:
        mode = self.filter_combo.currentData()
        self.proxy.set_mode(mode)
        self.grid_proxy.set_mode(mode)
        self._update_count()

    def _update_count(self) -> None:
        total = self.model.rowCount()
        self.count_label.setText(self.tr("{shown} of {total} images").format(shown=self.proxy.rowCount(), total=total))

    def visible_rows(self) -> list[int]:
        """Return the source rows the table shows now, in table order."""
        return [self.proxy.mapToSource(self.proxy.index(row, 0)).row() for row in range(self.proxy.rowCount())]

    def select_row(self, row: int) -> None:
        """Select image `row` of scores.csv in the table (showing all images), which also shows it."""
        self.filter_combo.setCurrentIndex(0)
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        self.table.setCurrentIndex(index)
        self.table.scrollTo(index)

    def top_defect_row(self) -> int | None:
        """Return the row of the defective test image with the highest score, or None without one."""
        if self.results is None:
            return None
        defective = [row for row, entry in enumerate(self.results.rows) if entry["label"] == 1]
        return max(defective, key=lambda row: self.results.rows[row]["score"]) if defective else None

    def _row_chosen(self, index: QModelIndex) -> None:
        if index.isValid():
            self.show_row(index.row())

    def show_row(self, row: int) -> None:
        """Show image `row` of scores.csv with its heatmap and ground-truth contour."""
        results = self.results
        if results is None:
            return
        self._current_row = row
        record = results.rows[row]
        try:
            rgb = read_image(Path(str(record["path"])))
        except GlassError as exc:
            self.viewer.clear()
            self.viewer.caption.setText(str(exc))
            self.propose_button.setEnabled(False)
            return
        shape = rgb.shape[:2]
        self._original_map = results.original_map(row, shape)
        self.viewer.show_image(rgb, self._original_map, mask_contours(self._truth_mask(row, shape)))
        self._show_proposal()
        self._update_caption(row)
        project = self.context.project
        self.propose_button.setEnabled(project is not None and not project.read_only
                                       and results.image_ids[row] is not None and self._original_map is not None)

    def _truth_mask(self, row: int, shape: tuple[int, int]) -> np.ndarray:
        project, image_id = self.context.project, self.results.image_ids[row]
        if project is None or image_id is None:
            return np.zeros(shape, dtype=bool)
        record = project.image(image_id)
        if record.mask_path is None or not record.mask_path.is_file():
            return np.zeros(shape, dtype=bool)
        return read_mask(record.mask_path, shape)

    def _update_caption(self, row: int) -> None:
        record = self.results.rows[row]
        label = self.tr("defect ({type})").format(type=record["defect_type"]) if record["label"] == 1 \
            else self.tr("good")
        decision = self.model.decision(row) or "–"
        self.viewer.caption.setText(self.tr("{name} · true label {label} · score {score:.4f} · decision {decision} "
                                            "· green: ground truth · blue: proposed mask").format(
            name=Path(str(record["path"])).name, label=label, score=record["score"], decision=decision))

    def proposed_mask(self) -> np.ndarray | None:
        """Return the mask where the shown image's anomaly map (in image geometry) reaches the mask level."""
        if self._original_map is None or self._mask_level is None:
            return None
        return self._original_map >= self._mask_level

    def propose_mask(self) -> bool:
        """Show the proposed mask, and after confirmation store it and open the image in the Annotate view."""
        row, project, results = self._current_row, self.context.project, self.results
        if row is None or project is None or results is None or results.image_ids[row] is None:
            return False
        proposal = self.proposed_mask()
        if proposal is None or not proposal.any():
            peak = float(self._original_map.max()) if self._original_map is not None else 0.0
            show_error(self, self.tr("No mask to propose"), self.tr(
                "No pixel of this image's anomaly map reaches the mask level {level:.4f}; the map's peak is "
                "{peak:.4f}. Lower the mask level to propose a mask.").format(level=self._mask_level or 0.0,
                                                                             peak=peak))
            return False

        image_id = results.image_ids[row]
        record = project.image(image_id)
        replace = self.tr(" It replaces the image's current mask.") if record.mask_path is not None else ""
        answer = QMessageBox.question(self, self.tr("Use the proposed mask?"), self.tr(
            "The blue outline covers {share:.1%} of {name}. Save it as the image's mask and open it in the "
            "Annotate view for correction?{replace}").format(share=float(proposal.mean()), name=record.name,
                                                            replace=replace))
        if answer != QMessageBox.StandardButton.Yes:
            return False

        try:
            project.set_mask(image_id, proposal)
        except GlassError as exc:
            show_error(self, self.tr("Cannot save the mask"), str(exc))
            return False
        logger.info("Stored a proposed mask for image %d from run %s", image_id, results.folder.root)
        self.context.notify_images_changed()
        sequence = [results.image_ids[source] for source in self.visible_rows()
                    if results.image_ids[source] is not None]
        self.context.open_image(image_id, sequence)
        return True

    # ------------------------------------------------------------------------------------------------------
    # Report

    def _update_export_action(self) -> None:
        self.export_button.setEnabled(self.results is not None)

    def export_report(self, runs: list[RunRecord]) -> None:
        if not runs:
            return
        self._flush_threshold()
        default = (self.context.project.folder if self.context.project else Path.home()) / f"{runs[0].name}.xlsx"
        path, _filter = QFileDialog.getSaveFileName(self, self.tr("Export Excel report"), str(default),
                                                    self.tr("Excel workbooks (*.xlsx)"))
        if path:
            self.write_report([run.run_dir for run in runs], Path(path))

    def write_report(self, run_dirs: list[Path], out: Path):
        """Write the report in a worker with a progress dialog; return the worker."""
        worker = run_with_progress(self, lambda _progress, _cancelled: reports.write_report(run_dirs, out),
                                   self.tr("Excel report"), self.tr("Writing {file}…").format(file=out.name))
        worker.succeeded.connect(lambda written: self.context.show_status(
            self.tr("Report written to {path}").format(path=written), 0))
        worker.failed.connect(lambda message, details: show_error(self, self.tr("Excel report"), message, details))
        return worker

    # ------------------------------------------------------------------------------------------------------
    # StudioView hooks

    def activated(self) -> None:
        if self.results is None:
            self.refresh()

    def save_state(self) -> None:
        self._flush_threshold()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._flush_threshold()
        super().closeEvent(event)

    def shutdown(self) -> None:
        self._flush_threshold()
        if self._loader is not None:
            self._loader.stop()


register_view("results", QT_TRANSLATE_NOOP("views", "Results"), ResultsView, order=40)
