"""The views of the main window, the registry that creates them, and the context they share.

A view is a `StudioView` subclass. A module adds one by calling `register_view` at import time:

    class TrainView(StudioView):
        def __init__(self, context: StudioContext, parent: QWidget | None = None):
            super().__init__(context, parent)
            context.project_changed.connect(self._on_project)   # Project or None
            context.category_changed.connect(self._on_category) # str, "" when none

    register_view("train", QT_TRANSLATE_NOOP("views", "Train"), TrainView, order=30)

`load_views` imports the built-in views and the modules in `PLUGIN_MODULES`. Until such a module exists, its
key shows a placeholder. Registering an existing key replaces the entry, so a module's view takes the
placeholder's tab.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QT_TRANSLATE_NOOP, QCoreApplication, QObject, Qt, Signal
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from glass_engine.store import Project

logger = logging.getLogger(__name__)

TRANSLATION_CONTEXT = "views"
BUILTIN_MODULES = ("glass_gui.images_view", "glass_gui.annotate_view")
PLUGIN_MODULES = ("glass_gui.train_view", "glass_gui.results_view", "glass_gui.inspect_view")


class StudioContext(QObject):
    """State and requests shared by the main window and its views. Only the GUI thread uses it.

    Signals:
        project_changed(object): the open Project, or None after closing.
        category_changed(str): the selected category, "" when there is none.
        images_changed(): labels, splits, masks or files of images changed in the store.
        runs_changed(): a run was added or changed.
        open_image_requested(int, list): show image id in the annotation view; the list orders next/previous.
        view_requested(str): make the view with this key current.
        status_message(str, int): text for the status bar and its timeout in ms (0 keeps it).
    """

    project_changed = Signal(object)
    category_changed = Signal(str)
    images_changed = Signal()
    runs_changed = Signal()
    open_image_requested = Signal(int, list)
    view_requested = Signal(str)
    status_message = Signal(str, int)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._project: Project | None = None
        self._category: str | None = None

    @property
    def project(self) -> Project | None:
        return self._project

    @property
    def category(self) -> str | None:
        return self._category

    def set_project(self, project: Project | None) -> None:
        self._project = project
        self._category = None
        self.project_changed.emit(project)
        categories = project.categories() if project is not None else []
        self.set_category(categories[0] if categories else None)

    def set_category(self, category: str | None) -> None:
        self._category = category or None
        self.category_changed.emit(category or "")

    def notify_images_changed(self) -> None:
        self.images_changed.emit()

    def open_image(self, image_id: int, sequence: list[int]) -> None:
        self.open_image_requested.emit(image_id, list(sequence))
        self.view_requested.emit("annotate")

    def show_status(self, text: str, timeout_ms: int = 5000) -> None:
        self.status_message.emit(text, timeout_ms)


class StudioView(QWidget):
    """Base class of the main window's views; the hooks do nothing unless a view overrides them."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.context = context

    def activated(self) -> None:
        """Called when the view becomes the current tab."""

    def save_state(self) -> None:
        """Called before the project closes or the application quits; write unsaved work here."""

    def shutdown(self) -> None:
        """Called once before the main window closes; stop background work here."""


ViewFactory = Callable[[StudioContext, QWidget | None], StudioView]


@dataclass(frozen=True)
class ViewSpec:
    """A registered view: its key, its untranslated title (context `views`), how to build it, its tab order."""

    key: str
    title: str
    factory: ViewFactory
    order: int

    def display_title(self) -> str:
        return QCoreApplication.translate(TRANSLATION_CONTEXT, self.title)


_registry: dict[str, ViewSpec] = {}


def register_view(key: str, title: str, factory: ViewFactory, order: int = 100) -> None:
    """Add a view, or replace the one registered under `key` (for example a placeholder)."""
    _registry[key] = ViewSpec(key, title, factory, order)


def view_specs() -> list[ViewSpec]:
    """Return the registered views in tab order."""
    return sorted(_registry.values(), key=lambda spec: (spec.order, spec.key))


class PlaceholderView(StudioView):
    """Stands in for a view whose module is not installed yet."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None, title: str = ""):
        super().__init__(context, parent)
        label = QLabel(self.tr("The {title} view is not available in this version.").format(title=title))
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.addWidget(label)


def _placeholder(title: str) -> ViewFactory:
    def build(context: StudioContext, parent: QWidget | None = None) -> StudioView:
        return PlaceholderView(context, parent, QCoreApplication.translate(TRANSLATION_CONTEXT, title))

    return build


_PLACEHOLDERS = (
    ("train", QT_TRANSLATE_NOOP("views", "Train"), 30),
    ("results", QT_TRANSLATE_NOOP("views", "Results"), 40),
    ("inspect", QT_TRANSLATE_NOOP("views", "Inspect"), 50),
)
_loaded = False


def load_views() -> list[ViewSpec]:
    """Register placeholders, then import the built-in and plug-in view modules; return the views in order."""
    global _loaded
    if not _loaded:
        for key, title, order in _PLACEHOLDERS:
            _registry.setdefault(key, ViewSpec(key, title, _placeholder(title), order))
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for module in PLUGIN_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                # Only the plug-in itself may be absent; a missing import inside it is a real error.
                if exc.name != module:
                    raise
                logger.info("View module %s is not installed; showing a placeholder", module)
        _loaded = True
    return view_specs()


def titled_box(title: str, widget: QWidget) -> QGroupBox:
    """Wrap a widget in a group box with a title and narrow margins."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(4, 4, 4, 4)
    layout.addWidget(widget)
    return box
