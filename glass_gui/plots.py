"""pyqtgraph helpers shared by the Train and Results views: curve sets that update in place, and colours."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

logger = logging.getLogger(__name__)

# Arrays are (row, column) like numpy images; the main window sets the same option at start-up.
pg.setConfigOptions(imageAxisOrder="row-major")

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GOOD_BRUSH = (46, 125, 50, 150)
DEFECT_BRUSH = (198, 40, 40, 150)
HEATMAP_COLORMAPS = ("inferno", "turbo", "viridis", "magma", "plasma", "CET-L1")


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


class CurveSet:
    """Named curves of one PlotItem; `set_data` updates a curve in place and creates it only the first time.

    Antialiasing is off by default because it makes each repaint several times slower, which live plots
    pay on every update.
    """

    def __init__(self, plot: pg.PlotItem, legend: bool = True, antialias: bool = False):
        self.plot = plot
        self.antialias = antialias
        self.curves: dict[str, pg.PlotDataItem] = {}
        if legend:
            plot.addLegend(offset=(-5, 5), labelTextSize="8pt", labelTextColor="#222",
                           brush=pg.mkBrush(255, 255, 255, 200))

    def curve(self, name: str) -> pg.PlotDataItem:
        if name not in self.curves:
            pen = pg.mkPen(colour(len(self.curves)), width=2)
            self.curves[name] = self.plot.plot([], [], name=name, pen=pen, antialias=self.antialias)
        return self.curves[name]

    def set_data(self, name: str, x: Sequence[float], y: Sequence[float]) -> None:
        self.curve(name).setData(np.asarray(x, dtype=float), np.asarray(y, dtype=float))

    def clear(self) -> None:
        for curve in self.curves.values():
            curve.setData([], [])


def make_plot_widget(title: str, x_label: str, y_label: str, parent: QWidget | None = None) -> pg.PlotWidget:
    widget = pg.PlotWidget(parent=parent, background="w")
    style_plot(widget.getPlotItem(), title, x_label, y_label)
    return widget


def style_plot(plot: pg.PlotItem, title: str, x_label: str = "", y_label: str = "", grid: bool = True) -> None:
    """Give a plot the dark-on-white look of the application; `grid=False` for plots that repaint often."""
    plot.setTitle(title, size="10pt", color="#222")
    if x_label:
        plot.setLabel("bottom", x_label)
    if y_label:
        plot.setLabel("left", y_label)
    if grid:
        plot.showGrid(x=True, y=True, alpha=0.25)
    for axis in ("bottom", "left"):
        plot.getAxis(axis).setTextPen("#333")
        plot.getAxis(axis).setPen("#666")
        # Scores and rates are plain numbers; a "(x0.001)" unit prefix would only confuse.
        plot.getAxis(axis).enableAutoSIPrefix(False)


def histogram_edges(low: float, high: float, bins: int) -> np.ndarray:
    """Return `bins + 1` equal-width bin edges over [low, high]; an empty range is widened by 0.5 each way."""
    if not np.isfinite(low) or not np.isfinite(high):
        low, high = 0.0, 1.0
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Return the outer and inner borders of a boolean mask as closed (N, 2) x, y point arrays."""
    contours, _hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    closed = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(float)
        closed.append(np.vstack([points, points[:1]]))
    return closed


def contour_item(color: str, width: float = 2.0) -> pg.PlotCurveItem:
    return pg.PlotCurveItem(pen=pg.mkPen(color, width=width, cosmetic=True))


def set_contours(item: pg.PlotCurveItem, contours: list[np.ndarray]) -> None:
    """Draw several closed contours with one curve item; pixel centres are at +0.5 in image coordinates."""
    if not contours:
        item.setData([], [])
        return
    points = np.vstack(contours) + 0.5
    connect = np.ones(len(points), dtype=bool)
    ends = np.cumsum([len(contour) for contour in contours]) - 1
    connect[ends] = False
    item.setData(points[:, 0], points[:, 1], connect=connect)


