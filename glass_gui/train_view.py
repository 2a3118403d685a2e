"""The Train view: configuration form, training queue, progress with live plots, and a log.

Training runs in a worker thread (`glass_gui.train_worker`). This view only reacts to its signals and never
blocks on the worker. Plots are redrawn at most every `PLOT_INTERVAL_MS` from the events
received since the last redraw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QT_TRANSLATE_NOOP, QEventLoop, Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from glass_engine.config import GlassConfig, preset
from glass_engine.errors import ConfigError, GlassError
from glass_engine.pipeline import eta_seconds
from glass_engine.runs import RunFolder
from glass_engine.store import Project, RunRecord
from glass_engine.training import TrainingEvent
from glass_gui.config_form import ConfigForm
from glass_gui.errors import show_error
from glass_gui.plots import CurveSet, style_plot
from glass_gui.train_worker import TrainingJob, TrainingQueue, import_weights, weights_status
from glass_gui.views import StudioContext, StudioView, register_view, titled_box
from glass_gui.workers import run_with_progress

logger = logging.getLogger(__name__)

FORM_SETTING = "train.form_config"
PLOT_INTERVAL_MS = 250
FORM_MIN_WIDTH = 360
"""Pixels; enough for the longest field label beside its editor."""
LOG_LINES = 5000
STAT_GROUPS = {"loss": ("loss",), "p": ("p_true", "p_fake"), "radii": ("r_t", "r_g", "r_f")}
RESUMABLE = ("cancelled", "failed")


def format_duration(seconds: float | None) -> str:
    """Return a duration as `1 h 05 min`, `3 min 07 s` or `12 s`; `–` when unknown."""
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


class TrainView(StudioView):
    """Configures trainings, queues them per category, and shows their progress."""

    def __init__(self, context: StudioContext, parent: QWidget | None = None):
        super().__init__(context, parent)
        self.queue = TrainingQueue(self)
        self._history: dict[str, list[tuple[float, float]]] = {}
        self._plots_dirty = False
        self._job_started_at = 0.0
        self._last_eta: float | None = None

        self.form = ConfigForm()
        self.form.changed.connect(self._update_weights_label)
        self._build_weights_box()
        self._build_controls()
        self._build_progress()
        self._build_plots()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setFont(QFont("monospace", 9))

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.form, 1)
        left_layout.addWidget(self.weights_box)
        left.setMinimumWidth(FORM_MIN_WIDTH)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.controls)
        right.addWidget(self.progress_box)
        right.addWidget(self.plot_widget)
        right.addWidget(self.log)
        right.setStretchFactor(2, 3)
        right.setStretchFactor(3, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 5)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(splitter)

        self._plot_timer = QTimer(self)
        self._plot_timer.setInterval(PLOT_INTERVAL_MS)
        self._plot_timer.timeout.connect(self._redraw_plots)
        self._plot_timer.start()

        self.queue.queue_changed.connect(self._refresh_lists)
        self.queue.job_started.connect(self._job_started)
        self.queue.event.connect(self._training_event)
        self.queue.job_ended.connect(self._job_ended)
        self.queue.running_changed.connect(lambda _running: self._update_buttons())
        context.project_changed.connect(self._project_changed)
        context.category_changed.connect(self._category_changed)
        context.runs_changed.connect(self._refresh_runs)
        self._project_changed(context.project)

    # ------------------------------------------------------------------------------------------------------
    # Construction

    def _build_weights_box(self) -> None:
        self.weights_box = QGroupBox(self.tr("Backbone weights"))
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.weights_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.import_weights_button = QPushButton(self.tr("Import weights file…"))
        self.import_weights_button.setToolTip(self.tr(
            "Check that a PyTorch state dict fits the chosen backbone and keep a copy for all projects, "
            "for computers without internet access."))
        self.import_weights_button.clicked.connect(self._choose_weights_file)
        layout = QVBoxLayout(self.weights_box)
        layout.addWidget(self.weights_label)
        layout.addWidget(self.import_weights_button, 0, Qt.AlignmentFlag.AlignLeft)

    def _build_controls(self) -> None:
        self.controls = QWidget()
        self.category_list = QListWidget()
        self.category_list.setToolTip(self.tr("Checked categories are queued with the settings on the left."))
        self.queue_list = QListWidget()
        self.queue_list.itemSelectionChanged.connect(self._update_buttons)
        self.runs_table = QTableWidget(0, 4)
        self.runs_table.setHorizontalHeaderLabels([self.tr("Run"), self.tr("Category"), self.tr("Status"),
                                                   self.tr("Image AUROC")])
        self.runs_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.runs_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs_table.verticalHeader().hide()
        header = self.runs_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        # The run name is long and the column stretches; the tooltip shows the whole name.
        self.runs_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.runs_table.itemSelectionChanged.connect(self._update_buttons)
        self.runs_table.itemSelectionChanged.connect(self._show_selected_history)

        self.queue_button = QPushButton(self.tr("Add to queue"))
        self.queue_button.setToolTip(self.tr("Queue a training of each checked category with these settings."))
        self.queue_button.clicked.connect(self.enqueue_checked)
        self.start_button = QPushButton(self.tr("Start"))
        self.start_button.setToolTip(self.tr("Run the queue; with an empty queue, the checked categories first."))
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton(self.tr("Cancel"))
        self.cancel_button.setToolTip(self.tr("Stop the running training after the current batch and pause the queue."))
        self.cancel_button.clicked.connect(self.cancel)
        self.remove_button = QPushButton(self.tr("Remove from queue"))
        self.remove_button.clicked.connect(self._remove_selected)
        self.resume_button = QPushButton(self.tr("Resume run"))
        self.resume_button.setToolTip(self.tr(
            "Continue the selected cancelled or failed run from its last completed epoch, with its own settings."))
        self.resume_button.clicked.connect(self._resume_selected)

        buttons = QVBoxLayout()
        for button in (self.start_button, self.cancel_button, self.queue_button, self.remove_button,
                       self.resume_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        layout = QHBoxLayout(self.controls)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(titled_box(self.tr("Categories"), self.category_list), 2)
        layout.addWidget(titled_box(self.tr("Queue"), self.queue_list), 2)
        layout.addWidget(titled_box(self.tr("Runs"), self.runs_table), 6)
        layout.addLayout(buttons)

    def _build_progress(self) -> None:
        self.progress_box = QWidget()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("%p %")
        self.progress_label = QLabel(self.tr("No training is running."))
        layout = QVBoxLayout(self.progress_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress_bar)

    def _build_plots(self) -> None:
        self.plot_widget = pg.GraphicsLayoutWidget()
        self.plot_widget.setBackground("w")
        self.plot_widget.setMinimumHeight(260)
        titles = {
            "loss": (self.tr("Loss"), ""),
            "p": (self.tr("p_true and p_fake"), ""),
            "radii": (self.tr("Radii r_t, r_g, r_f"), ""),
            "eval": (self.tr("Evaluation metrics"), ""),
        }
        self.curve_sets: dict[str, CurveSet] = {}
        for position, (key, (title, _unit)) in enumerate(titles.items()):
            plot = self.plot_widget.addPlot(row=position // 2, col=position % 2)
            # Without grid lines, and with the x range fixed per run, a repaint costs about a third of the CPU
            # time (measured offscreen). That matters because a training thread competing for the GIL
            # stretches every millisecond of GUI work.
            style_plot(plot, title, self.tr("epoch"), grid=False)
            self.curve_sets[key] = CurveSet(plot)
        for key, names in STAT_GROUPS.items():
            for name in names:
                self.curve_sets[key].curve(name)

    # ------------------------------------------------------------------------------------------------------
    # Project and category

    @property
    def project(self) -> Project | None:
        return self.context.project

    def _project_changed(self, project: Project | None) -> None:
        self.queue.set_project(project)
        config = GlassConfig()
        if project is not None:
            stored = project.get_setting(FORM_SETTING)
            if isinstance(stored, str):
                try:
                    config = GlassConfig.from_yaml(stored)
                except ConfigError as exc:
                    logger.warning("Ignoring the stored training settings of %s: %s", project.folder, exc)
        self.form.set_config(config)
        self._refresh_categories()
        self._refresh_lists()
        self._update_weights_label()
        waiting = len(self.queue.waiting())
        if waiting:
            self._append_log(self.tr("{count} trainings are waiting in the queue. Press Start to run them.")
                             .format(count=waiting))

    def _category_changed(self, category: str) -> None:
        for row in range(self.category_list.count()):
            item = self.category_list.item(row)
            item.setCheckState(Qt.CheckState.Checked if item.text() == category else Qt.CheckState.Unchecked)

    def _refresh_categories(self) -> None:
        self.category_list.clear()
        project = self.project
        if project is None:
            return
        for category in project.categories():
            item = QListWidgetItem(category)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            checked = category == (self.context.category or "")
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.category_list.addItem(item)

    def checked_categories(self) -> list[str]:
        return [self.category_list.item(row).text() for row in range(self.category_list.count())
                if self.category_list.item(row).checkState() == Qt.CheckState.Checked]

    def set_checked_categories(self, categories: list[str]) -> None:
        for row in range(self.category_list.count()):
            item = self.category_list.item(row)
            item.setCheckState(Qt.CheckState.Checked if item.text() in categories else Qt.CheckState.Unchecked)

    def _refresh_lists(self) -> None:
        self.queue_list.clear()
        for item in self.queue.waiting():
            run_id = self.queue.linked_run(item.id)
            kind = self.tr("resume") if run_id is not None and item.state == "waiting" else ""
            state = self.tr("running") if item.state == "running" else self.tr("waiting")
            text = f"{item.category} — {state}" + (f" ({kind})" if kind else "")
            entry = QListWidgetItem(text)
            entry.setData(Qt.ItemDataRole.UserRole, item.id)
            self.queue_list.addItem(entry)
        self._refresh_runs()

    def _refresh_runs(self) -> None:
        project = self.project
        runs: list[RunRecord] = project.runs() if project is not None else []
        selected = self.selected_run_id()
        self.runs_table.setRowCount(len(runs))
        for row, run in enumerate(reversed(runs)):
            auroc = (run.metrics or {}).get("image_auroc")
            values = [run.name, run.category, run.status, "–" if auroc is None else f"{auroc:.3f}"]
            for column, value in enumerate(values):
                cell = QTableWidgetItem(value)
                cell.setData(Qt.ItemDataRole.UserRole, run.id)
                cell.setToolTip(run.error if column == 2 and run.error else str(run.run_dir))
                self.runs_table.setItem(row, column, cell)
            if run.id == selected:
                self.runs_table.selectRow(row)
        self._update_buttons()

    def selected_run_id(self) -> int | None:
        rows = self.runs_table.selectionModel().selectedRows() if self.runs_table.selectionModel() else []
        if not rows:
            return None
        return self.runs_table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)

    def select_run(self, run_id: int) -> None:
        for row in range(self.runs_table.rowCount()):
            if self.runs_table.item(row, 0).data(Qt.ItemDataRole.UserRole) == run_id:
                self.runs_table.selectRow(row)

    def _update_buttons(self) -> None:
        project = self.project
        writable = project is not None and not project.read_only
        running = self.queue.is_running()
        self.start_button.setEnabled(writable and not running)
        self.cancel_button.setEnabled(running)
        self.queue_button.setEnabled(writable)
        self.remove_button.setEnabled(writable and bool(self.queue_list.selectedItems()))
        run_id = self.selected_run_id()
        status = project.run(run_id).status if project is not None and run_id is not None else ""
        self.resume_button.setEnabled(writable and status in RESUMABLE)

    # ------------------------------------------------------------------------------------------------------
    # Weights

    def _update_weights_label(self) -> None:
        try:
            backbone = self.form.config().backbone
        except ConfigError:
            return
        status = weights_status(backbone)
        texts = {
            "file": self.tr("Pretrained weights from the file {path}."),
            "file_missing": self.tr("The weights file {path} does not exist. Choose another file in "
                                    "Backbone > Weights, or clear it."),
            "imported": self.tr("Pretrained weights: imported file {path}."),
            "cache": self.tr("Pretrained weights: torchvision cache {path}."),
            "download": self.tr("No pretrained weights for {name} on this computer. Training will try to download "
                                "them from torchvision, which needs internet access. Without it, use "
                                "Import weights file…"),
            "random": self.tr("Random backbone weights (random_init): for tests only, results are meaningless."),
        }
        self.weights_label.setText(texts[status.state].format(path=status.path, name=backbone.name))
        self.weights_label.setStyleSheet("" if status.state in ("file", "imported", "cache") else "color: #c62828;")

    def _choose_weights_file(self) -> None:
        backbone = self.form.value("backbone.name")
        path, _filter = QFileDialog.getOpenFileName(
            self, self.tr("Import weights for {name}").format(name=backbone), "",
            self.tr("PyTorch state dicts (*.pth *.pt);;All files (*)"))
        if path:
            self.import_weights_file(backbone, Path(path))

    def import_weights_file(self, backbone: str, path: Path):
        """Check `path` against `backbone` in a worker and copy it to the imported-weights folder; return the worker."""
        worker = run_with_progress(self, lambda _progress, _cancelled: import_weights(backbone, path),
                                   self.tr("Import weights"), self.tr("Checking {file}…").format(file=path.name))

        def succeeded(target: Path) -> None:
            self._append_log(self.tr("Imported weights for {name}: {path}").format(name=backbone, path=target))
            self.context.show_status(self.tr("Weights for {name} imported").format(name=backbone))
            self._update_weights_label()

        worker.succeeded.connect(succeeded)
        worker.failed.connect(lambda message, details: show_error(
            self, self.tr("Import weights"), message, details))
        return worker

    # ------------------------------------------------------------------------------------------------------
    # Queue actions

    def current_config(self) -> GlassConfig | None:
        """Return the form's configuration, or None after showing its validation error."""
        try:
            return self.form.config()
        except ConfigError as exc:
            show_error(self, self.tr("Invalid settings"), str(exc))
            return None

    def enqueue_checked(self) -> list[int]:
        """Queue a training of each checked category with the form's settings; return the queue ids."""
        config = self.current_config()
        categories = self.checked_categories()
        if config is None or self.project is None:
            return []
        if not categories:
            show_error(self, self.tr("Nothing to queue"), self.tr("Check at least one category to train."))
            return []
        try:
            self.project.set_setting(FORM_SETTING, config.to_yaml())
            ids = [self.queue.enqueue(category, config) for category in categories]
        except GlassError as exc:
            show_error(self, self.tr("Cannot queue the training"), str(exc))
            return []
        self._append_log(self.tr("Queued: {categories}").format(categories=", ".join(categories)))
        return ids

    def start(self) -> bool:
        """Run the queue, queueing the checked categories first when it is empty; return whether one runs."""
        if self.queue.is_running():
            return True
        if not self.queue.waiting() and not self.enqueue_checked():
            return False
        return self.queue.start()

    def cancel(self) -> None:
        if self.queue.is_running():
            self._append_log(self.tr("Cancelling after the current batch…"))
            self.queue.cancel()

    def _remove_selected(self) -> None:
        for entry in self.queue_list.selectedItems():
            try:
                self.queue.remove(entry.data(Qt.ItemDataRole.UserRole))
            except GlassError as exc:
                show_error(self, self.tr("Cannot remove the queue entry"), str(exc))

    def _resume_selected(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.resume(run_id)

    def resume(self, run_id: int) -> bool:
        """Queue run `run_id` to continue from its last epoch and start the queue; return whether one runs."""
        try:
            self.queue.enqueue_resume(run_id)
        except GlassError as exc:
            show_error(self, self.tr("Cannot resume the run"), str(exc))
            return False
        return self.queue.start()

    # ------------------------------------------------------------------------------------------------------
    # Progress

    def _reset_plots(self, epochs: int) -> None:
        self._history = {}
        for curve_set in self.curve_sets.values():
            curve_set.clear()
            curve_set.plot.setXRange(0, epochs, padding=0.02)

    def _show_selected_history(self) -> None:
        """Plot the per-epoch history of the selected run, unless a training is running."""
        project, run_id = self.project, self.selected_run_id()
        if self.queue.is_running() or project is None or run_id is None:
            return
        run = project.run(run_id)
        try:
            epochs = GlassConfig.from_yaml(run.config_yaml).method.meta_epochs if run.config_yaml else 1
        except ConfigError:
            epochs = 1
        self._reset_plots(epochs)
        self._load_history(run.run_dir)
        self._plots_dirty = True
        self._redraw_plots()

    def _job_started(self, job: TrainingJob) -> None:
        self._reset_plots(job.config.method.meta_epochs)
        if job.resumed:
            self._load_history(job.run_dir)
        self._plots_dirty = True
        self._job_started_at = time.monotonic()
        self._last_eta = None
        self.progress_bar.setValue(0)
        verb = self.tr("Resuming") if job.resumed else self.tr("Training")
        self.progress_label.setText(self.tr("{verb} {category}…").format(verb=verb, category=job.category))
        self._append_log(self.tr("{verb} {category} in {folder}").format(verb=verb, category=job.category,
                                                                         folder=job.run_dir))
        self.context.runs_changed.emit()

    def _load_history(self, run_dir: Path) -> None:
        for row in RunFolder(run_dir).read_history():
            epoch = float(row.get("epoch") or 0) + 1
            for key, value in row.items():
                if isinstance(value, float) and key not in ("epoch", "seconds"):
                    name = key.removeprefix("eval_")
                    self._history.setdefault(name, []).append((epoch, value))

    def _training_event(self, event: TrainingEvent) -> None:
        if event.kind == "batch":
            self._show_progress(event)
            x = event.progress * event.total_epochs
            for name, value in event.stats.items():
                self._history.setdefault(name, []).append((x, value))
            self._plots_dirty = True
            return
        if event.kind == "epoch":
            self._last_eta = event.eta_seconds
            self._show_progress(event)
        if event.kind == "evaluation":
            for name, value in event.metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._history.setdefault(name, []).append((float(event.epoch), float(value)))
            self._plots_dirty = True
        if event.message:
            prefix = self.tr("Warning: ") if event.kind == "warning" else ""
            self._append_log(prefix + event.message)

    def _show_progress(self, event: TrainingEvent) -> None:
        self.progress_bar.setValue(int(round(event.progress * 1000)))
        eta = self._last_eta
        if event.kind == "batch" or eta is None:
            eta = eta_seconds(time.monotonic() - self._job_started_at, event.progress, 1.0)
        parts = [self.tr("Epoch {epoch}/{total}").format(epoch=event.epoch, total=event.total_epochs)]
        if event.sample_limit:
            parts.append(self.tr("samples {done}/{limit}").format(done=event.samples, limit=event.sample_limit))
        parts.append(self.tr("ETA {eta}").format(eta=format_duration(eta)))
        self.progress_label.setText(" · ".join(parts))

    def _redraw_plots(self) -> None:
        if not self._plots_dirty:
            return
        self._plots_dirty = False
        stat_names = {name: group for group, names in STAT_GROUPS.items() for name in names}
        for name, points in self._history.items():
            group = stat_names.get(name, "eval")
            xs = [x for x, _y in points]
            ys = [y for _x, y in points]
            self.curve_sets[group].set_data(name, xs, ys)

    def _job_ended(self, job: TrainingJob, status: str, message: str, details: str) -> None:
        self._redraw_plots()
        if status == "done":
            self.progress_bar.setValue(1000)
            self.progress_label.setText(self.tr("Finished {category}.").format(category=job.category))
            self._append_log(self.tr("Finished {category}: run {folder}").format(category=job.category,
                                                                                folder=job.run_dir))
            self.context.show_status(self.tr("Training of {category} finished").format(category=job.category))
        elif status == "cancelled":
            self.progress_label.setText(self.tr("Cancelled {category}. Resume the run to continue.")
                                        .format(category=job.category))
            self._append_log(self.tr("Cancelled {category}").format(category=job.category))
        else:
            self.progress_label.setText(self.tr("Training of {category} failed.").format(category=job.category))
            self._append_log(self.tr("Failed {category}: {message}").format(category=job.category, message=message))
            show_error(self, self.tr("Training of {category} failed").format(category=job.category),
                       message, details)
        self.context.runs_changed.emit()

    def _append_log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')}  {text}")

    # ------------------------------------------------------------------------------------------------------
    # StudioView hooks

    def save_state(self) -> None:
        project = self.project
        if project is None or project.read_only:
            return
        try:
            project.set_setting(FORM_SETTING, self.form.config().to_yaml())
        except GlassError as exc:
            logger.info("Training settings not saved: %s", exc)

    def shutdown(self) -> None:
        """Cancel a running training; the main window then waits for the worker thread to end."""
        self.queue.cancel()

    def training_state(self) -> dict[str, Any]:
        """Return what the view shows now (running, progress 0..1, label), for tests and scripts."""
        return {"running": self.queue.is_running(), "progress": self.progress_bar.value() / 1000,
                "label": self.progress_label.text()}


def screenshot_config() -> GlassConfig:
    """Return the small training of `prepare_screenshots`: MobileNetV2 at 128 px, 3 epochs of 32 samples.

    Without pretrained MobileNetV2 weights on this computer it uses random weights, and the Results view then
    marks the run as meaningless.
    """
    config = preset("mobilenet").updated({
        "data.image_size": 128,
        "method.meta_epochs": 3,
        "method.eval_epochs": 1,
        "method.limit": 32,
        "method.step": 5,
    })
    if not weights_status(config.backbone).available:
        config = config.updated({"backbone.random_init": True})
    return config


def prepare_screenshots(views: Mapping[str, StudioView], timeout_s: float = 600.0) -> int | None:
    """Show a finished run of the current category in the Train and Results views; return its id.

    For `glass-studio --screenshots`: when the category has no finished run, this trains one with
    `screenshot_config()` and waits in a local event loop, so the window keeps painting. Returns None when
    no run could be made in `timeout_s`.
    """
    train = views.get("train")
    if not isinstance(train, TrainView) or train.project is None or not train.context.category:
        return None
    project, category = train.project, train.context.category
    if not any(run.status == "done" for run in project.runs(category)) and not project.read_only:
        _train_and_wait(train, category, timeout_s)

    done = [run for run in project.runs(category) if run.status == "done"]
    if not done:
        return None
    run_id = done[-1].id
    train.select_run(run_id)
    results = views.get("results")
    if results is not None and hasattr(results, "select_run"):
        results.refresh()
        results.select_run(run_id)
        row = results.top_defect_row()
        if row is not None:
            results.select_row(row)
    return run_id


def _train_and_wait(train: TrainView, category: str, timeout_s: float) -> None:
    loop = QEventLoop()
    statuses: list[str] = []

    def ended(_job: TrainingJob, status: str, message: str, _details: str) -> None:
        statuses.append(status)
        if status != "done":
            logger.error("Screenshot training of %s ended %s: %s", category, status, message)
        loop.quit()

    train.form.set_config(screenshot_config())
    train.set_checked_categories([category])
    train.queue.job_ended.connect(ended)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    try:
        if train.start():
            loop.exec()
        if not statuses:
            logger.error("Screenshot training of %s did not finish in %.0f s; cancelling it", category, timeout_s)
            train.cancel()
    finally:
        train.queue.job_ended.disconnect(ended)


register_view("train", QT_TRANSLATE_NOOP("views", "Train"), TrainView, order=30)
