"""Video and camera inspection for the GUI: a `LiveInspector` whose results reach the GUI thread as signals.

The source is opened in a background thread (a camera or a stream URL can take seconds to open), and the
overlay of each frame is drawn in the inspector's processing thread. Only the newest overlay waits for the
GUI: when the GUI thread is busy, older overlays are replaced rather than queued, so a stalled GUI cannot
fill memory. The per-frame records for the log are kept in a bounded deque for the same reason.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QImage

from glass_engine.errors import GlassError
from glass_engine.video import (
    ArrayPredictor,
    FrameResult,
    FrameSource,
    InspectorStats,
    LiveInspector,
    fit_within,
    overlay,
)

logger = logging.getLogger(__name__)

DISPLAY_SIDE = 1280
"""Longest side in pixels of the overlay sent to the GUI; larger frames are shrunk before drawing."""
LOG_LIMIT = 500
"""Number of frame records kept for the GUI between two deliveries."""


@dataclass(frozen=True)
class SourceInfo:
    """Name, kind, frame rate, frame count and pacing mode of an opened source, for display."""

    name: str
    kind: str
    fps: float | None
    frame_count: int | None
    realtime: bool


@dataclass(frozen=True)
class FrameRecord:
    """One inspected frame, without its pixels, for the GUI's frame log."""

    index: int
    timestamp: float
    score: float
    is_defective: bool | None
    saved: bool


@dataclass(frozen=True)
class DisplayFrame:
    """The newest inspected frame drawn with its heatmap, outline and OK/NG label."""

    record: FrameRecord
    image: QImage


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """Copy an RGB uint8 array into a QImage (QImage may be created in any thread)."""
    rgb = np.ascontiguousarray(rgb)
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, width * 3, QImage.Format.Format_RGB888).copy()


def draw_frame(result: FrameResult, alpha: float, longest: int = DISPLAY_SIDE) -> QImage:
    """Draw the overlay of a frame result at most `longest` pixels wide or high."""
    frame = fit_within(result.frame_rgb, longest)
    anomaly_map = fit_within(result.map, longest, cv2.INTER_LINEAR)
    return rgb_to_qimage(overlay(frame, anomaly_map, result.threshold, alpha, result.score))


