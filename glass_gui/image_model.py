"""The review grid's list model and item delegate: thumbnails with label, mask, score and missing badges."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from glass_engine.store import ImageRecord
from glass_gui.thumbnails import THUMBNAIL_SIZE, ThumbnailLoader

logger = logging.getLogger(__name__)

RecordRole = Qt.ItemDataRole.UserRole + 1
PIXMAP_CACHE_SIZE = 1500
"""Thumbnails kept in memory; at 128 px RGB each takes at most 64 KiB, so about 100 MiB in total."""

GOOD_COLOR = QColor(46, 160, 67)
DEFECT_COLOR = QColor(218, 54, 51)
MASK_COLOR = QColor(130, 80, 223)
MISSING_COLOR = QColor(200, 30, 30, 215)
SCORE_COLOR = QColor(31, 111, 235)
SPLIT_COLOR = QColor(60, 60, 60, 200)


class ImageListModel(QAbstractListModel):
    """Rows are `ImageRecord`s. Thumbnails are requested from the loader only when a row is painted."""

    def __init__(self, loader: ThumbnailLoader, parent: QObject | None = None):
        super().__init__(parent)
        self._records: list[ImageRecord] = []
        self._rows: dict[int, int] = {}
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._failed: set[int] = set()
        self._loader = loader
        loader.ready.connect(self._thumbnail_ready)
        loader.failed.connect(self._thumbnail_failed)

    def set_loader(self, loader: ThumbnailLoader) -> None:
        self._loader.ready.disconnect(self._thumbnail_ready)
        self._loader.failed.disconnect(self._thumbnail_failed)
        self._loader = loader
        loader.ready.connect(self._thumbnail_ready)
        loader.failed.connect(self._thumbnail_failed)
        self._pixmaps.clear()
        self._failed.clear()

    # ------------------------------------------------------------------------------------------------------
    # Qt model interface

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._records):
            return None
        record = self._records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return record.display_name
        if role == RecordRole:
            return record
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(record)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(record)
        return None

    # ------------------------------------------------------------------------------------------------------
    # Records

    def set_records(self, records: list[ImageRecord]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self._rows = {record.id: row for row, record in enumerate(self._records)}
        self._failed.clear()
        self.endResetModel()

    def update_records(self, records: list[ImageRecord]) -> None:
        """Replace rows in place (same ids), for example after a relabel; a changed file drops its thumbnail.

        One dataChanged signal covers all changed rows, because a signal per row costs seconds at 10,000 rows.
        """
        changed_rows: list[int] = []
        for record in records:
            row = self._rows.get(record.id)
            if row is None or self._records[row] == record:
                continue
            if self._records[row].path != record.path or self._records[row].status != record.status:
                self._pixmaps.pop(record.id, None)
                self._failed.discard(record.id)
            self._records[row] = record
            changed_rows.append(row)
        if changed_rows:
            self.dataChanged.emit(self.index(min(changed_rows)), self.index(max(changed_rows)))

    def records(self) -> list[ImageRecord]:
        return list(self._records)

    def record(self, row: int) -> ImageRecord:
        return self._records[row]

    def row_of(self, image_id: int) -> int | None:
        return self._rows.get(image_id)

    def ids(self) -> list[int]:
        return [record.id for record in self._records]

    # ------------------------------------------------------------------------------------------------------
    # Thumbnails

    def thumbnail(self, record: ImageRecord) -> QPixmap | None:
        pixmap = self._pixmaps.get(record.id)
        if pixmap is not None:
            self._pixmaps.move_to_end(record.id)
            return pixmap
        if not record.missing and record.id not in self._failed:
            self._loader.request(record.id, record.path)
        return None

    def cached_thumbnails(self) -> int:
        return len(self._pixmaps)

    def _thumbnail_ready(self, image_id: int, image: QImage) -> None:
        self._pixmaps[image_id] = QPixmap.fromImage(image)
        self._pixmaps.move_to_end(image_id)
        while len(self._pixmaps) > PIXMAP_CACHE_SIZE:
            self._pixmaps.popitem(last=False)
        self._row_changed(image_id)

    def _thumbnail_failed(self, image_id: int) -> None:
        self._failed.add(image_id)
        self._row_changed(image_id)

    def _row_changed(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            index = self.index(row)
            self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])

    def _tooltip(self, record: ImageRecord) -> str:
        lines = [str(record.path)]
        label = self.tr("good") if record.label == "good" else self.tr("defect: {type}").format(type=record.defect_type)
        lines.append(self.tr("{split}, {label}").format(split=record.split, label=label))
        if record.width and record.height:
            lines.append(self.tr("{width} x {height} px").format(width=record.width, height=record.height))
        if record.mask_path is not None:
            lines.append(self.tr("Mask: {path}").format(path=record.mask_path))
        if record.score is not None:
            lines.append(self.tr("Score: {score:.4f}").format(score=record.score))
        if record.missing:
            lines.append(self.tr("The file is missing. Use Relink to point to its new location."))
        return "\n".join(lines)


class ImageDelegate(QStyledItemDelegate):
    """Paints one grid cell: thumbnail, file name and badges. All cells have the same size."""

    PADDING = 6
    NAME_HEIGHT = 18

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._fonts: dict[str, QFont] = {}

    def _badge_font(self, base: QFont) -> QFont:
        """Return a smaller bold copy of `base`, made once per base font because paint runs per visible cell."""
        key = base.key()
        font = self._fonts.get(key)
        if font is None:
            font = QFont(base)
            font.setPointSizeF(max(6.5, base.pointSizeF() * 0.8))
            font.setBold(True)
            self._fonts[key] = font
        return font

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        side = THUMBNAIL_SIZE + 2 * self.PADDING
        return QSize(side, side + self.NAME_HEIGHT)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        record: ImageRecord | None = index.data(RecordRole)
        if record is None:
            return
        painter.save()
        rect = option.rect
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        background = palette.color(QPalette.ColorRole.Highlight) if selected else palette.color(QPalette.ColorRole.Base)
        painter.fillRect(rect.adjusted(1, 1, -1, -1), background)

        thumb_rect = QRect(rect.x() + self.PADDING, rect.y() + self.PADDING, THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        self._paint_thumbnail(painter, thumb_rect, index.data(Qt.ItemDataRole.DecorationRole), palette)
        self._paint_badges(painter, thumb_rect, record)

        name_rect = QRect(rect.x() + 2, thumb_rect.bottom() + 2, rect.width() - 4, self.NAME_HEIGHT)
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setPen(palette.color(text_role))
        name = painter.fontMetrics().elidedText(record.display_name, Qt.TextElideMode.ElideMiddle, name_rect.width())
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, name)
        painter.restore()

    def _paint_thumbnail(self, painter: QPainter, box: QRect, pixmap: QPixmap | None, palette: QPalette) -> None:
        if pixmap is None or pixmap.isNull():
            painter.fillRect(box, palette.color(QPalette.ColorRole.AlternateBase))
            return
        size = pixmap.size()
        if size.width() > box.width() or size.height() > box.height():
            size = size.scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
        # Small images are drawn at their own size: scaling up costs time on every paint and shows nothing new.
        x = box.x() + (box.width() - size.width()) // 2
        y = box.y() + (box.height() - size.height()) // 2
        painter.drawPixmap(QRect(x, y, size.width(), size.height()), pixmap)

    def _paint_badges(self, painter: QPainter, box: QRect, record: ImageRecord) -> None:
        painter.setFont(self._badge_font(painter.font()))

        if record.label == "good":
            _badge(painter, box.x() + 2, box.y() + 2, self.tr("good"), GOOD_COLOR)
        else:
            _badge(painter, box.x() + 2, box.y() + 2, record.defect_type or self.tr("defect"), DEFECT_COLOR)
        if record.mask_path is not None:
            _badge(painter, box.right() - 2, box.y() + 2, self.tr("mask"), MASK_COLOR, align_right=True)
        split_text = {"train": self.tr("train"), "test": self.tr("test"), "validation": self.tr("val")}[record.split]
        _badge(painter, box.x() + 2, box.bottom() - 2, split_text, SPLIT_COLOR, align_bottom=True)
        if record.score is not None:
            _badge(painter, box.right() - 2, box.bottom() - 2, f"{record.score:.3f}", SCORE_COLOR,
                   align_right=True, align_bottom=True)
        if record.missing:
            banner = QRect(box.x(), box.center().y() - 11, box.width(), 22)
            painter.fillRect(banner, MISSING_COLOR)
            painter.setPen(QPen(QColor("white")))
            painter.drawText(banner, Qt.AlignmentFlag.AlignCenter, self.tr("missing"))


def _badge(painter: QPainter, x: int, y: int, text: str, color: QColor,
           align_right: bool = False, align_bottom: bool = False) -> None:
    metrics = painter.fontMetrics()
    width = metrics.horizontalAdvance(text) + 8
    height = metrics.height() + 2
    left = x - width if align_right else x
    top = y - height if align_bottom else y
    rect = QRect(left, top, width, height)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(color)
    painter.drawRoundedRect(rect, 3, 3)
    painter.setPen(QPen(QColor("white")))
    painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
