"""Inspect video files, cameras and streams frame by frame with a trained run, without Qt.

`FrameSource` wraps `cv2.VideoCapture`. `LiveInspector` runs a reader thread and a processing thread
joined by a one-frame buffer. The reader replaces a waiting frame with the newest one. So when the model is
slower than the source, the older frames are dropped and counted, and memory does not grow with the
backlog. For video files, `realtime=False` turns the buffer into a hand-over that waits for the model, so
every frame is inspected.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from glass_engine.errors import DatasetError, GlassError, OutputError
from glass_engine.fileio import atomic_write_bytes, ensure_writable_dir

logger = logging.getLogger(__name__)

FPS_WINDOW = 30
"""Number of recent processed frames over which the measured frame rate is averaged."""
STOP_TIMEOUT_S = 5.0
"""Time `LiveInspector.stop` waits for each thread; a camera read can block for a while."""
NG_CSV_NAME = "ng_frames.csv"
NG_CSV_COLUMNS = ("frame", "timestamp_s", "score", "threshold", "image", "overlay", "source")


class ArrayPredictor(Protocol):
    """The part of `glass_engine.inference.Predictor` that the inspector calls."""

    def predict_arrays(self, images: list[np.ndarray], names: list[str] | None = None) -> list: ...


# ----------------------------------------------------------------------------------------------------------
# Sources


def parse_source(text: str | int | Path) -> str | int | Path:
    """Turn user input into a camera index (int), a stream URL (str with "://") or a file path (Path)."""
    if isinstance(text, (int, Path)):
        return text
    stripped = str(text).strip()
    if stripped.isdigit():
        return int(stripped)
    if "://" in stripped:
        return stripped
    return Path(stripped)


class FrameSource:
    """An opened video file, camera (by index) or stream (by URL) that yields RGB uint8 frames.

    Raises DatasetError when the source cannot be opened. Call `close` (or use `with`) to release it.

    NOTE: only video files and the failure to open an absent camera are tested; reading from a real
    camera or stream URL has not been run.
    """

    def __init__(self, source: str | int | Path):
        self.source = parse_source(source)
        if isinstance(self.source, int):
            self.kind = "camera"
            self.name = f"camera {self.source}"
        elif isinstance(self.source, str):
            self.kind = "stream"
            self.name = self.source
        else:
            self.kind = "file"
            self.name = str(self.source)
            if not self.source.is_file():
                raise DatasetError(f"Video file {self.source} not found. Check the path or choose another file.")

        target = self.source if isinstance(self.source, int) else str(self.source)
        self._capture = cv2.VideoCapture(target)
        if not self._capture.isOpened():
            self._capture.release()
            raise DatasetError(self._open_failure_message())

        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if np.isfinite(fps) and fps > 0 else None
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.kind == "file" else 0
        # Containers may store no count or a wrong one; it only sizes progress bars.
        self.frame_count: int | None = count if count > 0 else None
        self._closed = False
        logger.info("Opened %s %s (fps %s, frames %s)", self.kind, self.name, self.fps, self.frame_count)

    def _open_failure_message(self) -> str:
        if self.kind == "camera":
            return (
                f"Camera {self.source} could not be opened. Check that it is connected and not in use by another "
                "program, or give another camera index."
            )
        if self.kind == "stream":
            return f"Stream {self.source} could not be opened. Check the URL and that the stream is running."
        return (
            f"Video file {self.source} could not be opened. Check that it is a video in a format OpenCV can decode "
            "(for example MP4/H.264 or AVI/MJPG)."
        )

    @property
    def is_live(self) -> bool:
        """True for cameras and streams, whose frames arrive at their own pace and cannot wait."""
        return self.kind != "file"

    def read(self) -> np.ndarray | None:
        """Return the next frame as RGB uint8 (H, W, 3), or None at the end of the source."""
        if self._closed:
            return None
        ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        if frame.ndim == 2:
            return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        if frame.shape[2] == 4:
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def position_ms(self) -> float:
        return float(self._capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._capture.release()
            logger.info("Closed %s", self.name)

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------------------
# Overlay


def heatmap_rgb(anomaly_map: np.ndarray) -> np.ndarray:
    """Colour an anomaly map with COLORMAP_JET on the fixed range 0..1 (blue 0, red 1); return RGB uint8."""
    levels = np.clip(np.nan_to_num(np.asarray(anomaly_map, dtype=np.float32)), 0.0, 1.0)
    coloured = cv2.applyColorMap(np.rint(levels * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def overlay(
    frame_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    threshold: float | None,
    alpha: float = 0.5,
    score: float | None = None,
    label: bool = True,
) -> np.ndarray:
    """Blend the heatmap on the frame, outline the region at or above `threshold` and write OK/NG and the score.

    The map is resized to the frame when their sizes differ. Pass the model's image `score`: it is the
    maximum of the unblurred patch scores, so it is usually above the maximum of the blurred map, which
    the label shows when `score` is None. For the same reason an NG image can have no outline. Without a
    threshold there is no outline and the label shows only the score. Returns a new RGB uint8 image.
    """
    frame = _as_rgb(frame_rgb)
    height, width = frame.shape[:2]
    anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
    if anomaly_map.shape != (height, width):
        anomaly_map = cv2.resize(anomaly_map, (width, height), interpolation=cv2.INTER_LINEAR)

    alpha = float(np.clip(alpha, 0.0, 1.0))
    blended = cv2.addWeighted(frame, 1.0 - alpha, heatmap_rgb(anomaly_map), alpha, 0.0)

    thickness = max(1, round(max(height, width) / 300))
    if threshold is not None:
        region = (anomaly_map >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(blended, contours, -1, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.drawContours(blended, contours, -1, (255, 255, 255), thickness, cv2.LINE_AA)
    if label:
        if score is None:
            score = float(anomaly_map.max()) if anomaly_map.size else 0.0
        _draw_label(blended, score, threshold)
    return blended


def _draw_label(image: np.ndarray, score: float, threshold: float | None) -> None:
    height, width = image.shape[:2]
    if threshold is None:
        text, colour = f"{score:.3f}", (255, 255, 255)
    elif score >= threshold:
        text, colour = f"NG {score:.3f}", (230, 30, 30)
    else:
        text, colour = f"OK {score:.3f}", (20, 170, 60)

    font = cv2.FONT_HERSHEY_SIMPLEX
    # The same share of the long side on thumbnails and full frames, but never taller than the image.
    scale = max(0.35, min(max(height, width) / 400, min(height, width) / 80))
    weight = max(1, round(scale * 2))
    (text_w, text_h), baseline = cv2.getTextSize(text, font, scale, weight)
    pad = max(2, round(4 * scale))
    cv2.rectangle(image, (0, 0), (text_w + 2 * pad, text_h + baseline + 2 * pad), colour, cv2.FILLED)
    cv2.putText(image, text, (pad, pad + text_h), font, scale, (255, 255, 255), weight, cv2.LINE_AA)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"Expected an RGB uint8 frame, got dtype {image.dtype}.")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise ValueError(f"Expected an RGB frame of shape (H, W, 3), got {image.shape}.")


def fit_within(image: np.ndarray, longest: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Shrink an image or map so that its longest side is at most `longest` pixels; smaller ones are kept."""
    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=interpolation)


