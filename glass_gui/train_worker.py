"""Training for the GUI: the project's training queue, the worker that runs `Trainer`, and backbone weights.

Training data. A run trains on a `DatasetIndex` built directly from the project's image records, not on an
exported copy, so no image is copied. The paths in the run's scores.csv are the project's own image paths,
so scores, heatmaps and proposed masks map back to image ids by path. Images of the train split labelled
good are the training set. Every other image (test and validation splits, and defect images of any split)
is the test set, as `glass_engine.export.export_mvtec` would lay them out. Missing files are left out and
listed in run.json as skipped.

NOTE: run.json's dataset_root of such a run is the project folder, which `discover` cannot read, so
`glass-engine test --run` (evaluate_run) does not work on runs trained here; Predictor and the Results
view do not need it.

Queue. Queued trainings live in the project's queue table, so they survive a restart. A queue item that
resumes a run is linked to it through the project setting `QUEUE_RUNS_SETTING`. A run that was training
when the application ended is re-queued when the project opens again, and the Trainer resumes it from its
last completed epoch because the configuration is the same.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torchvision
from PySide6.QtCore import QCoreApplication, QObject, Signal

from glass_engine.config import BackboneConfig, GlassConfig
from glass_engine.data import DatasetIndex, Sample
from glass_engine.errors import ConfigError, GlassError, StoreError
from glass_engine.features import build_backbone, user_weights_dir
from glass_engine.fileio import atomic_write
from glass_engine.runs import RunFolder
from glass_engine.store import Project, QueueItem
from glass_engine.training import Trainer, TrainingEvent
from glass_gui.workers import Worker, task_runner

logger = logging.getLogger(__name__)

PROJECT_LAYOUT = "project"
"""`layout` recorded in run.json for runs trained on a project's image records."""
QUEUE_RUNS_SETTING = "train.queue_runs"
DISTRIBUTION_SETTING = "train.distribution_overrides"
OVERRIDE_MODES = ("auto", "manifold", "hypersphere")


# --------------------------------------------------------------------------------------------------------
# Training data and per-category settings


def index_from_project(project: Project, category: str) -> DatasetIndex:
    """Build the training and test samples of `category` from the project's records (see the module notes)."""
    train: list[Sample] = []
    test: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    for record in project.images(category=category, order="name"):
        if record.missing or not record.path.is_file():
            skipped.append((record.path, "image file is missing"))
            continue
        defective = record.label == "defect"
        split = "train" if record.split == "train" and not defective else "test"
        sample = Sample(
            path=record.path,
            split=split,
            label=1 if defective else 0,
            defect_type=(record.defect_type or "defect") if defective else "good",
            mask_path=record.mask_path if defective else None,
            fg_mask_path=record.fg_mask_path if split == "train" else None,
        )
        (train if split == "train" else test).append(sample)

    warnings = [f"{path}: {reason}" for path, reason in skipped]
    for warning in warnings:
        logger.warning("Category %s: %s", category, warning)
    if not train:
        raise ConfigError(
            f"Category {category!r} of project {project.folder} has no good images in the train split. "
            "Move good images to the train split in the Images view."
        )
    return DatasetIndex(project.folder, category, PROJECT_LAYOUT, train, test, skipped, warnings)


def distribution_overrides(project: Project) -> dict[str, str]:
    """Return the per-category distribution override (auto, manifold or hypersphere) from the project settings."""
    stored = project.get_setting(DISTRIBUTION_SETTING, {})
    return {str(key): str(value) for key, value in stored.items()} if isinstance(stored, dict) else {}


def set_distribution_override(project: Project, category: str, mode: str) -> None:
    if mode not in OVERRIDE_MODES:
        raise ConfigError(f"Unknown distribution override {mode!r}; use one of {', '.join(OVERRIDE_MODES)}.")
    overrides = distribution_overrides(project)
    if mode == "auto":
        overrides.pop(category, None)
    else:
        overrides[category] = mode
    project.set_setting(DISTRIBUTION_SETTING, overrides)


def apply_distribution_override(config: GlassConfig, project: Project, category: str) -> GlassConfig:
    """Return `config` with method.distribution forced to the category's override, when it has one."""
    mode = distribution_overrides(project).get(category, "auto")
    if mode == "auto":
        return config
    return config.updated({"method.distribution": mode})


def scores_by_image(project: Project, category: str, run_dir: Path) -> dict[int, float]:
    """Return the test scores of a run keyed by project image id (images are matched by their path)."""
    ids = {str(record.path): record.id for record in project.images(category=category, order="id")}
    scores: dict[int, float] = {}
    for row in RunFolder(run_dir).read_scores():
        image_id = ids.get(str(row["path"]))
        if image_id is not None:
            scores[image_id] = row["score"]
    return scores


