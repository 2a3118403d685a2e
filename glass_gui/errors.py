"""One place that shows errors to the user, and the global exception hook that routes crashes there."""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

logger = logging.getLogger(__name__)


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    """Show a modal error box with an optional details section; the caller has already logged the error."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(message)
    if details:
        box.setDetailedText(details)
    box.exec()


class _ExceptionRelay(QObject):
    """Carries uncaught exceptions from any thread to the GUI thread, and shows one dialog at a time."""

    raised = Signal(str, str)

    def __init__(self) -> None:
        super().__init__()
        self._showing = False
        self.raised.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def _show(self, message: str, details: str) -> None:
        # While one dialog is open, further errors are only logged, so a repeating error cannot stack up boxes.
        if self._showing:
            return
        self._showing = True
        try:
            show_error(
                QApplication.activeWindow(),
                QCoreApplication.translate("errors", "Unexpected error"),
                QCoreApplication.translate(
                    "errors", "An unexpected error occurred:\n\n{message}\n\nDetails are in the log file."
                ).format(message=message),
                details,
            )
        finally:
            self._showing = False


_relay: _ExceptionRelay | None = None


def install_exception_hook() -> None:
    """Log every uncaught exception (GUI thread and other threads) and show one error dialog for it."""
    global _relay
    _relay = _ExceptionRelay()

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        logger.critical("Uncaught exception", exc_info=(kind, value, tb))
        details = "".join(traceback.format_exception(kind, value, tb))
        if _relay is not None:
            _relay.raised.emit(f"{kind.__name__}: {value}", details)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook

