"""The project store: one folder with `project.sqlite` and the files derived from it.

A project folder contains:

- `project.sqlite`: images with their labels and masks, training runs, the training queue, per-image scores
  and settings. The database runs in WAL mode and records its schema version in `PRAGMA user_version`;
  `MIGRATIONS` upgrades older files step by step, each step in its own transaction.
- `thumbnails/`, `masks/` and `runs/`: files the application writes. Images themselves stay where they are
  and are referenced by path. Paths inside the project folder are stored relative to it, so the folder
  can be moved; other paths are stored absolute, as given.

`Project` is safe to share between threads: one connection, guarded by a lock. A worker thread may also
open its own `Project` on the same folder; WAL lets readers proceed while one writer commits.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from glass_engine.errors import CancelledError, DatasetError, OutputError, StoreError
from glass_engine.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

DB_NAME = "project.sqlite"
THUMBNAILS_DIR = "thumbnails"
MASKS_DIR = "masks"
RUNS_DIR = "runs"

SPLITS = ("train", "test", "validation")
LABELS = ("good", "defect")
RUN_STATES = ("queued", "running", "done", "failed", "cancelled")
QUEUE_STATES = ("waiting", "running", "done", "failed", "cancelled")
DEFAULT_DEFECT_TYPE = "defect"

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]

# Each entry upgrades the schema from version i to i + 1. Never edit a released entry: append a new one.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            category TEXT NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'test', 'validation')),
            label TEXT NOT NULL CHECK (label IN ('good', 'defect')),
            defect_type TEXT,
            mask_path TEXT,
            width INTEGER,
            height INTEGER,
            status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'missing')),
            added TEXT NOT NULL
        )""",
        "CREATE INDEX images_by_category ON images (category, split, label)",
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            category TEXT NOT NULL,
            run_dir TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            created TEXT NOT NULL,
            finished TEXT,
            config_yaml TEXT NOT NULL DEFAULT '',
            metrics_json TEXT,
            threshold REAL,
            error TEXT
        )""",
        """CREATE TABLE queue (
            id INTEGER PRIMARY KEY,
            category TEXT NOT NULL,
            config_yaml TEXT NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'done', 'failed', 'cancelled'))
        )""",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    [
        # Version 2: per-image scores of a run (for score badges and sorting) and foreground masks.
        """CREATE TABLE scores (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
            score REAL NOT NULL,
            PRIMARY KEY (run_id, image_id)
        )""",
        "CREATE INDEX scores_by_image ON scores (image_id, run_id)",
        "ALTER TABLE images ADD COLUMN fg_mask_path TEXT",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class ImageRecord:
    """One image of the project as stored, with its paths resolved against the project folder."""

    id: int
    path: Path
    stored_path: str
    category: str
    split: str
    label: str
    defect_type: str | None
    mask_path: Path | None
    fg_mask_path: Path | None
    width: int | None
    height: int | None
    status: str
    added: str
    score: float | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def display_name(self) -> str:
        """File name with its folder ("crack/000.png"), because datasets repeat file names across folders."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def annotated(self) -> bool:
        return self.mask_path is not None

    @property
    def missing(self) -> bool:
        return self.status == "missing"


@dataclass(frozen=True)
class RunRecord:
    """One training run: where its files are, how it ended and its headline numbers."""

    id: int
    name: str
    category: str
    run_dir: Path
    status: str
    created: str
    finished: str | None
    config_yaml: str
    metrics: dict[str, Any] | None
    threshold: float | None
    error: str | None


@dataclass(frozen=True)
class QueueItem:
    """A training waiting in (or taken from) the queue."""

    id: int
    category: str
    config_yaml: str
    position: int
    state: str


@dataclass
class ImportSummary:
    """Result of `Project.import_index`: counts of new rows, rows already present, attached masks and unreadable files."""

    category: str
    added: int = 0
    existing: int = 0
    masks_attached: int = 0
    found_again: int = 0
    unreadable: list[Path] = field(default_factory=list)


@dataclass
class CategoryCounts:
    """Image counts of one category, for the project panel."""

    category: str
    total: int = 0
    by_split_label: dict[tuple[str, str], int] = field(default_factory=dict)
    defect_types: dict[str, int] = field(default_factory=dict)
    annotated: int = 0
    missing: int = 0

    def count(self, split: str | None = None, label: str | None = None) -> int:
        return sum(
            n
            for (row_split, row_label), n in self.by_split_label.items()
            if (split is None or row_split == split) and (label is None or row_label == label)
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _folder_writable(folder: Path) -> bool:
    """Probe with a real file, because permission bits do not tell about read-only mounts or ACLs."""
    probe = folder / f".write-check-{os.getpid()}-{threading.get_ident()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def is_project(folder: Path) -> bool:
    return (Path(folder) / DB_NAME).is_file()


class Project:
    """An open project folder. Create with `Project.create`, open with `Project.open`, end with `close`."""

    def __init__(self, folder: Path, connection: sqlite3.Connection, read_only: bool, read_only_reason: str):
        self.folder = Path(folder)
        self.read_only = read_only
        self.read_only_reason = read_only_reason
        self._db = connection
        self._lock = threading.RLock()
        self._closed = False

    # ----------------------------------------------------------------------------------------------------
    # Opening and closing

    @classmethod
    def create(cls, folder: Path, name: str | None = None) -> "Project":
        """Create a new project in `folder` (created if needed; it must not already hold a project)."""
        folder = Path(os.path.abspath(folder))
        if is_project(folder):
            raise StoreError(f"{folder} already contains a project ({DB_NAME}). Open it instead of creating one.")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Cannot create project folder {folder}: {exc.strerror}. Choose a writable folder.") from exc
        if not _folder_writable(folder):
            raise StoreError(f"Cannot create a project in {folder}: the folder is read-only. Choose a writable folder.")

        project = cls._connect(folder, read_only=False, reason="")
        project.set_setting("name", name or folder.name)
        project.set_setting("created", _now())
        for sub in (THUMBNAILS_DIR, MASKS_DIR, RUNS_DIR):
            (folder / sub).mkdir(exist_ok=True)
        logger.info("Created project %s in %s", name or folder.name, folder)
        return project

    @classmethod
    def open(cls, folder: Path, read_only: bool = False) -> "Project":
        """Open an existing project; a folder that cannot be written opens read-only (see `read_only_reason`)."""
        folder = Path(os.path.abspath(folder))
        if not folder.is_dir():
            raise StoreError(f"Project folder {folder} does not exist. Choose an existing project folder.")
        if not is_project(folder):
            raise StoreError(
                f"{folder} is not a GLASS Studio project: it has no {DB_NAME}. "
                "Choose the folder that contains it, or create a new project."
            )

        reason = ""
        if read_only:
            reason = "opened read-only on request"
        elif not _folder_writable(folder) or not os.access(folder / DB_NAME, os.W_OK):
            read_only = True
            reason = (
                f"the folder {folder} cannot be written, so the project is read-only: nothing can be changed "
                "or saved. Copy the folder somewhere writable or fix its permissions to edit it"
            )
        project = cls._connect(folder, read_only=read_only, reason=reason)
        if read_only:
            logger.warning("Project %s: %s", folder, reason)
        return project

    @classmethod
    def _connect(cls, folder: Path, read_only: bool, reason: str) -> "Project":
        db_path = folder / DB_NAME
        try:
            if read_only:
                # immutable=1: the folder may not even allow the -shm file that WAL readers otherwise create.
                uri = f"{db_path.as_uri()}?mode=ro&immutable=1"
                connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                connection = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False, timeout=10.0)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA foreign_keys = ON")
            if not read_only:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open project database {db_path}: {exc}. The file may be damaged.") from exc

        project = cls(folder, connection, read_only, reason)
        try:
            project._migrate(version)
        except BaseException:
            connection.close()
            raise
        return project

    def _migrate(self, version: int) -> None:
        db_path = self.folder / DB_NAME
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"Project database {db_path} has schema version {version}, newer than this program's "
                f"{SCHEMA_VERSION}. Update GLASS Studio to open it."
            )
        if version == SCHEMA_VERSION:
            return
        if self.read_only:
            raise StoreError(
                f"Project database {db_path} has schema version {version} and needs an upgrade to {SCHEMA_VERSION}, "
                f"but {self.read_only_reason}."
            )

        for index in range(version, SCHEMA_VERSION):
            try:
                with self._transaction():
                    for statement in MIGRATIONS[index]:
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {index + 1}")
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"Upgrading project database {db_path} from schema version {index} to {index + 1} failed: {exc}. "
                    f"The file was left at version {index}; keep a copy and report the problem."
                ) from exc
            logger.info("Upgraded %s to schema version %d", db_path, index + 1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _require_open(self) -> None:
        if self._closed:
            raise StoreError(f"Project {self.folder} is closed. Open it again to use it.")

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._query_one("PRAGMA user_version")[0])

    @property
    def name(self) -> str:
        return str(self.get_setting("name", self.folder.name))

    @property
    def db_path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def thumbnails_dir(self) -> Path:
        return self.folder / THUMBNAILS_DIR

    @property
    def masks_dir(self) -> Path:
        return self.folder / MASKS_DIR

    @property
    def runs_dir(self) -> Path:
        return self.folder / RUNS_DIR

    # ----------------------------------------------------------------------------------------------------
    # Low-level helpers

    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"Cannot change project {self.folder}: {self.read_only_reason}.")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._require_open()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(f"Cannot write project database {self.db_path}: {exc}. Close other programs using it.") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"Cannot save changes to {self.db_path}: {exc}.") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._require_open()
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"Cannot read project database {self.db_path}: {exc}.") from exc

    def _query_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def to_stored_path(self, path: Path | str) -> str:
        """Return how `path` is stored: relative (POSIX) inside the project folder, else absolute as given."""
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(self.folder).as_posix()
        except ValueError:
            return str(absolute)

    def resolve(self, stored: str | None) -> Path | None:
        if stored is None:
            return None
        path = Path(stored)
        return path if path.is_absolute() else self.folder / path

    # ----------------------------------------------------------------------------------------------------
    # Settings

    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._query_one("SELECT value FROM settings WHERE key = ?", (key,))
        return default if row is None else json.loads(row["value"])

    def set_setting(self, key: str, value: Any) -> None:
        self._require_writable()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # ----------------------------------------------------------------------------------------------------
    # Import

    def import_index(
        self,
        index: Any,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> ImportSummary:
        """Add the samples of a `glass_engine.data.DatasetIndex` in one transaction: all or nothing.

        Images already in the project (same stored path) keep their split, label, defect type and mask. A
        mask from the dataset is attached only where the image has none yet. A missing image found again is
        marked ok. Image sizes are read from file headers before the transaction starts. Raises
        CancelledError when `cancel()` turns true; nothing is written then.
        """
        self._require_writable()
        category = str(index.category)
        samples = list(index.train) + list(index.test)
        summary = ImportSummary(category=category)
        existing = {
            row["path"]: row
            for row in self._query("SELECT id, path, mask_path, fg_mask_path, status FROM images")
        }

        rows_new: list[tuple[Any, ...]] = []
        rows_update: list[tuple[Any, ...]] = []
        added_at = _now()
        total = len(samples)
        for done, sample in enumerate(samples, start=1):
            if cancel is not None and done % 64 == 1 and cancel():
                raise CancelledError(f"Import of {category} cancelled; the project is unchanged.")

            stored = self.to_stored_path(sample.path)
            mask = self.to_stored_path(sample.mask_path) if sample.mask_path else None
            fg_mask = self.to_stored_path(sample.fg_mask_path) if getattr(sample, "fg_mask_path", None) else None
            row = existing.get(stored)
            if row is None:
                label = _sample_label(sample)
                split = _sample_split(sample)
                defect_type = _sample_defect_type(sample, label)
                width, height = _image_size(Path(sample.path), summary)
                rows_new.append((stored, category, split, label, defect_type, mask, fg_mask, width, height, added_at))
                existing[stored] = {"id": None, "path": stored, "mask_path": mask, "fg_mask_path": fg_mask, "status": "ok"}
            else:
                new_mask = row["mask_path"] or mask
                new_fg = row["fg_mask_path"] or fg_mask
                summary.existing += 1
                summary.masks_attached += int(row["mask_path"] is None and mask is not None)
                summary.found_again += int(row["status"] == "missing")
                if row["id"] is not None:
                    rows_update.append((new_mask, new_fg, row["id"]))

            if progress is not None and (done % 64 == 0 or done == total):
                progress(done, total)

        if cancel is not None and cancel():
            raise CancelledError(f"Import of {category} cancelled; the project is unchanged.")
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO images (path, category, split, label, defect_type, mask_path, fg_mask_path, width, height, "
                "status, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?)",
                rows_new,
            )
            db.executemany("UPDATE images SET mask_path = ?, fg_mask_path = ?, status = 'ok' WHERE id = ?", rows_update)
        summary.added = len(rows_new)
        logger.info(
            "Imported %s from %s: %d new, %d already in the project, %d masks attached",
            category, getattr(index, "root", "?"), summary.added, summary.existing, summary.masks_attached,
        )
        return summary

    # ----------------------------------------------------------------------------------------------------
    # Queries

    def categories(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT category FROM images ORDER BY category")]

    def defect_types(self, category: str | None = None) -> list[str]:
        sql = "SELECT DISTINCT defect_type FROM images WHERE defect_type IS NOT NULL"
        params: list[Any] = []
        if category is not None:
            sql += " AND category = ?"
            params.append(category)
        return [row[0] for row in self._query(sql + " ORDER BY defect_type", params)]

    def images(
        self,
        category: str | None = None,
        split: str | Iterable[str] | None = None,
        label: str | None = None,
        defect_type: str | None = None,
        annotated: bool | None = None,
        status: str | None = None,
        ids: Iterable[int] | None = None,
        order: str = "name",
        score_run: int | None = None,
    ) -> list[ImageRecord]:
        """Return images matching every given filter (None means any).

        `order` is "name" (file name, then path), "score" (highest first, unscored last) or "id". The score of
        an image comes from run `score_run`, or else from the newest run that scored it.
        """
        where, params = _image_filters(category, split, label, defect_type, annotated, status, ids)
        if score_run is None:
            score_sql = "(SELECT s.score FROM scores s WHERE s.image_id = images.id ORDER BY s.run_id DESC LIMIT 1)"
        else:
            score_sql = "(SELECT s.score FROM scores s WHERE s.image_id = images.id AND s.run_id = ?)"
            params = [score_run, *params]
        order_sql = {
            "name": "",  # sorted in Python below: SQLite cannot take the file name out of a path
            "score": " ORDER BY score IS NULL, score DESC, id",
            "id": " ORDER BY id",
        }
        if order not in order_sql:
            raise StoreError(f"Unknown image order {order!r}; use one of {', '.join(order_sql)}.")

        rows = self._query(f"SELECT images.*, {score_sql} AS score FROM images{where}{order_sql[order]}", params)
        records = [self._record(row) for row in rows]
        if order == "name":
            records.sort(key=lambda record: (record.path.name.lower(), str(record.path)))
        return records

    def image(self, image_id: int) -> ImageRecord:
        records = self.images(ids=[image_id])
        if not records:
            raise StoreError(f"Image id {image_id} is not in project {self.folder}.")
        return records[0]

    def count(self, **filters: Any) -> int:
        where, params = _image_filters(
            filters.get("category"), filters.get("split"), filters.get("label"), filters.get("defect_type"),
            filters.get("annotated"), filters.get("status"), filters.get("ids"),
        )
        return int(self._query_one(f"SELECT COUNT(*) FROM images{where}", params)[0])

    def category_counts(self) -> dict[str, CategoryCounts]:
        counts: dict[str, CategoryCounts] = {}
        rows = self._query(
            "SELECT category, split, label, defect_type, COUNT(*) AS n, "
            "SUM(mask_path IS NOT NULL) AS masks, SUM(status = 'missing') AS missing "
            "FROM images GROUP BY category, split, label, defect_type"
        )
        for row in rows:
            entry = counts.setdefault(row["category"], CategoryCounts(row["category"]))
            key = (row["split"], row["label"])
            entry.by_split_label[key] = entry.by_split_label.get(key, 0) + row["n"]
            entry.total += row["n"]
            entry.annotated += row["masks"]
            entry.missing += row["missing"]
            if row["label"] == "defect":
                defect_type = row["defect_type"] or DEFAULT_DEFECT_TYPE
                entry.defect_types[defect_type] = entry.defect_types.get(defect_type, 0) + row["n"]
        return counts

    def _record(self, row: sqlite3.Row) -> ImageRecord:
        keys = row.keys()
        return ImageRecord(
            id=row["id"],
            path=self.resolve(row["path"]),
            stored_path=row["path"],
            category=row["category"],
            split=row["split"],
            label=row["label"],
            defect_type=row["defect_type"],
            mask_path=self.resolve(row["mask_path"]),
            fg_mask_path=self.resolve(row["fg_mask_path"]),
            width=row["width"],
            height=row["height"],
            status=row["status"],
            added=row["added"],
            score=row["score"] if "score" in keys else None,
        )

    # ----------------------------------------------------------------------------------------------------
    # Editing labels and splits

    def relabel(self, ids: Iterable[int], label: str, defect_type: str | None = None) -> int:
        """Set the label of many images at once; return how many rows changed.

        Good images get no defect type. Defect images get `defect_type` (default "defect"); those in the train
        split move to test, because training uses only good images.
        """
        self._require_writable()
        if label not in LABELS:
            raise StoreError(f"Unknown label {label!r}; use one of {', '.join(LABELS)}.")
        ids = list(ids)
        if label == "good":
            defect_type = None
        else:
            defect_type = (defect_type or DEFAULT_DEFECT_TYPE).strip() or DEFAULT_DEFECT_TYPE
            if defect_type == "good":
                raise StoreError("A defect type cannot be called 'good'; choose another name.")

        with self._transaction() as db:
            changed = 0
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                if label == "defect":
                    moved = db.execute(
                        f"UPDATE images SET split = 'test' WHERE split = 'train' AND id IN ({marks})", chunk
                    ).rowcount
                    if moved:
                        logger.info("Moved %d images labelled defect from train to test", moved)
                changed += db.execute(
                    f"UPDATE images SET label = ?, defect_type = ? WHERE id IN ({marks})", [label, defect_type, *chunk]
                ).rowcount
        return changed

    def move(self, ids: Iterable[int], split: str) -> int:
        """Move many images to another split; return how many rows changed.

        Raises StoreError, changing nothing, when a defect image would go to train.
        """
        self._require_writable()
        if split not in SPLITS:
            raise StoreError(f"Unknown split {split!r}; use one of {', '.join(SPLITS)}.")
        ids = list(ids)
        if split == "train":
            defects = self.count(ids=ids, label="defect")
            if defects:
                raise StoreError(
                    f"{defects} of the selected images are labelled defect, but the train split may contain only good "
                    "images. Relabel them good first, or move them to test or validation."
                )
        with self._transaction() as db:
            changed = 0
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                changed += db.execute(f"UPDATE images SET split = ? WHERE id IN ({marks})", [split, *chunk]).rowcount
        return changed

    def remove_images(self, ids: Iterable[int]) -> int:
        """Forget images (the files stay where they are); project-owned masks are deleted."""
        self._require_writable()
        ids = list(ids)
        owned = [record.mask_path for record in self.images(ids=ids) if self._owns(record.mask_path)]
        with self._transaction() as db:
            removed = 0
            for chunk in _chunks(ids):
                removed += db.execute(f"DELETE FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk).rowcount
        for path in owned:
            path.unlink(missing_ok=True)
        return removed

    # ----------------------------------------------------------------------------------------------------
    # Masks

    def mask_file_for(self, image_id: int) -> Path:
        """Return the project-owned mask file of an image (it may not exist yet)."""
        record = self.image(image_id)
        return self.masks_dir / record.category / f"{record.path.stem}_{image_id}_mask.png"

    def read_mask(self, image_id: int) -> np.ndarray | None:
        """Return the image's mask as a bool array at the mask file's own size, or None when it has none."""
        record = self.image(image_id)
        if record.mask_path is None:
            return None
        if not record.mask_path.is_file():
            raise DatasetError(
                f"Mask {record.mask_path} of image {record.path} is missing. Restore the file or clear the mask."
            )
        data = cv2.imdecode(np.fromfile(record.mask_path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise DatasetError(f"Mask {record.mask_path} cannot be decoded as an image. Replace or clear the mask.")
        if data.ndim == 3:
            data = data.max(axis=2)
        return data > 0

    def set_mask(self, image_id: int, mask: np.ndarray | None) -> Path | None:
        """Write the mask as an 8-bit PNG (0/255) under masks/ and record it; return the file or None.

        An empty mask or None clears the annotation: a project-owned file is deleted, a dataset mask stays on
        disk but is no longer referenced. A mask must have the image's size when that size is known.
        """
        self._require_writable()
        record = self.image(image_id)
        target = self.mask_file_for(image_id)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim != 2:
                raise DatasetError(f"A mask must be a 2-D array; got shape {mask.shape} for image {record.path}.")
            if record.width and record.height and mask.shape != (record.height, record.width):
                raise DatasetError(
                    f"Mask of {mask.shape[1]}x{mask.shape[0]} px does not fit image {record.path} "
                    f"({record.width}x{record.height} px). Resize the mask to the image size."
                )

        if mask is None or not mask.any():
            self._update_mask_path(image_id, None)
            if self._owns(record.mask_path):
                record.mask_path.unlink(missing_ok=True)
            return None

        ok, encoded = cv2.imencode(".png", np.where(mask > 0, 255, 0).astype(np.uint8))
        if not ok:
            raise OutputError(f"Cannot encode the mask of {record.path} as PNG.")
        atomic_write_bytes(target, encoded.tobytes())
        self._update_mask_path(image_id, self.to_stored_path(target))
        return target

    def set_mask_path(self, image_id: int, mask_path: Path | None) -> None:
        """Point an image at an existing mask file (for example a dataset's ground truth), or at none."""
        self._require_writable()
        if mask_path is not None and not Path(mask_path).is_file():
            raise DatasetError(f"Mask file {mask_path} does not exist. Choose an existing mask image.")
        self._update_mask_path(image_id, None if mask_path is None else self.to_stored_path(mask_path))

    def _update_mask_path(self, image_id: int, stored: str | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE images SET mask_path = ? WHERE id = ?", (stored, image_id))

    def _owns(self, path: Path | None) -> bool:
        if path is None:
            return False
        try:
            Path(os.path.abspath(path)).relative_to(self.masks_dir)
        except ValueError:
            return False
        return True

    # ----------------------------------------------------------------------------------------------------
    # Missing files

    def check_missing(
        self,
        category: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> list[int]:
        """Check that every image file exists, update each status, and return the ids of missing images."""
        records = self.images(category=category, order="id")
        changes: list[tuple[str, int]] = []
        missing: list[int] = []
        for done, record in enumerate(records, start=1):
            if cancel is not None and done % 256 == 1 and cancel():
                raise CancelledError("Check for missing images cancelled.")
            status = "ok" if record.path.is_file() else "missing"
            if status == "missing":
                missing.append(record.id)
            if status != record.status:
                changes.append((status, record.id))
            if progress is not None and (done % 256 == 0 or done == len(records)):
                progress(done, len(records))

        if changes and not self.read_only:
            with self._transaction() as db:
                db.executemany("UPDATE images SET status = ? WHERE id = ?", changes)
        if missing:
            logger.warning("Project %s: %d images are missing", self.folder, len(missing))
        return missing

    def relink(self, image_id: int, new_path: Path, siblings: bool = True) -> int:
        """Point a missing image at its new location; return how many images were relinked.

        With `siblings`, every other missing image whose file sits at the same relative place under the new
        folder (same old folder, same name) is relinked as well, so a moved dataset is fixed with one choice.
        """
        self._require_writable()
        new_path = Path(os.path.abspath(new_path))
        if not new_path.is_file():
            raise DatasetError(f"Image file {new_path} does not exist. Choose the moved file.")
        record = self.image(image_id)
        updates = [(self.to_stored_path(new_path), image_id)]

        if siblings:
            old_folder, new_folder = record.path.parent, new_path.parent
            for other in self.images(status="missing", order="id"):
                if other.id == image_id:
                    continue
                try:
                    relative = other.path.relative_to(old_folder)
                except ValueError:
                    continue
                candidate = new_folder / relative
                if candidate.is_file():
                    updates.append((self.to_stored_path(candidate), other.id))

        taken = {row[0] for row in self._query("SELECT path FROM images")}
        clashes = [path for path, _ in updates if path in taken]
        if clashes:
            raise StoreError(f"{clashes[0]} is already an image of this project. Choose the file that was moved.")
        with self._transaction() as db:
            db.executemany("UPDATE images SET path = ?, status = 'ok' WHERE id = ?", updates)
        logger.info("Relinked %d images, starting with %s -> %s", len(updates), record.path, new_path)
        return len(updates)

    # ----------------------------------------------------------------------------------------------------
    # Runs and scores

    def add_run(self, name: str, category: str, run_dir: Path, config_yaml: str = "", status: str = "queued") -> int:
        self._require_writable()
        _check_state(status, RUN_STATES, "run status")
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (name, category, run_dir, status, created, config_yaml) VALUES (?, ?, ?, ?, ?, ?)",
                (name, category, self.to_stored_path(run_dir), status, _now(), config_yaml),
            )
        return int(cursor.lastrowid)

    def update_run(
        self,
        run_id: int,
        status: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        threshold: float | None = None,
        error: str | None = None,
    ) -> None:
        """Change the given fields of a run; a final status (done, failed, cancelled) also sets `finished`."""
        self._require_writable()
        assignments: list[str] = []
        params: list[Any] = []
        if status is not None:
            _check_state(status, RUN_STATES, "run status")
            assignments.append("status = ?")
            params.append(status)
            if status in ("done", "failed", "cancelled"):
                assignments.append("finished = ?")
                params.append(_now())
        if metrics is not None:
            assignments.append("metrics_json = ?")
            params.append(json.dumps(dict(metrics), default=_json_number))
        if threshold is not None:
            assignments.append("threshold = ?")
            params.append(float(threshold))
        if error is not None:
            assignments.append("error = ?")
            params.append(error)
        if not assignments:
            return
        with self._transaction() as db:
            changed = db.execute(f"UPDATE runs SET {', '.join(assignments)} WHERE id = ?", [*params, run_id]).rowcount
        if not changed:
            raise StoreError(f"Run id {run_id} is not in project {self.folder}.")

    def runs(self, category: str | None = None) -> list[RunRecord]:
        if category is None:
            rows = self._query("SELECT * FROM runs ORDER BY id")
        else:
            rows = self._query("SELECT * FROM runs WHERE category = ? ORDER BY id", (category,))
        return [self._run_record(row) for row in rows]

    def run(self, run_id: int) -> RunRecord:
        row = self._query_one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise StoreError(f"Run id {run_id} is not in project {self.folder}.")
        return self._run_record(row)

    def delete_run(self, run_id: int) -> None:
        """Forget a run and its scores; its folder on disk is left alone."""
        self._require_writable()
        with self._transaction() as db:
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def set_scores(self, run_id: int, scores: Mapping[int, float]) -> None:
        """Store per-image anomaly scores of a run, replacing earlier scores of the same images."""
        self._require_writable()
        rows = [(run_id, int(image_id), float(score)) for image_id, score in scores.items()]
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO scores (run_id, image_id, score) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, image_id) DO UPDATE SET score = excluded.score",
                rows,
            )

    def scores(self, run_id: int) -> dict[int, float]:
        return {row[0]: row[1] for row in self._query("SELECT image_id, score FROM scores WHERE run_id = ?", (run_id,))}

    def _run_record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            id=row["id"],
            name=row["name"],
            category=row["category"],
            run_dir=self.resolve(row["run_dir"]),
            status=row["status"],
            created=row["created"],
            finished=row["finished"],
            config_yaml=row["config_yaml"],
            metrics=json.loads(row["metrics_json"]) if row["metrics_json"] else None,
            threshold=row["threshold"],
            error=row["error"],
        )

    # ----------------------------------------------------------------------------------------------------
    # Training queue

    def enqueue(self, category: str, config_yaml: str) -> int:
        self._require_writable()
        with self._transaction() as db:
            position = db.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM queue").fetchone()[0]
            cursor = db.execute(
                "INSERT INTO queue (category, config_yaml, position, state) VALUES (?, ?, ?, 'waiting')",
                (category, config_yaml, position),
            )
        return int(cursor.lastrowid)

    def queue(self, states: Iterable[str] | None = None) -> list[QueueItem]:
        rows = self._query("SELECT * FROM queue ORDER BY position, id")
        wanted = None if states is None else set(states)
        return [
            QueueItem(row["id"], row["category"], row["config_yaml"], row["position"], row["state"])
            for row in rows
            if wanted is None or row["state"] in wanted
        ]

    def next_queued(self) -> QueueItem | None:
        waiting = self.queue(states=["waiting"])
        return waiting[0] if waiting else None

    def set_queue_state(self, item_id: int, state: str) -> None:
        self._require_writable()
        _check_state(state, QUEUE_STATES, "queue state")
        with self._transaction() as db:
            if not db.execute("UPDATE queue SET state = ? WHERE id = ?", (state, item_id)).rowcount:
                raise StoreError(f"Queue item {item_id} is not in project {self.folder}.")

    def reorder_queue(self, item_ids: Sequence[int]) -> None:
        """Give the listed queue items positions 0, 1, 2, … in the given order."""
        self._require_writable()
        with self._transaction() as db:
            db.executemany("UPDATE queue SET position = ? WHERE id = ?", [(i, item) for i, item in enumerate(item_ids)])

    def remove_from_queue(self, item_id: int) -> None:
        self._require_writable()
        with self._transaction() as db:
            db.execute("DELETE FROM queue WHERE id = ?", (item_id,))


# --------------------------------------------------------------------------------------------------------
# Module helpers


def _image_filters(
    category: str | None,
    split: str | Iterable[str] | None,
    label: str | None,
    defect_type: str | None,
    annotated: bool | None,
    status: str | None,
    ids: Iterable[int] | None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if category is not None:
        clauses.append("category = ?")
        params.append(category)
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        clauses.append(f"split IN ({','.join('?' * len(splits))})")
        params.extend(splits)
    if label is not None:
        clauses.append("label = ?")
        params.append(label)
    if defect_type is not None:
        clauses.append("defect_type = ?")
        params.append(defect_type)
    if annotated is not None:
        clauses.append("mask_path IS NOT NULL" if annotated else "mask_path IS NULL")
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if ids is not None:
        id_list = [int(i) for i in ids]
        # A JSON array keeps the statement short for any number of ids (SQLite limits bound parameters).
        clauses.append("id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(id_list))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, params


def _chunks(ids: list[int], size: int = 500) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield [int(i) for i in ids[start : start + size]]


def _check_state(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise StoreError(f"Unknown {what} {value!r}; use one of {', '.join(allowed)}.")


def _json_number(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"Cannot store {type(value).__name__} in run metrics")


def _sample_label(sample: Any) -> str:
    label = sample.label
    if isinstance(label, str):
        label = label.lower()
        if label in ("good", "normal", "ok"):
            return "good"
        if label in ("defect", "anomaly", "bad", "anomalous"):
            return "defect"
    elif isinstance(label, (bool, int, np.integer)):
        return "defect" if int(label) else "good"
    raise DatasetError(f"Image {sample.path} has an unknown label {sample.label!r}; expected good or defect.")


def _sample_split(sample: Any) -> str:
    split = str(sample.split).lower()
    if split not in SPLITS:
        raise DatasetError(f"Image {sample.path} is in an unknown split {sample.split!r}; expected one of {SPLITS}.")
    return split


def _sample_defect_type(sample: Any, label: str) -> str | None:
    if label == "good":
        return None
    defect_type = getattr(sample, "defect_type", None)
    return str(defect_type) if defect_type and defect_type != "good" else DEFAULT_DEFECT_TYPE


def _image_size(path: Path, summary: ImportSummary) -> tuple[int | None, int | None]:
    """Read width and height from the file header only (PIL does not decode the pixels here)."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError) as exc:
        logger.warning("Cannot read the size of %s: %s", path, exc)
        summary.unreadable.append(path)
        return None, None
    # EXIF orientations 5 to 8 rotate by 90 degrees, so the decoded image has width and height swapped.
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return int(width), int(height)