# ----------------------------------------------------------------------------------------------------------
# Inspection pipeline


@dataclass
class FrameResult:
    """The inspection of one frame."""

    index: int
    """Number of the frame in the source, counting from 0 and including dropped frames."""
    timestamp: float
    """Seconds: the frame's position in a file, or the time since the start for a camera or stream."""
    score: float
    is_defective: bool | None
    """score >= threshold, or None without a threshold."""
    map: np.ndarray
    """(H, W) float32 anomaly map at the frame's size."""
    frame_rgb: np.ndarray
    threshold: float | None = None
    saved: tuple[Path, Path] | None = None
    """Image and overlay written for an NG frame when saving is on."""


@dataclass
class InspectorStats:
    """Counters of a `LiveInspector` at one moment."""

    read: int = 0
    processed: int = 0
    dropped: int = 0
    """Frames replaced by a newer frame before the model took them."""
    skipped_paused: int = 0
    """Frames of a camera or stream replaced while paused; they are not counted as dropped."""
    pending: int = 0
    fps: float | None = None
    """Processed frames per second over the last FPS_WINDOW frames."""
    source_fps: float | None = None
    ng: int = 0
    saved: int = 0
    paused: bool = False
    finished: bool = False
    error: str | None = None
    max_pending: int = 0
    """Largest number of frames the buffer held at once, for checking that memory stays bounded."""