class HeatmapViewer(QWidget):
    """Original image, anomaly map and overlay side by side, with linked zoom, ground-truth contours, an
    opacity slider and a colour-map choice. The map is drawn with fixed levels 0..1 (the score range)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.layout_widget = pg.GraphicsLayoutWidget()
        self.layout_widget.setBackground("w")
        self.boxes: list[pg.ViewBox] = []
        titles = (self.tr("Original"), self.tr("Anomaly map"), self.tr("Overlay"))
        for column, title in enumerate(titles):
            self.layout_widget.addLabel(title, row=0, col=column, color="#222", size="10pt")
            box = self.layout_widget.addViewBox(row=1, col=column, lockAspect=True, invertY=True,
                                                enableMouse=True)
            self.boxes.append(box)
        for box in self.boxes[1:]:
            box.setXLink(self.boxes[0])
            box.setYLink(self.boxes[0])

        self.original_item = pg.ImageItem()
        self.map_item = pg.ImageItem(levels=(0.0, 1.0))
        self.overlay_base = pg.ImageItem()
        self.overlay_map = pg.ImageItem(levels=(0.0, 1.0))
        self.boxes[0].addItem(self.original_item)
        self.boxes[1].addItem(self.map_item)
        self.boxes[2].addItem(self.overlay_base)
        self.boxes[2].addItem(self.overlay_map)
        self.truth_items = [contour_item("#00e676"), contour_item("#00e676")]
        self.boxes[0].addItem(self.truth_items[0])
        self.boxes[2].addItem(self.truth_items[1])
        self.proposal_item = contour_item("#00b0ff", 2.5)
        self.boxes[2].addItem(self.proposal_item)

        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setToolTip(self.tr("Opacity of the anomaly map over the image"))
        self.opacity_slider.valueChanged.connect(lambda value: self.overlay_map.setOpacity(value / 100.0))
        self.colormap_combo = QComboBox()
        for name in HEATMAP_COLORMAPS:
            self.colormap_combo.addItem(name, name)
        self.colormap_combo.currentIndexChanged.connect(lambda _index: self._apply_colormap())
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.controls = QHBoxLayout()
        self.controls.addWidget(QLabel(self.tr("Opacity")))
        self.controls.addWidget(self.opacity_slider, 1)
        self.controls.addWidget(QLabel(self.tr("Colours")))
        self.controls.addWidget(self.colormap_combo)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.layout_widget, 1)
        layout.addLayout(self.controls)
        self.overlay_map.setOpacity(0.5)
        self._apply_colormap()

    def _apply_colormap(self) -> None:
        lut = pg.colormap.get(self.colormap_combo.currentData()).getLookupTable(0.0, 1.0, 256)
        for item in (self.map_item, self.overlay_map):
            item.setLookupTable(lut)

    def show_image(self, rgb: np.ndarray, anomaly_map: np.ndarray | None, truth: list[np.ndarray]) -> None:
        """Show an RGB uint8 image, its anomaly map at the same size (or None) and ground-truth contours."""
        self.original_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.overlay_base.setImage(rgb, autoLevels=False, levels=(0, 255))
        empty = np.zeros(rgb.shape[:2], dtype=np.float32)
        heat = empty if anomaly_map is None else anomaly_map
        self.map_item.setImage(heat, autoLevels=False, levels=(0.0, 1.0))
        self.overlay_map.setImage(heat, autoLevels=False, levels=(0.0, 1.0))
        self.overlay_map.setVisible(anomaly_map is not None)
        for item in self.truth_items:
            set_contours(item, truth)
        set_contours(self.proposal_item, [])
        self.boxes[0].autoRange(padding=0.02)

    def set_proposal(self, contours: list[np.ndarray]) -> None:
        set_contours(self.proposal_item, contours)

    def clear(self) -> None:
        for item in (self.original_item, self.map_item, self.overlay_base, self.overlay_map):
            item.clear()
        for item in (*self.truth_items, self.proposal_item):
            item.setData([], [])
        self.caption.setText("")