class VideoSession(QObject):
    """Inspects one video file, camera or stream in background threads.

    Signals, all emitted in the GUI thread:
        opened(SourceInfo): the source is open and inspection has started.
        frame_ready(): new frames were inspected; fetch them with `take_frames`.
        failed(str): the source cannot be opened, or inspection stopped on an error.
        finished(InspectorStats): last in every case once `start` was called.
    """

    opened = Signal(object)
    frame_ready = Signal()
    failed = Signal(str)
    finished = Signal(object)

    # Emitted in background threads; connected with queued connections to relay slots in the GUI thread.
    _opened_relay = Signal(object)
    _frame_relay = Signal()
    _failed_relay = Signal(str)
    _finished_relay = Signal(object)

    def __init__(self, predictor: ArrayPredictor, threshold: float | None, alpha: float = 0.5,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.predictor = predictor
        self._threshold = threshold
        self._alpha = alpha
        self._lock = threading.Lock()
        self._inspector: LiveInspector | None = None
        self._latest: DisplayFrame | None = None
        self._records: deque[FrameRecord] = deque(maxlen=LOG_LIMIT)
        self._frame_signalled = False
        self._stop_requested = False
        self._opener: threading.Thread | None = None
        self.running = False

        queued = Qt.ConnectionType.QueuedConnection
        self._opened_relay.connect(self.opened, queued)
        self._frame_relay.connect(self.frame_ready, queued)
        self._failed_relay.connect(self.failed, queued)
        self._finished_relay.connect(self._on_finished, queued)

    # -- control (GUI thread) -----------------------------------------------------------------------------

    def start(self, source: str | int | Path, realtime: bool, ng_folder: Path | None = None) -> None:
        """Open `source` and start inspecting in the background; `finished` follows in every case."""
        if self.running:
            raise RuntimeError("This VideoSession is already running; stop it first.")
        self.running = True
        self._stop_requested = False
        self._opener = threading.Thread(
            target=self._open_and_start, args=(source, realtime, ng_folder), name="video-open", daemon=True
        )
        self._opener.start()

    def pause(self) -> None:
        if self._inspector is not None:
            self._inspector.pause()

    def resume(self) -> None:
        if self._inspector is not None:
            self._inspector.resume()

    def step(self) -> None:
        if self._inspector is not None:
            self._inspector.step()

    @property
    def paused(self) -> bool:
        return self._inspector is not None and self._inspector.paused

    def stop(self) -> None:
        """Ask the session to stop without blocking the GUI; `finished` follows."""
        with self._lock:
            self._stop_requested = True
            inspector = self._inspector
        if inspector is not None:
            inspector.request_stop()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop and wait for the threads, for closing the application."""
        self.stop()
        if self._opener is not None:
            self._opener.join(timeout_s)
        if self._inspector is not None:
            self._inspector.stop()

    def set_threshold(self, threshold: float | None) -> None:
        self._threshold = threshold
        if self._inspector is not None:
            self._inspector.threshold = threshold

    def set_alpha(self, alpha: float) -> None:
        self._alpha = alpha
        if self._inspector is not None:
            self._inspector.alpha = alpha

    def set_ng_folder(self, folder: Path | None) -> None:
        """Start or stop saving NG frames; raises OutputError when the folder is not writable."""
        if self._inspector is not None:
            self._inspector.set_ng_folder(folder)

    def stats(self) -> InspectorStats | None:
        return self._inspector.stats() if self._inspector is not None else None

    def take_frames(self) -> tuple[DisplayFrame | None, list[FrameRecord]]:
        """Return the newest drawn frame (None if none came since the last call) and the new frame records."""
        with self._lock:
            latest, self._latest = self._latest, None
            records = list(self._records)
            self._records.clear()
            self._frame_signalled = False
        return latest, records

    # -- background threads -------------------------------------------------------------------------------

    def _open_and_start(self, source: str | int | Path, realtime: bool, ng_folder: Path | None) -> None:
        try:
            frame_source = FrameSource(source)
        except GlassError as exc:
            self._failed_relay.emit(str(exc))
            self._finished_relay.emit(InspectorStats(finished=True, error=str(exc)))
            return

        inspector = LiveInspector(
            self.predictor, self._threshold, on_result=self._on_result,
            on_finished=self._finished_relay.emit, alpha=self._alpha,
        )
        try:
            if ng_folder is not None:
                inspector.set_ng_folder(ng_folder)
        except GlassError as exc:
            frame_source.close()
            self._failed_relay.emit(str(exc))
            self._finished_relay.emit(InspectorStats(finished=True, error=str(exc)))
            return

        with self._lock:
            stop_requested = self._stop_requested
            if not stop_requested:
                self._inspector = inspector
        if stop_requested:
            frame_source.close()
            self._finished_relay.emit(InspectorStats(finished=True))
            return

        live = frame_source.is_live
        info = SourceInfo(frame_source.name, frame_source.kind, frame_source.fps, frame_source.frame_count,
                          realtime or live)
        self._opened_relay.emit(info)
        inspector.start(frame_source, realtime=realtime)

    def _on_result(self, result: FrameResult) -> None:
        record = FrameRecord(result.index, result.timestamp, result.score, result.is_defective,
                             result.saved is not None)
        frame = DisplayFrame(record, draw_frame(result, self._alpha))
        with self._lock:
            self._latest = frame
            self._records.append(record)
            notify = not self._frame_signalled
            self._frame_signalled = True
        if notify:
            self._frame_relay.emit()

    @Slot(object)
    def _on_finished(self, stats: InspectorStats) -> None:
        self.running = False
        if stats.error and self._inspector is not None:
            self.failed.emit(stats.error)
        logger.info("Video session finished: %s", stats)
        self.finished.emit(stats)