@dataclass
class _PendingFrame:
    index: int
    timestamp: float
    rgb: np.ndarray


@dataclass
class _SharedState:
    slot: deque = field(default_factory=lambda: deque(maxlen=1))
    paused: bool = False
    steps: int = 0
    stopping: bool = False
    reader_done: bool = False
    finished: bool = False
    error: str | None = None


class NgFrameWriter:
    """Saves NG frames into a folder: the frame PNG, the heatmap overlay PNG and one line of ng_frames.csv."""

    def __init__(self, folder: Path, source_name: str = "", prefix: str = "frame"):
        self.folder = ensure_writable_dir(Path(folder))
        self.source_name = source_name
        self.prefix = prefix
        self.csv_path = self.folder / NG_CSV_NAME
        self.saved = 0
        # A session started at the same second in the same folder must not overwrite the last one's files.
        self._session = time.strftime("%Y%m%d-%H%M%S")

    def save(self, result: FrameResult, alpha: float = 0.5) -> tuple[Path, Path]:
        stem = f"{self.prefix}_{self._session}_{result.index:07d}"
        image_path = self.folder / f"{stem}.png"
        overlay_path = self.folder / f"{stem}_overlay.png"
        _write_png(image_path, result.frame_rgb)
        _write_png(overlay_path, overlay(result.frame_rgb, result.map, result.threshold, alpha, result.score))
        self._append_csv_row(result, image_path, overlay_path)
        self.saved += 1
        return image_path, overlay_path

    def _append_csv_row(self, result: FrameResult, image_path: Path, overlay_path: Path) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        threshold = "" if result.threshold is None else f"{result.threshold:.6f}"
        row = [result.index, f"{result.timestamp:.3f}", f"{result.score:.6f}", threshold,
               image_path.name, overlay_path.name, self.source_name]
        writer.writerow(row)
        # Rewriting the whole file atomically for every NG frame would make a long session quadratic in time.
        # Appending one whole line per frame stays linear, and a crash can cut only the last line.
        try:
            new_file = not self.csv_path.is_file()
            with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
                if new_file:
                    csv.writer(handle).writerow(NG_CSV_COLUMNS)
                handle.write(buffer.getvalue())
                handle.flush()
        except OSError as exc:
            raise OutputError(f"Cannot append to {self.csv_path}: {exc.strerror}. Choose a writable folder.") from exc


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OutputError(f"Cannot encode {path.name} as PNG.")
    atomic_write_bytes(path, encoded.tobytes())