# --------------------------------------------------------------------------------------------------------
# Backbone weights


@dataclass(frozen=True)
class WeightsStatus:
    """Where a training would take the backbone weights from, found by looking at files only.

    `state` is one of these values:
    - file: the config names an existing file; file_missing: it names a missing one.
    - imported: the file that Import weights file… stored for this backbone.
    - cache: torchvision's download cache contains the weights.
    - download: none was found, so torchvision would need the internet.
    - random: random_init is set.
    """

    state: str
    path: Path | None

    @property
    def available(self) -> bool:
        return self.state in ("file", "imported", "cache", "random")


def weights_status(config: BackboneConfig) -> WeightsStatus:
    """Check, without loading anything, which weights `build_backbone` would use for `config`."""
    if config.random_init:
        return WeightsStatus("random", None)
    if config.weights:
        path = Path(config.weights).expanduser()
        return WeightsStatus("file" if path.is_file() else "file_missing", path)
    imported = user_weights_dir() / f"{config.name}.pth"
    if imported.is_file():
        return WeightsStatus("imported", imported)
    try:
        weights_enum = torchvision.models.get_model_weights(config.name).DEFAULT
    except ValueError:
        return WeightsStatus("download", None)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name
    return WeightsStatus("cache" if cached.is_file() else "download", cached)


def import_weights(backbone: str, source: Path) -> Path:
    """Check that `source` loads into `backbone`, then copy it to the imported-weights folder; return the copy.

    Raises the engine's WeightsMismatchError (wrong architecture or not a state dict) or WeightsNotFoundError.
    """
    build_backbone(BackboneConfig(name=backbone, weights=str(source)))
    target = user_weights_dir() / f"{backbone}.pth"
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
    logger.info("Imported backbone weights for %s from %s to %s", backbone, source, target)
    return target


# --------------------------------------------------------------------------------------------------------
# One training in a worker thread


@dataclass
class TrainingJob:
    """A training being run: its queue item, run record, category, folder and configuration."""

    queue_id: int
    run_id: int
    category: str
    run_dir: Path
    config: GlassConfig
    resumed: bool = False


def _readable_failure(exc: BaseException) -> GlassError | None:
    """Return a GlassError with the fix for failures that have a known remedy, else None."""
    text = str(exc).lower()
    out_of_memory = isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "not enough memory" in text)
    )
    if out_of_memory:
        return GlassError(
            f"Training ran out of memory ({exc.__class__.__name__}: {exc}). Lower data.batch_size or "
            "data.image_size, lower run.cache_limit_mb, or close other programs, then resume the run."
        )
    return None


class TrainingSession(QObject):
    """Runs one TrainingJob in a worker thread and forwards the trainer's events as signals.

    Signals (delivered in the GUI thread): event(TrainingEvent), succeeded(dict metrics),
    failed(message, details), cancelled(), finished() last in every case.
    """

    event = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, project: Project, job: TrainingJob, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.job = job
        self.batches_after_cancel = 0
        """Batches the trainer finished after cancel() was called; the engine promises at most one."""
        self._cancel = threading.Event()
        self._worker: Worker | None = None
        self._worker_cancelled: Callable[[], bool] = lambda: False

    def start(self) -> None:
        title = QCoreApplication.translate("train", "Training {category}").format(category=self.job.category)
        self._worker = task_runner().start(self._train, title)
        self._worker.succeeded.connect(self.succeeded)
        self._worker.failed.connect(self.failed)
        self._worker.cancelled.connect(self.cancelled)
        self._worker.finished.connect(self.finished)

    def cancel(self) -> None:
        """Ask the trainer to stop; it raises CancelledError before its next batch."""
        self._cancel.set()
        if self._worker is not None:
            self._worker.cancel()

    def is_cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _on_event(self, event: TrainingEvent) -> None:
        # Runs in the worker thread; the signal is queued to receivers in the GUI thread. The task runner's
        # cancel_all (on quit) only flags the Worker, so the flag is passed on to the trainer here.
        if self._worker_cancelled():
            self._cancel.set()
        if event.kind == "batch" and self._cancel.is_set():
            self.batches_after_cancel += 1
        self.event.emit(event)

    def _train(self, _progress: Callable[[int, int], None], cancelled: Callable[[], bool]) -> dict[str, Any]:
        job = self.job
        self._worker_cancelled = cancelled
        index = index_from_project(self.project, job.category)
        started = time.monotonic()
        logger.info("Training %s in %s (%d train, %d test images)", job.category, job.run_dir,
                    len(index.train), len(index.test))
        trainer = Trainer(job.config, index, job.run_dir, on_event=self._on_event, cancel=self._cancel)
        try:
            metrics = trainer.run_training()
        except GlassError:
            raise
        except Exception as exc:
            readable = _readable_failure(exc)
            if readable is None:
                raise
            raise readable from exc
        if self.batches_after_cancel:
            logger.info("Trainer finished %d batches after the cancel request", self.batches_after_cancel)
        if not self.project.read_only:
            self.project.set_scores(job.run_id, scores_by_image(self.project, job.category, job.run_dir))
        logger.info("Training %s finished in %.1f s", job.category, time.monotonic() - started)
        return metrics


