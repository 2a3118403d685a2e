"""The Images view: a virtualised thumbnail grid with filters, sorting, relabelling, moving and relinking."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QT_TRANSLATE_NOOP, QItemSelectionModel, QModelIndex, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListView,
    QMenu,
    QMessageBox,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from glass_engine.errors import GlassError
from glass_engine.store import DEFAULT_DEFECT_TYPE, ImageRecord, Project
from glass_gui.errors import show_error
from glass_gui.image_model import ImageDelegate, ImageListModel, RecordRole
from glass_gui.thumbnails import ThumbnailLoader
from glass_gui.views import StudioContext, StudioView, register_view
from glass_gui.workers import run_with_progress

logger = logging.getLogger(__name__)

ANY = "__any__"


class ImagesView(StudioView):
    """Shows the images of the current category and edits labels and splits of the selection."""

    records_shown = Signal(int)

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self._loader = ThumbnailLoader(None, parent=self)
        self.model = ImageListModel(self._loader, self)

        self._build_filters()
        self._build_actions()
        self._build_list()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(self._filter_row)
        layout.addWidget(self._toolbar)
        layout.addWidget(self.list_view, 1)

        context.project_changed.connect(self._project_changed)
        context.category_changed.connect(lambda _category: self._category_changed())
        context.images_changed.connect(self.refresh)
        context.runs_changed.connect(self.refresh)
        self._update_actions()

    # ------------------------------------------------------------------------------------------------------
    # Construction

    def _build_filters(self) -> None:
        self.split_filter = self._combo([(self.tr("All splits"), ANY), (self.tr("Train"), "train"),
                                         (self.tr("Test"), "test"), (self.tr("Validation"), "validation")])
        self.label_filter = self._combo([(self.tr("All labels"), ANY), (self.tr("Good"), "good"),
                                         (self.tr("Defect"), "defect")])
        self.type_filter = self._combo([(self.tr("All types"), ANY)])
        self.annotated_filter = self._combo([(self.tr("Any mask"), ANY), (self.tr("With mask"), True),
                                             (self.tr("Without mask"), False)])
        self.status_filter = self._combo([(self.tr("All files"), ANY), (self.tr("Missing"), "missing")])
        self.sort_order = self._combo([(self.tr("Name"), "name"), (self.tr("Score"), "score")])
        self.sort_order.setToolTip(self.tr("Sort by file name, or by anomaly score (highest first)"))
        self.count_label = QLabel()

        self._filter_row = QHBoxLayout()
        for widget in (self.split_filter, self.label_filter, self.type_filter, self.annotated_filter,
                       self.status_filter):
            self._filter_row.addWidget(widget)
            widget.currentIndexChanged.connect(lambda _index: self.refresh())
        self._filter_row.addSpacing(12)
        self._filter_row.addWidget(QLabel(self.tr("Sort")))
        self._filter_row.addWidget(self.sort_order)
        self.sort_order.currentIndexChanged.connect(lambda _index: self.refresh())
        self._filter_row.addStretch(1)
        self._filter_row.addWidget(self.count_label)

    def _combo(self, entries: list[tuple[str, object]]) -> QComboBox:
        combo = QComboBox()
        # Let the filter row shrink on small screens; the open list still shows whole entries.
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)
        for text, value in entries:
            combo.addItem(text, value)
        return combo

    def _build_actions(self) -> None:
        self.mark_good_action = QAction(self.tr("Mark good"), self)
        self.mark_good_action.setShortcut(QKeySequence("G"))
        self.mark_good_action.triggered.connect(lambda: self.relabel_selected("good"))
        self.mark_defect_action = QAction(self.tr("Mark defect…"), self)
        self.mark_defect_action.setShortcut(QKeySequence("D"))
        self.mark_defect_action.triggered.connect(self._ask_defect_type)

        self.move_actions: dict[str, QAction] = {}
        move_menu = QMenu(self.tr("Move to"), self)
        for split, text in (("train", self.tr("Train")), ("test", self.tr("Test")),
                            ("validation", self.tr("Validation"))):
            action = move_menu.addAction(text)
            action.triggered.connect(lambda _checked=False, s=split: self.move_selected(s))
            self.move_actions[split] = action
        self.move_button = QToolButton()
        self.move_button.setText(self.tr("Move to"))
        self.move_button.setMenu(move_menu)
        self.move_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)

        self.annotate_action = QAction(self.tr("Annotate"), self)
        self.annotate_action.setShortcut(QKeySequence(Qt.Key.Key_Return))
        self.annotate_action.triggered.connect(self._annotate_current)
        self.relink_action = QAction(self.tr("Relink…"), self)
        self.relink_action.setToolTip(self.tr("Point a missing image to its new location"))
        self.relink_action.triggered.connect(self._relink_current)
        self.check_action = QAction(self.tr("Check files"), self)
        self.check_action.setToolTip(self.tr("Look for image files that were moved or deleted"))
        self.check_action.triggered.connect(self.check_missing)
        self.remove_action = QAction(self.tr("Remove from project…"), self)
        self.remove_action.triggered.connect(self._remove_selected)

        self._toolbar = QToolBar()
        self._toolbar.addAction(self.mark_good_action)
        self._toolbar.addAction(self.mark_defect_action)
        self._toolbar.addWidget(self.move_button)
        self._toolbar.addSeparator()
        self._toolbar.addAction(self.annotate_action)
        self._toolbar.addAction(self.relink_action)
        self._toolbar.addAction(self.check_action)
        for action in (self.mark_good_action, self.mark_defect_action, self.annotate_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            self.addAction(action)

    def _build_list(self) -> None:
        view = QListView()
        view.setModel(self.model)
        view.setItemDelegate(ImageDelegate(view))
        view.setViewMode(QListView.ViewMode.IconMode)
        view.setResizeMode(QListView.ResizeMode.Adjust)
        view.setMovement(QListView.Movement.Static)
        view.setUniformItemSizes(True)
        view.setLayoutMode(QListView.LayoutMode.Batched)
        view.setBatchSize(500)
        view.setSpacing(4)
        view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        view.verticalScrollBar().setSingleStep(24)
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        view.customContextMenuRequested.connect(self._context_menu)
        view.doubleClicked.connect(self._open_index)
        view.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.list_view = view

    # ------------------------------------------------------------------------------------------------------
    # Loading

    def _project_changed(self, project: Project | None) -> None:
        self._loader.stop()
        self._loader.deleteLater()
        self._loader = ThumbnailLoader(project.thumbnails_dir if project is not None else None, parent=self)
        self.model.set_loader(self._loader)
        self._update_actions()

    def _category_changed(self) -> None:
        self._reload_defect_types()
        self.refresh()

    def _reload_defect_types(self) -> None:
        project = self.context.project
        current = self.type_filter.currentData()
        self.type_filter.blockSignals(True)
        self.type_filter.clear()
        self.type_filter.addItem(self.tr("All types"), ANY)
        if project is not None:
            for defect_type in project.defect_types(self.context.category):
                self.type_filter.addItem(defect_type, defect_type)
        found = self.type_filter.findData(current)
        self.type_filter.setCurrentIndex(max(found, 0))
        self.type_filter.blockSignals(False)

    def filters(self) -> dict[str, object]:
        """Return the current filter values as keyword arguments of `Project.images`."""
        values = {
            "split": self.split_filter.currentData(),
            "label": self.label_filter.currentData(),
            "defect_type": self.type_filter.currentData(),
            "annotated": self.annotated_filter.currentData(),
            "status": self.status_filter.currentData(),
        }
        return {key: value for key, value in values.items() if value != ANY}

    def refresh(self) -> None:
        """Query the store with the current filters; keep the selection and scroll position when possible."""
        project = self.context.project
        if project is None or self.context.category is None:
            self.model.set_records([])
            self._show_count(0)
            return
        if self.type_filter.count() <= 1:
            self._reload_defect_types()

        records = project.images(category=self.context.category, order=self.sort_order.currentData(), **self.filters())
        if [record.id for record in records] == self.model.ids():
            self.model.update_records(records)
        else:
            selected = set(self.selected_ids())
            scroll = self.list_view.verticalScrollBar().value()
            self.model.set_records(records)
            self._select_ids(selected)
            self.list_view.verticalScrollBar().setValue(scroll)
        self._show_count(len(records))
        self._update_actions()

    def _show_count(self, shown: int) -> None:
        project = self.context.project
        total = project.count(category=self.context.category) if project and self.context.category else 0
        self.count_label.setText(self.tr("{shown} of {total} images").format(shown=shown, total=total))
        self.records_shown.emit(shown)

    # ------------------------------------------------------------------------------------------------------
    # Selection and actions

    def selected_records(self) -> list[ImageRecord]:
        rows = sorted(index.row() for index in self.list_view.selectionModel().selectedIndexes())
        return [self.model.record(row) for row in rows]

    def selected_ids(self) -> list[int]:
        return [record.id for record in self.selected_records()]

    def _select_ids(self, ids: set[int]) -> None:
        selection = self.list_view.selectionModel()
        for image_id in ids:
            row = self.model.row_of(image_id)
            if row is not None:
                selection.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)

    def _update_actions(self) -> None:
        records = self.selected_records() if self.model.rowCount() else []
        project = self.context.project
        writable = project is not None and not project.read_only
        has_selection = bool(records)
        for action in (self.mark_good_action, self.mark_defect_action, self.remove_action):
            action.setEnabled(writable and has_selection)
        self.move_button.setEnabled(writable and has_selection)
        self.annotate_action.setEnabled(has_selection)
        self.relink_action.setEnabled(writable and any(record.missing for record in records))
        self.check_action.setEnabled(project is not None)

    def relabel_selected(self, label: str, defect_type: str | None = None) -> int:
        return self._edit(lambda project, ids: project.relabel(ids, label, defect_type))

    def move_selected(self, split: str) -> int:
        return self._edit(lambda project, ids: project.move(ids, split))

    def _edit(self, change) -> int:  # type: ignore[no-untyped-def]
        project = self.context.project
        ids = self.selected_ids()
        if project is None or not ids:
            return 0
        try:
            changed = change(project, ids)
        except GlassError as exc:
            logger.warning("Edit of %d images failed: %s", len(ids), exc)
            show_error(self, self.tr("Cannot change images"), str(exc))
            return 0
        self.context.show_status(self.tr("{count} images changed").format(count=changed))
        self.context.notify_images_changed()
        return changed

    def _ask_defect_type(self) -> None:
        project = self.context.project
        if project is None:
            return
        types = project.defect_types(self.context.category) or [DEFAULT_DEFECT_TYPE]
        defect_type, ok = QInputDialog.getItem(
            self, self.tr("Mark defect"), self.tr("Defect type:"), types, 0, True
        )
        if ok and defect_type.strip():
            self.relabel_selected("defect", defect_type.strip())

    def _annotate_current(self) -> None:
        index = self.list_view.currentIndex()
        if index.isValid():
            self._open_index(index)

    def _open_index(self, index: QModelIndex) -> None:
        record: ImageRecord = index.data(RecordRole)
        self.context.open_image(record.id, self.model.ids())

    def _relink_current(self) -> None:
        missing = [record for record in self.selected_records() if record.missing]
        if not missing:
            return
        record = missing[0]
        start = record.path.parent if record.path.parent.is_dir() else Path.home()
        chosen, _filter = QFileDialog.getOpenFileName(
            self, self.tr("Where is {name} now?").format(name=record.name), str(start),
            self.tr("Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp);;All files (*)"),
        )
        if chosen:
            self.relink(record.id, Path(chosen))

    def relink(self, image_id: int, new_path: Path) -> int:
        project = self.context.project
        if project is None:
            return 0
        try:
            count = project.relink(image_id, new_path)
        except GlassError as exc:
            logger.warning("Relink of image %d to %s failed: %s", image_id, new_path, exc)
            show_error(self, self.tr("Cannot relink image"), str(exc))
            return 0
        self.context.show_status(self.tr("Relinked {count} images").format(count=count))
        self.context.notify_images_changed()
        return count

    def check_missing(self) -> None:
        project = self.context.project
        if project is None:
            return
        category = self.context.category
        worker = run_with_progress(
            self, lambda progress, cancelled: project.check_missing(category, progress, cancelled),
            self.tr("Check files"), self.tr("Checking image files…"),
        )
        worker.succeeded.connect(self._missing_checked)
        worker.failed.connect(lambda message, _details: show_error(self, self.tr("Check files"), message))

    def _missing_checked(self, missing: list[int]) -> None:
        if missing:
            self.context.show_status(self.tr("{count} image files are missing").format(count=len(missing)), 0)
        else:
            self.context.show_status(self.tr("All image files are present"))
        self.context.notify_images_changed()

    def _remove_selected(self) -> None:
        ids = self.selected_ids()
        project = self.context.project
        if not ids or project is None:
            return
        answer = QMessageBox.question(
            self, self.tr("Remove images"),
            self.tr("Remove {count} images from the project? The image files stay on disk; masks painted in "
                    "this project are deleted.").format(count=len(ids)),
        )
        if answer == QMessageBox.StandardButton.Yes:
            self._edit(lambda store, chosen: store.remove_images(chosen))

    def _context_menu(self, position: QPoint) -> None:
        menu = QMenu(self)
        menu.addAction(self.annotate_action)
        menu.addSeparator()
        menu.addAction(self.mark_good_action)
        menu.addAction(self.mark_defect_action)
        move_menu = menu.addMenu(self.tr("Move to"))
        move_menu.setEnabled(self.move_button.isEnabled())
        for action in self.move_actions.values():
            move_menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.relink_action)
        menu.addAction(self.remove_action)
        menu.exec(self.list_view.viewport().mapToGlobal(position))

    def shutdown(self) -> None:
        self._loader.stop()


register_view("images", QT_TRANSLATE_NOOP("views", "Images"), ImagesView, order=10)