class LiveInspector:
    """Scores frames of a `FrameSource` in two threads with a one-frame buffer between reader and model.

    `on_result(FrameResult)` and `on_finished(InspectorStats)` are called in the processing thread. For a
    camera or stream, and for a file with `realtime=True`, the reader paces itself by the source (a file
    by its fps) and replaces a frame that is still waiting, counting it as dropped. For a file with
    `realtime=False` the reader waits until the model has taken the previous frame, so no frame is dropped.
    """

    def __init__(
        self,
        predictor: ArrayPredictor,
        threshold: float | None,
        on_result: Callable[[FrameResult], None] | None = None,
        on_finished: Callable[[InspectorStats], None] | None = None,
        alpha: float = 0.5,
    ):
        self.predictor = predictor
        self.threshold = threshold
        self.alpha = alpha
        self.on_result = on_result
        self.on_finished = on_finished
        self._condition = threading.Condition()
        self._state = _SharedState()
        self._stats = InspectorStats()
        self._completion_times: deque[float] = deque(maxlen=FPS_WINDOW)
        self._writer: NgFrameWriter | None = None
        self._source: FrameSource | None = None
        self._realtime = True
        self._threads: list[threading.Thread] = []

    # -- control ------------------------------------------------------------------------------------------

    def start(self, source: FrameSource, realtime: bool = True) -> None:
        """Start reading and scoring `source`; the inspector closes the source when it finishes."""
        if self._threads:
            raise RuntimeError("This LiveInspector was already started; create a new one for another source.")
        self._source = source
        self._realtime = realtime or source.is_live
        self._stats.source_fps = source.fps
        if self._writer is not None:
            self._writer.source_name = source.name
        self._started_at = time.monotonic()
        self._threads = [
            threading.Thread(target=self._read_loop, name="video-reader", daemon=True),
            threading.Thread(target=self._process_loop, name="video-model", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        logger.info("Inspecting %s (%s)", source.name, "real time" if self._realtime else "every frame")

    def set_ng_folder(self, folder: Path | None) -> None:
        """Save NG frames into `folder` from now on, or stop saving with None."""
        writer = None
        if folder is not None:
            name = self._source.name if self._source is not None else ""
            writer = NgFrameWriter(folder, name)
        with self._condition:
            self._writer = writer

    def pause(self) -> None:
        with self._condition:
            self._state.paused = True
            self._condition.notify_all()

    def resume(self) -> None:
        with self._condition:
            self._state.paused = False
            self._state.steps = 0
            self._completion_times.clear()
            self._condition.notify_all()

    def step(self) -> None:
        """Inspect one more frame while paused: the next frame of a file, the newest frame of a camera."""
        with self._condition:
            if self._state.paused:
                self._state.steps += 1
                self._condition.notify_all()

    def request_stop(self) -> None:
        """Ask both threads to stop without waiting; `on_finished` follows once the current frame is done."""
        with self._condition:
            self._state.stopping = True
            self._condition.notify_all()

    def stop(self) -> None:
        """Stop both threads, wait for them and release the source; frames still waiting are not inspected."""
        self.request_stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(STOP_TIMEOUT_S)
                if thread.is_alive():
                    logger.warning("Thread %s did not stop within %.0f s", thread.name, STOP_TIMEOUT_S)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ends or the inspector stops; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False
        return True

    @property
    def paused(self) -> bool:
        return self._state.paused

    def stats(self) -> InspectorStats:
        with self._condition:
            stats = InspectorStats(**vars(self._stats))
            stats.pending = len(self._state.slot)
            stats.paused = self._state.paused
            stats.finished = self._state.finished
            stats.error = self._state.error
            stats.fps = self._measured_fps()
        return stats

    def _measured_fps(self) -> float | None:
        times = self._completion_times
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])

    # -- reader thread ------------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        source = self._source
        assert source is not None
        frame_interval = 1.0 / source.fps if self._realtime and source.fps and not source.is_live else 0.0
        next_due = time.monotonic()
        index = 0
        try:
            while True:
                with self._condition:
                    may_read, waited = self._wait_until_reader_may_read(source)
                if not may_read:
                    break
                if frame_interval:
                    # After a pause, or when decoding is slower than the file's fps, pace from now instead
                    # of reading a burst of frames to catch up.
                    now = time.monotonic()
                    if waited or next_due < now - frame_interval:
                        next_due = now
                    next_due = self._sleep_until(next_due) + frame_interval

                frame = source.read()
                if frame is None:
                    break
                timestamp = self._timestamp(source, index)
                self._offer(_PendingFrame(index, timestamp, frame))
                index += 1
        except (cv2.error, GlassError) as exc:
            logger.error("Reading %s failed: %s", source.name, exc)
            with self._condition:
                self._state.error = f"Reading {source.name} failed: {exc}"
        finally:
            source.close()
            with self._condition:
                self._state.reader_done = True
                self._condition.notify_all()
            logger.info("Reader of %s ended after %d frames", source.name, index)

    def _wait_until_reader_may_read(self, source: FrameSource) -> tuple[bool, bool]:
        """Block (holding the condition) until the next frame may be read.

        Returns (may read, had to wait); may read is False when the inspector is stopping.
        """
        state = self._state
        waited = False
        while not state.stopping:
            # A camera keeps delivering while paused; reading on keeps its frames fresh for a step.
            paused_file = state.paused and not source.is_live and not (state.steps > 0 and not state.slot)
            waiting_for_model = not self._realtime and len(state.slot) > 0
            if not paused_file and not waiting_for_model:
                return True, waited
            waited = waited or paused_file
            self._condition.wait()
        return False, waited

    def _sleep_until(self, due: float) -> float:
        """Sleep until the monotonic time `due` unless stopped first; return the time the frame is due."""
        with self._condition:
            while not self._state.stopping:
                remaining = due - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
        return due

    def _timestamp(self, source: FrameSource, index: int) -> float:
        if source.is_live:
            return time.monotonic() - self._started_at
        if source.fps:
            return index / source.fps
        return source.position_ms() / 1000.0

    def _offer(self, frame: _PendingFrame) -> None:
        with self._condition:
            state = self._state
            self._stats.read += 1
            if state.slot:
                if state.paused and state.steps == 0:
                    self._stats.skipped_paused += 1
                else:
                    self._stats.dropped += 1
            state.slot.append(frame)
            self._stats.max_pending = max(self._stats.max_pending, len(state.slot))
            self._condition.notify_all()

    # -- processing thread --------------------------------------------------------------------------------

    def _process_loop(self) -> None:
        try:
            while True:
                frame = self._take()
                if frame is None:
                    break
                result = self._inspect(frame)
                if self.on_result is not None:
                    self.on_result(result)
        except GlassError as exc:
            logger.error("Inspecting frames failed: %s", exc)
            with self._condition:
                self._state.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the reader must be stopped and the caller told in every case
            logger.exception("Inspecting frames failed unexpectedly")
            with self._condition:
                self._state.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._condition:
                self._state.stopping = True
                self._condition.notify_all()
            reader = self._threads[0]
            reader.join(STOP_TIMEOUT_S)
            with self._condition:
                self._state.finished = True
            stats = self.stats()
            logger.info(
                "Video inspection ended: %d read, %d processed, %d dropped%s",
                stats.read, stats.processed, stats.dropped, f", error: {stats.error}" if stats.error else "",
            )
            if self.on_finished is not None:
                self.on_finished(stats)

    def _take(self) -> _PendingFrame | None:
        with self._condition:
            state = self._state
            while not state.stopping:
                may_take = not state.paused or state.steps > 0
                if state.slot and may_take:
                    if state.paused:
                        state.steps -= 1
                    frame = state.slot.popleft()
                    self._condition.notify_all()
                    return frame
                if state.reader_done and not state.slot:
                    return None
                self._condition.wait()
        return None

    def _inspect(self, frame: _PendingFrame) -> FrameResult:
        threshold = self.threshold
        prediction = self.predictor.predict_arrays([frame.rgb], [f"frame {frame.index}"])[0]
        is_defective = None if threshold is None else prediction.score >= threshold
        result = FrameResult(
            index=frame.index,
            timestamp=frame.timestamp,
            score=prediction.score,
            is_defective=is_defective,
            map=prediction.original_map,
            frame_rgb=frame.rgb,
            threshold=threshold,
        )
        with self._condition:
            writer = self._writer
        if is_defective and writer is not None:
            result.saved = writer.save(result, self.alpha)

        with self._condition:
            self._stats.saved += int(result.saved is not None)
            self._stats.processed += 1
            self._stats.ng += int(bool(is_defective))
            self._completion_times.append(time.monotonic())
        return result
