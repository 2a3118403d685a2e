"""The main window: start page, project panel, and the registered views as tabs."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from glass_engine.demo import create_demo_project
from glass_engine.errors import GlassError
from glass_engine.export import ExportSummary, export_mvtec
from glass_engine.paths import user_data_dir
from glass_engine.store import ImportSummary, Project, is_project
from glass_gui.errors import show_error
from glass_gui.import_dialog import ImportDialog, local_folder
from glass_gui.project_panel import ProjectPanel
from glass_gui.settings import StudioSettings
from glass_gui.start_page import StartPage
from glass_gui.views import StudioContext, StudioView, load_views
from glass_gui.workers import run_with_progress, task_runner

logger = logging.getLogger(__name__)

DEMO_FOLDER_NAME = "demo-project"


def demo_folder() -> Path:
    return user_data_dir() / DEMO_FOLDER_NAME


class MainWindow(QMainWindow):
    """Owns the open project and hands it to the views through `context`."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(self.tr("GLASS Studio"))
        self.setAcceptDrops(True)
        self.context = StudioContext(self)
        self.settings = StudioSettings()
        self.import_dialog: ImportDialog | None = None

        self.start_page = StartPage()
        self.start_page.new_requested.connect(self.new_project)
        self.start_page.open_requested.connect(self.choose_project)
        self.start_page.demo_requested.connect(self.open_demo)
        self.start_page.recent_chosen.connect(self.open_project)

        self.project_panel = ProjectPanel(self.context)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.views: dict[str, StudioView] = {}
        for spec in load_views():
            view = spec.factory(self.context, None)
            self.views[spec.key] = view
            self.tabs.addTab(view, spec.display_title())
        self.tabs.currentChanged.connect(self._tab_changed)

        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet("background: #fff3cd; color: #664d03; padding: 6px;")
        self.banner.hide()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.project_panel)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 1000])
        workspace = QWidget()
        workspace_layout = QVBoxLayout(workspace)
        workspace_layout.setContentsMargins(0, 0, 0, 0)
        workspace_layout.addWidget(self.banner)
        workspace_layout.addWidget(splitter, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_page)
        self.stack.addWidget(workspace)
        self.setCentralWidget(self.stack)
        self._build_menus()
        self.statusBar()

        self.context.view_requested.connect(self.show_view)
        self.context.status_message.connect(lambda text, timeout: self.statusBar().showMessage(text, timeout))
        self.context.project_changed.connect(lambda _project: self._update_actions())
        self.context.category_changed.connect(lambda _category: self._update_actions())
        if not self.settings.restore_window(self):
            self.resize(1400, 900)
        self._show_start()

    # ------------------------------------------------------------------------------------------------------
    # Menus

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu(self.tr("&File"))
        self._add(file_menu, self.tr("&New project…"), QKeySequence.StandardKey.New, self.new_project)
        self._add(file_menu, self.tr("&Open project…"), QKeySequence.StandardKey.Open, self.choose_project)
        self.recent_menu = file_menu.addMenu(self.tr("Recent projects"))
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._add(file_menu, self.tr("Open &demo project"), None, self.open_demo)
        file_menu.addSeparator()
        self.import_action = self._add(file_menu, self.tr("&Import images…"), QKeySequence("Ctrl+I"), self.import_images)
        self.export_action = self._add(file_menu, self.tr("&Export category as MVTec AD…"), QKeySequence("Ctrl+E"),
                                       self.export_category)
        file_menu.addSeparator()
        self.close_action = self._add(file_menu, self.tr("&Close project"), QKeySequence.StandardKey.Close,
                                      self.close_project)
        self._add(file_menu, self.tr("&Quit"), QKeySequence.StandardKey.Quit, self.close)

        view_menu = self.menuBar().addMenu(self.tr("&View"))
        for number, key in enumerate(self.views, start=1):
            title = self.tabs.tabText(list(self.views).index(key))
            self._add(view_menu, title, QKeySequence(f"Ctrl+{number}"), lambda k=key: self.show_view(k))

        help_menu = self.menuBar().addMenu(self.tr("&Help"))
        self._add(help_menu, self.tr("&About GLASS Studio"), None, self._about)

    def _add(self, menu, text: str, shortcut, slot) -> QAction:  # type: ignore[no-untyped-def]
        action = menu.addAction(text)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(lambda _checked=False: slot())
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_projects():
            action = self.recent_menu.addAction(str(folder))
            action.setEnabled(is_project(folder))
            action.triggered.connect(lambda _checked=False, f=folder: self.open_project(f))

    def _update_actions(self) -> None:
        project = self.context.project
        writable = project is not None and not project.read_only
        self.import_action.setEnabled(writable)
        self.export_action.setEnabled(project is not None and self.context.category is not None)
        self.close_action.setEnabled(project is not None)

    def _about(self) -> None:
        QMessageBox.about(self, self.tr("About GLASS Studio"), self.tr(
            "GLASS Studio prepares images and masks, trains GLASS anomaly detection models and reviews their "
            "results."))

    # ------------------------------------------------------------------------------------------------------
    # Projects

    @property
    def project(self) -> Project | None:
        return self.context.project

    def open_initial_project(self, explicit: Path | None = None) -> None:
        """Open `explicit`, else the most recent project, else the demo project (created on first launch)."""
        if explicit is not None:
            if not self.open_project(explicit):
                self._show_start()
            return
        last = self.settings.last_project()
        if last is not None and is_project(last) and self.open_project(last):
            return
        self.open_demo()

    def open_project(self, folder: Path) -> bool:
        try:
            project = Project.open(folder)
        except GlassError as exc:
            logger.error("Cannot open project %s: %s", folder, exc)
            show_error(self, self.tr("Cannot open project"), str(exc))
            return False
        self.set_project(project)
        return True

    def choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.tr("Open project folder"), str(Path.home()))
        if folder:
            self.open_project(Path(folder))

    def new_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, self.tr("Choose an empty folder for the new project"), str(Path.home())
        )
        if not folder:
            return
        try:
            project = Project.create(Path(folder))
        except GlassError as exc:
            logger.error("Cannot create project in %s: %s", folder, exc)
            show_error(self, self.tr("Cannot create project"), str(exc))
            return
        self.set_project(project)
        self.import_images()

    def open_demo(self) -> None:
        """Open the demo project, generating it in the background the first time."""
        folder = demo_folder()
        if is_project(folder):
            self.open_project(folder)
            return

        def create(_progress, _cancelled) -> Path:  # type: ignore[no-untyped-def]
            create_demo_project(folder).close()
            return folder

        worker = run_with_progress(self, create, self.tr("Demo project"), self.tr("Generating the demo images…"))
        worker.succeeded.connect(lambda created: self.open_project(created))
        worker.failed.connect(lambda message, details: self._demo_failed(message, details))

    def _demo_failed(self, message: str, details: str) -> None:
        show_error(self, self.tr("Cannot create the demo project"), message, details)
        self._show_start()

    def set_project(self, project: Project | None) -> None:
        for view in self.views.values():
            view.save_state()
        old = self.context.project
        self.context.set_project(project)
        if old is not None and old is not project:
            old.close()

        if project is None:
            self._show_start()
            return
        self.settings.add_recent(project.folder)
        self.setWindowTitle(self.tr("{name} - GLASS Studio").format(name=project.name))
        self.banner.setText(self.tr("Read-only: {reason}.").format(reason=project.read_only_reason))
        self.banner.setVisible(project.read_only)
        self.stack.setCurrentIndex(1)
        self._update_actions()
        current = self.tabs.currentWidget()
        if isinstance(current, StudioView):
            current.activated()

    def close_project(self) -> None:
        self.set_project(None)

    def _show_start(self) -> None:
        self.setWindowTitle(self.tr("GLASS Studio"))
        self.start_page.set_recent(self.settings.recent_projects())
        self.stack.setCurrentIndex(0)
        self._update_actions()

    # ------------------------------------------------------------------------------------------------------
    # Views

    def show_view(self, key: str) -> None:
        view = self.views.get(key)
        if view is not None:
            self.tabs.setCurrentWidget(view)

    def _tab_changed(self, index: int) -> None:
        view = self.tabs.widget(index)
        if isinstance(view, StudioView) and self.context.project is not None:
            view.activated()

    # ------------------------------------------------------------------------------------------------------
    # Import and export

    def import_images(self, folder: Path | None = None) -> ImportDialog | None:
        project = self.context.project
        if project is None:
            return None
        dialog = ImportDialog(project, self, folder)
        dialog.imported.connect(self._imported)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.import_dialog = dialog
        dialog.open()
        return dialog

    def _imported(self, summaries: list[ImportSummary]) -> None:
        added = sum(summary.added for summary in summaries)
        self.context.show_status(self.tr("Imported {added} new images").format(added=added))
        if self.context.category is None and summaries:
            self.context.set_category(summaries[0].category)
        self.context.notify_images_changed()
        self.show_view("images")

    def export_category(self) -> None:
        project = self.context.project
        category = self.context.category
        if project is None or category is None:
            return
        folder = QFileDialog.getExistingDirectory(
            self, self.tr("Export {category} into folder").format(category=category), str(Path.home())
        )
        if folder:
            self.start_export(Path(folder))

    def start_export(self, out_root: Path) -> None:
        project = self.context.project
        category = self.context.category
        worker = run_with_progress(
            self,
            lambda progress, cancelled: export_mvtec(project, out_root, category, None, progress, cancelled),
            self.tr("Export"), self.tr("Exporting {category}…").format(category=category),
        )
        worker.succeeded.connect(self._exported)
        worker.failed.connect(lambda message, details: show_error(self, self.tr("Export failed"), message, details))

    def _exported(self, summary: ExportSummary) -> None:
        text = self.tr("Exported {images} images and {masks} masks to {root}.").format(
            images=summary.images, masks=summary.masks, root=summary.root)
        if summary.warnings:
            text += "\n\n" + self.tr("{count} files need attention:").format(count=len(summary.warnings))
            text += "\n" + "\n".join(summary.warnings[:10])
        self.context.show_status(text.splitlines()[0])
        QMessageBox.information(self, self.tr("Export finished"), text)

    # ------------------------------------------------------------------------------------------------------
    # Window events

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and local_folder(event.mimeData().urls()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        folder = local_folder(event.mimeData().urls())
        if folder is None:
            return
        event.acceptProposedAction()
        if is_project(folder):
            self.open_project(folder)
        elif self.context.project is not None:
            self.import_images(folder)

    def closeEvent(self, event: QCloseEvent) -> None:
        for view in self.views.values():
            view.save_state()
            view.shutdown()
        task_runner().wait_all()
        self.settings.save_window(self)
        project = self.context.project
        if project is not None:
            self.context.set_project(None)
            project.close()
        super().closeEvent(event)
