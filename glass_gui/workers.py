"""Background work for the GUI: run a callable in a QThread with progress, cancel and error signals.

The callable receives `progress(done, total)` and `cancelled()` and returns a result. Only the GUI thread
touches widgets: the worker reports through signals, which Qt delivers to receivers in the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QProgressDialog, QWidget

from glass_engine.errors import CancelledError, GlassError

logger = logging.getLogger(__name__)

Task = Callable[[Callable[[int, int], None], Callable[[], bool]], Any]


class _Job(QObject):
    """Lives in the worker thread and runs the task; its signals reach `Worker` through queued connections."""

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, task: Task, title: str, cancel: threading.Event):
        super().__init__()
        self._task = task
        self._title = title
        self._cancel = cancel

    @Slot()
    def run(self) -> None:
        if self._cancel.is_set():
            self.cancelled.emit()
            self.finished.emit()
            return
        try:
            result = self._task(self.progress.emit, self._cancel.is_set)
        except CancelledError:
            logger.info("%s: cancelled", self._title)
            self.cancelled.emit()
        except GlassError as exc:
            logger.error("%s failed: %s", self._title, exc)
            self.failed.emit(str(exc), "")
        except Exception as exc:  # noqa: BLE001 - any bug in a task must reach the user, not end the thread silently
            logger.exception("%s failed unexpectedly", self._title)
            self.failed.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.succeeded.emit(result)
        finally:
            self.finished.emit()


class Worker(QObject):
    """The GUI-thread handle of one task. Its signals are emitted in the GUI thread, so any slot, lambdas
    included, may touch widgets: progress(done, total), succeeded(result), failed(message, details),
    cancelled(), and finished() last in every case."""

    progress = Signal(int, int)
    succeeded = Signal(object)
    failed = Signal(str, str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, task: Task, title: str):
        super().__init__()
        self.title = title
        self._cancel = threading.Event()
        self.job = _Job(task, title, self._cancel)
        # Bound methods of this GUI-thread object: Qt queues the calls from the worker thread.
        self.job.progress.connect(self._relay_progress)
        self.job.succeeded.connect(self._relay_succeeded)
        self.job.failed.connect(self._relay_failed)
        self.job.cancelled.connect(self._relay_cancelled)
        self.job.finished.connect(self._relay_finished)
        self.done = False

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot(int, int)
    def _relay_progress(self, done: int, total: int) -> None:
        self.progress.emit(done, total)

    @Slot(object)
    def _relay_succeeded(self, result: object) -> None:
        self.succeeded.emit(result)

    @Slot(str, str)
    def _relay_failed(self, message: str, details: str) -> None:
        self.failed.emit(message, details)

    @Slot()
    def _relay_cancelled(self) -> None:
        self.cancelled.emit()

    @Slot()
    def _relay_finished(self) -> None:
        self.done = True
        self.finished.emit()


class TaskRunner(QObject):
    """Starts workers in their own threads and keeps them alive until they finish.

    The runner outlives dialogs that start tasks, so closing a dialog never destroys a running thread.
    """

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._running: dict[Worker, QThread] = {}

    def start(self, task: Task, title: str) -> Worker:
        """Create a worker for `task` and start its thread once control returns to the event loop.

        The delayed start lets the caller connect to the worker's signals first, so no signal is lost.
        """
        worker = Worker(task, title)
        worker.setParent(self)
        thread = QThread()
        thread.setObjectName(title)
        worker.job.moveToThread(thread)
        thread.started.connect(worker.job.run)
        worker.job.finished.connect(thread.quit)
        # A bound method of the runner, which lives in the GUI thread, so Qt queues the call there.
        thread.finished.connect(self._thread_finished)
        self._running[worker] = thread
        QTimer.singleShot(0, thread.start)
        return worker

    @Slot()
    def _thread_finished(self) -> None:
        thread = self.sender()
        for worker, candidate in list(self._running.items()):
            if candidate is thread:
                del self._running[worker]
                thread.wait()
                thread.deleteLater()
                worker.job.deleteLater()
                worker.deleteLater()

    def running(self) -> list[Worker]:
        return list(self._running)

    def cancel_all(self) -> None:
        for worker in self._running:
            worker.cancel()

    def wait_all(self, timeout_ms: int = 30_000) -> bool:
        """Cancel every task and wait for the threads to end; return False if one is still running."""
        self.cancel_all()
        QCoreApplication.processEvents()
        finished = True
        for thread in list(self._running.values()):
            if thread.isRunning():
                finished = thread.wait(timeout_ms) and finished
        # Deliver the queued finished signals, so the runner drops the ended threads from its list.
        for _ in range(3):
            QCoreApplication.processEvents()
        return finished


_runner: TaskRunner | None = None


def task_runner() -> TaskRunner:
    """Return the application-wide runner (a child of the QApplication)."""
    global _runner
    if _runner is None:
        _runner = TaskRunner(QCoreApplication.instance())
        _runner.destroyed.connect(_runner_destroyed)
    return _runner


def _runner_destroyed() -> None:
    global _runner
    _runner = None


def run_with_progress(parent: QWidget, task: Task, title: str, label: str) -> Worker:
    """Start `task` with a modal progress dialog whose Cancel button cancels it; return the worker."""
    dialog = QProgressDialog(label, QCoreApplication.translate("workers", "Cancel"), 0, 0, parent)
    dialog.setWindowTitle(title)
    dialog.setMinimumDuration(300)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)

    worker = task_runner().start(task, title)

    def on_progress(done: int, total: int) -> None:
        dialog.setMaximum(max(total, 1))
        dialog.setValue(done)

    worker.progress.connect(on_progress)
    dialog.canceled.connect(worker.cancel)
    worker.finished.connect(dialog.deleteLater)
    worker.finished.connect(dialog.close)
    return worker