# --------------------------------------------------------------------------------------------------------
# The queue


def new_run_dir(project: Project, category: str) -> Path:
    """Return a fresh run folder path under the project's runs/ folder: `<category>_<date>-<time>[_n]`."""
    safe = re.sub(r"[^\w.-]+", "_", category).strip("._") or "category"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = project.runs_dir / f"{safe}_{stamp}"
    counter = 2
    while candidate.exists():
        candidate = project.runs_dir / f"{safe}_{stamp}_{counter}"
        counter += 1
    return candidate


class TrainingQueue(QObject):
    """Takes trainings from the project's queue one at a time and records each run in the project.

    A cancel or a failure pauses the queue, so one problem (missing weights, say) gives one message and not
    one per waiting item. `start()` continues with the next waiting item.

    Signals: queue_changed(), job_started(TrainingJob), event(TrainingEvent),
    job_ended(TrainingJob, status, message, details) with status done, failed or cancelled, and
    running_changed(bool).
    """

    queue_changed = Signal()
    job_started = Signal(object)
    event = Signal(object)
    job_ended = Signal(object, str, str, str)
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.project: Project | None = None
        self.session: TrainingSession | None = None
        self.last_session: TrainingSession | None = None
        self._outcome: tuple[str, str, str] = ("failed", "", "")

    # ------------------------------------------------------------------------------------------------------
    # Project

    def set_project(self, project: Project | None) -> None:
        if self.session is not None:
            self.cancel()
        self.project = project
        if project is not None and not project.read_only:
            self._recover_interrupted(project)
        self.queue_changed.emit()

    def _recover_interrupted(self, project: Project) -> None:
        """Re-queue trainings that were running when the application ended, so they can resume."""
        links = self._links()
        for item in project.queue(states=["running"]):
            project.set_queue_state(item.id, "waiting")
            logger.info("Queue item %d (%s) was interrupted; it waits to resume", item.id, item.category)
        linked_runs = {run_id for queue_id, run_id in links.items()
                       if any(item.id == queue_id for item in project.queue(states=["waiting"]))}
        for run in project.runs():
            if run.status not in ("running", "queued"):
                continue
            if run.id in linked_runs:
                project.update_run(run.id, status="queued")
            else:
                project.update_run(run.id, status="failed", error=QCoreApplication.translate(
                    "train", "Interrupted: the application ended during training. Resume the run to continue."))

    def _links(self) -> dict[int, int]:
        if self.project is None:
            return {}
        stored = self.project.get_setting(QUEUE_RUNS_SETTING, {})
        return {int(key): int(value) for key, value in stored.items()} if isinstance(stored, dict) else {}

    def _set_link(self, queue_id: int, run_id: int | None) -> None:
        links = self._links()
        if run_id is None:
            links.pop(queue_id, None)
        else:
            links[queue_id] = run_id
        self.project.set_setting(QUEUE_RUNS_SETTING, {str(key): value for key, value in links.items()})

    def linked_run(self, queue_id: int) -> int | None:
        return self._links().get(queue_id)

    # ------------------------------------------------------------------------------------------------------
    # Adding and removing

    def waiting(self) -> list[QueueItem]:
        return [] if self.project is None else self.project.queue(states=["waiting", "running"])

    def enqueue(self, category: str, config: GlassConfig) -> int:
        """Add a new training of `category` with `config` (the category's distribution override applies at start)."""
        project = self._require_project()
        queue_id = project.enqueue(category, config.validate().to_yaml())
        logger.info("Queued training of %s (queue item %d)", category, queue_id)
        self.queue_changed.emit()
        return queue_id

    def enqueue_resume(self, run_id: int) -> int:
        """Queue an unfinished run to continue from its last completed epoch with its own configuration."""
        project = self._require_project()
        run = project.run(run_id)
        if run.status == "done":
            raise StoreError(f"Run {run.name} has finished; there is nothing to resume. Start a new training.")
        if any(self.linked_run(item.id) == run_id for item in self.waiting()):
            raise StoreError(f"Run {run.name} is already in the queue.")
        queue_id = project.enqueue(run.category, run.config_yaml)
        self._set_link(queue_id, run_id)
        project.update_run(run_id, status="queued")
        logger.info("Queued run %d (%s) to resume (queue item %d)", run_id, run.run_dir, queue_id)
        self.queue_changed.emit()
        return queue_id

    def remove(self, queue_id: int) -> None:
        project = self._require_project()
        if self.session is not None and self.session.job.queue_id == queue_id:
            raise StoreError("This training is running. Cancel it first.")
        run_id = self.linked_run(queue_id)
        project.remove_from_queue(queue_id)
        self._set_link(queue_id, None)
        if run_id is not None and project.run(run_id).status == "queued":
            project.update_run(run_id, status="cancelled")
        self.queue_changed.emit()

    def _require_project(self) -> Project:
        if self.project is None:
            raise StoreError("No project is open. Open or create a project first.")
        return self.project

    # ------------------------------------------------------------------------------------------------------
    # Running

    def is_running(self) -> bool:
        return self.session is not None

    def start(self) -> bool:
        """Start the next waiting training unless one is running; return whether one runs now."""
        if self.session is not None:
            return True
        if self.project is None or self.project.read_only:
            return False
        item = self.project.next_queued()
        if item is None:
            return False
        try:
            job = self._prepare(item)
        except GlassError as exc:
            logger.error("Cannot start queue item %d (%s): %s", item.id, item.category, exc)
            self.project.set_queue_state(item.id, "failed")
            self.queue_changed.emit()
            failed_job = TrainingJob(item.id, -1, item.category, Path(), GlassConfig())
            self.job_ended.emit(failed_job, "failed", str(exc), "")
            return False

        self.session = TrainingSession(self.project, job, self)
        self.session.event.connect(self.event)
        self.session.succeeded.connect(lambda metrics: self._record_outcome("done", metrics))
        self.session.failed.connect(lambda message, details: self._record_outcome("failed", message, details))
        self.session.cancelled.connect(lambda: self._record_outcome("cancelled"))
        self.session.finished.connect(self._session_finished)
        self._outcome = ("failed", QCoreApplication.translate("train", "The training ended without a result."), "")
        self.session.start()
        self.queue_changed.emit()
        self.job_started.emit(job)
        self.running_changed.emit(True)
        return True

    def _prepare(self, item: QueueItem) -> TrainingJob:
        project = self.project
        run_id = self.linked_run(item.id)
        resumed = False
        if run_id is not None:
            run = project.run(run_id)
            config = GlassConfig.from_yaml(run.config_yaml)
            run_dir = run.run_dir
            resumed = True
        else:
            config = apply_distribution_override(GlassConfig.from_yaml(item.config_yaml), project, item.category)
            run_dir = new_run_dir(project, item.category)
            run_id = project.add_run(run_dir.name, item.category, run_dir, config.to_yaml(), status="running")
            self._set_link(item.id, run_id)
        project.update_run(run_id, status="running")
        project.set_queue_state(item.id, "running")
        logger.info("Starting %s training of %s in %s", "resumed" if resumed else "new", item.category, run_dir)
        return TrainingJob(item.id, run_id, item.category, run_dir, config, resumed)

    def cancel(self) -> None:
        """Stop the running training within one batch and pause the queue."""
        if self.session is not None:
            logger.info("Cancelling training of %s", self.session.job.category)
            self.session.cancel()

    def _record_outcome(self, status: str, message: Any = None, details: str = "") -> None:
        self._outcome = (status, str(message) if status == "failed" else "", details)

    def _session_finished(self) -> None:
        session = self.session
        if session is None:
            return
        job = session.job
        status, message, details = self._outcome
        self.session = None
        self.last_session = session
        self._store_outcome(session.project, job, status, message)
        self.queue_changed.emit()
        self.job_ended.emit(job, status, message, details)
        self.running_changed.emit(False)
        session.deleteLater()
        if status == "done":
            self.start()

    def _store_outcome(self, project: Project, job: TrainingJob, status: str, message: str) -> None:
        if project.read_only:
            return
        try:
            if status == "done":
                metrics = RunFolder(job.run_dir).read_metrics()
                project.update_run(job.run_id, status="done", metrics=metrics,
                                   threshold=RunFolder(job.run_dir).threshold())
            else:
                project.update_run(job.run_id, status=status, error=message or None)
            project.set_queue_state(job.queue_id, status)
            if project is self.project:
                self._set_link(job.queue_id, None)
        except GlassError as exc:
            logger.error("Cannot record the end of run %s in project %s: %s", job.run_dir, project.folder, exc)
