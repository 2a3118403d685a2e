"""Thumbnails made in a thread pool and cached on disk under the project's thumbnails/ folder.

Requests are served newest first, and only the most recent `MAX_PENDING` are kept. So when the user
scrolls quickly through thousands of images, the pool works on what is on screen now, not on rows that
scrolled past long ago.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from glass_engine.data import read_image
from glass_engine.errors import DatasetError

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128
"""Longest side of a thumbnail in pixels."""
MAX_PENDING = 400
JPEG_QUALITY = 85


def cache_key(path: Path, size: int) -> str | None:
    """Return the cache file name for `path`, or None when the file cannot be read.

    The key includes modification time and file size, so a changed image gets a new thumbnail.
    """
    try:
        stat = path.stat()
    except OSError:
        return None
    text = f"{path}|{stat.st_mtime_ns}|{stat.st_size}|{size}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest() + ".jpg"


def make_thumbnail(path: Path, size: int) -> np.ndarray:
    """Return an RGB uint8 thumbnail whose longest side is at most `size`."""
    image = read_image(path)
    height, width = image.shape[:2]
    scale = min(1.0, size / max(height, width))
    if scale < 1.0:
        new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, new_size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def load_or_make(path: Path, cache_dir: Path | None, size: int) -> QImage:
    """Return the thumbnail of `path` as a QImage, from the disk cache when present (QImage is thread-safe)."""
    key = cache_key(path, size)
    if key is None:
        raise DatasetError(f"Image {path} not found.")
    cached = cache_dir / key[:2] / key if cache_dir is not None else None
    if cached is not None and cached.is_file():
        image = QImage(str(cached))
        if not image.isNull():
            return image

    rgb = make_thumbnail(path, size)
    if cached is not None:
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            _write_cache_file(cached, encoded.tobytes())
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, width * 3, QImage.Format.Format_RGB888).copy()


def _write_cache_file(path: Path, data: bytes) -> None:
    """Write a cache file through a temporary name and a rename, so readers never see half a file.

    Unlike glass_engine.fileio.atomic_write there is no fsync: a cache file lost in a power cut is simply
    made again, and skipping fsync keeps thumbnail making fast. A read-only project gets no disk cache.
    """
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        logger.debug("Thumbnail cache file %s not written: %s", path, exc)


class _Job(QRunnable):
    def __init__(self, loader: "ThumbnailLoader"):
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        self._loader.work()


class ThumbnailLoader(QObject):
    """Makes thumbnails in the background. Signals: ready(image_id, QImage), failed(image_id)."""

    ready = Signal(int, QImage)
    failed = Signal(int)

    def __init__(self, cache_dir: Path | None, size: int = THUMBNAIL_SIZE, parent: QObject | None = None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.size = size
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, min(4, QThreadPool.globalInstance().maxThreadCount() - 1)))
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, Path] = OrderedDict()
        self._in_progress: set[int] = set()
        self._jobs = 0
        self._stopped = False

    def request(self, image_id: int, path: Path) -> None:
        """Ask for a thumbnail; a repeated request moves it to the front of the queue."""
        with self._lock:
            if self._stopped or image_id in self._in_progress:
                return
            self._pending[image_id] = path
            self._pending.move_to_end(image_id)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            start = self._jobs < self._pool.maxThreadCount()
            if start:
                self._jobs += 1
        if start:
            self._pool.start(_Job(self))

    def clear_pending(self) -> None:
        with self._lock:
            self._pending.clear()

    def is_idle(self) -> bool:
        with self._lock:
            return not self._pending and self._jobs == 0

    def stop(self) -> None:
        """Drop pending requests and wait for running jobs to end."""
        with self._lock:
            self._stopped = True
            self._pending.clear()
        self._pool.waitForDone()

    def work(self) -> None:
        while True:
            with self._lock:
                if not self._pending or self._stopped:
                    self._jobs -= 1
                    return
                image_id, path = self._pending.popitem(last=True)
                self._in_progress.add(image_id)
            try:
                image = load_or_make(path, self.cache_dir, self.size)
            except DatasetError as exc:
                logger.debug("No thumbnail for %s: %s", path, exc)
                self.failed.emit(image_id)
            except (OSError, cv2.error) as exc:
                logger.warning("Thumbnail of %s failed: %s", path, exc)
                self.failed.emit(image_id)
            else:
                self.ready.emit(image_id, image)
            finally:
                with self._lock:
                    self._in_progress.discard(image_id)
