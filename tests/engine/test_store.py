"""Tests of the project store: schema and migrations, import, queries, edits, masks, missing files, runs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from glass_engine import store
from glass_engine.data import discover
from glass_engine.errors import CancelledError, DatasetError, StoreError
from glass_engine.store import MIGRATIONS, SCHEMA_VERSION, Project


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(data.tobytes())


def make_mvtec(root: Path, category: str = "widget", train: int = 5, test_good: int = 3,
               defects: dict[str, int] | None = None, size: tuple[int, int] = (24, 32)) -> Path:
    """Write a tiny MVTec AD category; every defect image gets a mask with a known rectangle."""
    defects = {"scratch": 2, "dent": 1} if defects is None else defects
    rng = np.random.default_rng(1)
    base = root / category
    for i in range(train):
        write_png(base / "train" / "good" / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    for i in range(test_good):
        write_png(base / "test" / "good" / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    for defect_type, count in defects.items():
        for i in range(count):
            write_png(base / "test" / defect_type / f"{i:03d}.png", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            mask = np.zeros(size, np.uint8)
            mask[2 + i : 6 + i, 3:9] = 255
            write_png(base / "ground_truth" / defect_type / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_mvtec(tmp_path / "data")


@pytest.fixture()
def project(tmp_path: Path, dataset: Path) -> Project:
    opened = Project.create(tmp_path / "proj", "Test project")
    opened.import_index(discover(dataset, "widget", "mvtec"))
    yield opened
    opened.close()


# ------------------------------------------------------------------------------------------------------------
# Creating, opening, schema


def test_create_sets_schema_and_wal(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    with Project.create(folder, "My project") as created:
        assert created.schema_version == SCHEMA_VERSION
        assert created.name == "My project"
        for sub in ("thumbnails", "masks", "runs"):
            assert (folder / sub).is_dir()
    with sqlite3.connect(folder / "project.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "runs", "queue", "settings", "scores"} <= tables


def test_open_non_project_folder(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a GLASS Studio project"):
        Project.open(tmp_path / "plain")
    with pytest.raises(StoreError, match="does not exist"):
        Project.open(tmp_path / "nowhere")


def test_create_over_existing_project(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    with pytest.raises(StoreError, match="already contains a project"):
        Project.create(tmp_path / "p")


def test_migration_from_version_1_keeps_rows(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / "project.sqlite") as raw:
        for statement in MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute(
            "INSERT INTO images (path, category, split, label, status, added) "
            "VALUES ('/x/a.png', 'cat', 'train', 'good', 'ok', '2024-01-01')"
        )
        raw.execute("PRAGMA user_version = 1")

    with Project.open(folder) as upgraded:
        assert upgraded.schema_version == 2
        records = upgraded.images()
        assert [r.stored_path for r in records] == ["/x/a.png"]
        assert records[0].fg_mask_path is None
        run_id = upgraded.add_run("r", "cat", folder / "runs" / "r")
        upgraded.set_scores(run_id, {records[0].id: 0.25})
        assert upgraded.images()[0].score == 0.25


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "p"
    Project.create(folder).close()
    broken = MIGRATIONS + [["CREATE TABLE half_done (a INTEGER)", "THIS IS NOT SQL"]]
    monkeypatch.setattr(store, "MIGRATIONS", broken)
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(broken))

    with pytest.raises(StoreError, match="from schema version 2 to 3"):
        Project.open(folder)
    with sqlite3.connect(folder / "project.sqlite") as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
        assert raw.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0


def test_newer_schema_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    Project.create(folder).close()
    with sqlite3.connect(folder / "project.sqlite") as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer than this program"):
        Project.open(folder)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unwritable_folder_opens_read_only(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = project.folder
    count = project.count()
    project.close()
    before = _digest(folder / "project.sqlite")
    monkeypatch.setattr(store, "_folder_writable", lambda path: False)

    with Project.open(folder) as read_only:
        assert read_only.read_only
        assert "cannot be written" in read_only.read_only_reason
        assert read_only.count() == count
        first = read_only.images()[0]
        with pytest.raises(StoreError, match="read-only"):
            read_only.relabel([first.id], "defect")
        with pytest.raises(StoreError, match="read-only"):
            read_only.set_mask(first.id, np.ones((24, 32), bool))
    assert _digest(folder / "project.sqlite") == before

    with pytest.raises(StoreError, match="read-only"):
        Project.create(folder.parent / "elsewhere")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores folder permissions")
def test_chmod_read_only_folder(project: Project) -> None:
    folder = project.folder
    project.close()
    folder.chmod(0o555)
    (folder / "project.sqlite").chmod(0o444)
    try:
        with Project.open(folder) as read_only:
            assert read_only.read_only
            assert read_only.count() > 0
    finally:
        folder.chmod(0o755)
        (folder / "project.sqlite").chmod(0o644)


# ------------------------------------------------------------------------------------------------------------
# Import


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix == ".png")


def test_import_counts_match_files(project: Project, dataset: Path) -> None:
    base = dataset / "widget"
    assert project.count(split="train", label="good") == len(_files(base / "train" / "good"))
    assert project.count(split="test", label="good") == len(_files(base / "test" / "good"))
    for defect_type in ("scratch", "dent"):
        assert project.count(label="defect", defect_type=defect_type) == len(_files(base / "test" / defect_type))
    assert project.count(annotated=True) == len(list((base / "ground_truth").rglob("*.png")))
    assert project.categories() == ["widget"]
    assert project.defect_types() == ["dent", "scratch"]

    record = project.images(defect_type="dent")[0]
    assert (record.width, record.height) == (32, 24)
    assert record.mask_path == base / "ground_truth" / "dent" / "000_mask.png"
    assert record.path == base / "test" / "dent" / "000.png"
    assert record.defect_type == "dent"
    assert project.images(label="good")[0].defect_type is None


def test_import_cancel_changes_nothing(tmp_path: Path, dataset: Path) -> None:
    with Project.create(tmp_path / "p") as fresh:
        calls = []

        def cancel() -> bool:
            calls.append(1)
            return len(calls) > 1

        with pytest.raises(CancelledError):
            fresh.import_index(discover(dataset, "widget", "mvtec"), cancel=cancel)
        assert fresh.count() == 0


def test_reimport_adds_new_and_keeps_labels(project: Project, dataset: Path) -> None:
    train = project.images(split="train")
    project.move([train[0].id], "validation")
    scratch = project.images(defect_type="scratch")[0]
    project.relabel([scratch.id], "defect", "gouge")
    write_png(dataset / "widget" / "test" / "good" / "999.png", np.zeros((24, 32, 3), np.uint8))
    total = project.count()

    summary = project.import_index(discover(dataset, "widget", "mvtec"))

    assert summary.added == 1
    assert summary.existing == total
    assert project.count() == total + 1
    assert project.image(train[0].id).split == "validation"
    assert project.image(scratch.id).defect_type == "gouge"


# ------------------------------------------------------------------------------------------------------------
# Queries and edits


def test_filters_match_brute_force(project: Project) -> None:
    everything = project.images()
    cases = [
        ({"split": "train"}, lambda r: r.split == "train"),
        ({"split": ["train", "test"]}, lambda r: r.split in ("train", "test")),
        ({"label": "defect"}, lambda r: r.label == "defect"),
        ({"defect_type": "scratch"}, lambda r: r.defect_type == "scratch"),
        ({"annotated": False}, lambda r: r.mask_path is None),
        ({"annotated": True, "split": "test"}, lambda r: r.mask_path is not None and r.split == "test"),
        ({"category": "widget", "label": "good"}, lambda r: r.label == "good"),
        ({"category": "other"}, lambda r: False),
    ]
    for filters, keep in cases:
        expected = sorted(r.id for r in everything if keep(r))
        assert sorted(r.id for r in project.images(**filters)) == expected, filters
        assert project.count(**filters) == len(expected), filters


def test_relabel_and_move_many(project: Project) -> None:
    goods = project.images(split="test", label="good")
    ids = [r.id for r in goods[:2]]
    assert project.relabel(ids, "defect", "stain") == 2
    assert {project.image(i).label for i in ids} == {"defect"}
    assert {project.image(i).defect_type for i in ids} == {"stain"}

    assert project.relabel(ids, "good") == 2
    assert {project.image(i).defect_type for i in ids} == {None}

    assert project.move(ids, "validation") == 2
    assert {project.image(i).split for i in ids} == {"validation"}


def test_relabel_train_defect_moves_to_test(project: Project) -> None:
    record = project.images(split="train")[0]
    project.relabel([record.id], "defect", "scratch")
    assert project.image(record.id).split == "test"


def test_move_defect_to_train_rejected(project: Project) -> None:
    defect = project.images(label="defect")[0]
    good = project.images(split="test", label="good")[0]
    with pytest.raises(StoreError, match="labelled defect"):
        project.move([good.id, defect.id], "train")
    assert project.image(good.id).split == "test"
    assert project.image(defect.id).split == "test"


def test_order_by_score(project: Project) -> None:
    records = project.images(split="test")
    run_id = project.add_run("run 1", "widget", project.runs_dir / "run1", config_yaml="a: 1")
    scores = {record.id: float(i) / 10 for i, record in enumerate(records)}
    project.set_scores(run_id, scores)

    ordered = project.images(split="test", order="score")
    assert [r.id for r in ordered] == sorted(scores, key=lambda i: -scores[i])
    assert [r.score for r in ordered] == sorted(scores.values(), reverse=True)
    unscored = project.images(split="train", order="score")
    assert all(r.score is None for r in unscored)


# ------------------------------------------------------------------------------------------------------------
# Masks


def test_set_mask_writes_png(project: Project) -> None:
    record = project.images(split="test", label="good")[0]
    mask = np.zeros((24, 32), bool)
    mask[5:9, 10:20] = True

    path = project.set_mask(record.id, mask)

    assert path is not None and path.parent.parent == project.masks_dir
    written = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8
    assert written.shape == (24, 32)
    assert set(np.unique(written)) == {0, 255}
    assert np.array_equal(written == 255, mask)
    assert np.array_equal(project.read_mask(record.id), mask)
    assert project.image(record.id).annotated


def test_set_mask_wrong_size_rejected(project: Project) -> None:
    record = project.images()[0]
    with pytest.raises(DatasetError, match="does not fit image"):
        project.set_mask(record.id, np.ones((10, 10), bool))


def test_empty_mask_clears_annotation(project: Project, dataset: Path) -> None:
    record = project.images(split="test", label="good")[0]
    mask = np.zeros((24, 32), bool)
    mask[0, 0] = True
    path = project.set_mask(record.id, mask)
    assert path.is_file()

    assert project.set_mask(record.id, np.zeros((24, 32), bool)) is None
    assert not path.exists()
    assert not project.image(record.id).annotated

    dataset_masked = project.images(defect_type="dent")[0]
    dataset_mask = dataset_masked.mask_path
    project.set_mask(dataset_masked.id, None)
    assert dataset_mask.is_file(), "a dataset's own mask file must never be deleted"
    assert project.image(dataset_masked.id).mask_path is None


def test_edit_dataset_mask_writes_project_copy(project: Project) -> None:
    record = project.images(defect_type="dent")[0]
    original = record.mask_path.read_bytes()
    mask = project.read_mask(record.id)
    mask[20:, :] = True
    project.set_mask(record.id, mask)
    assert record.mask_path.read_bytes() == original
    assert project.image(record.id).mask_path.is_relative_to(project.masks_dir)


# ------------------------------------------------------------------------------------------------------------
# Missing files


def test_missing_and_relink(project: Project, dataset: Path, tmp_path: Path) -> None:
    old_folder = dataset / "widget" / "test" / "good"
    new_folder = tmp_path / "moved good"
    new_folder.mkdir()
    for path in _files(old_folder):
        path.rename(new_folder / path.name)
    moved = project.images(split="test", label="good")

    missing = project.check_missing()

    assert sorted(missing) == sorted(r.id for r in moved)
    assert {project.image(r.id).status for r in moved} == {"missing"}
    first = moved[0]
    assert project.relink(first.id, new_folder / first.path.name) == len(moved)
    assert project.check_missing() == []
    for record in moved:
        assert project.image(record.id).path == new_folder / record.path.name
        assert project.image(record.id).status == "ok"


def test_relink_to_absent_file(project: Project, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        project.relink(project.images()[0].id, tmp_path / "nope.png")


# ------------------------------------------------------------------------------------------------------------
# Runs, queue, settings


def test_runs_round_trip(project: Project) -> None:
    run_id = project.add_run("first", "widget", project.runs_dir / "first", config_yaml="x: 1")
    assert project.run(run_id).status == "queued"
    assert project.run(run_id).finished is None

    project.update_run(run_id, status="running")
    project.update_run(run_id, status="done", metrics={"image_auroc": np.float32(0.5)}, threshold=0.7)

    run = project.run(run_id)
    assert run.status == "done"
    assert run.finished is not None
    assert run.metrics == {"image_auroc": 0.5}
    assert run.threshold == pytest.approx(0.7)
    assert run.run_dir == project.runs_dir / "first"
    assert [r.id for r in project.runs("widget")] == [run_id]
    assert project.runs("other") == []
    with pytest.raises(StoreError, match="Unknown run status"):
        project.update_run(run_id, status="exploded")


def test_queue_order_and_states(project: Project) -> None:
    first = project.enqueue("widget", "a: 1")
    second = project.enqueue("widget", "a: 2")
    assert [item.id for item in project.queue()] == [first, second]
    project.reorder_queue([second, first])
    assert project.next_queued().id == second
    project.set_queue_state(second, "running")
    assert project.next_queued().id == first
    project.remove_from_queue(first)
    assert [item.id for item in project.queue()] == [second]


def test_settings_round_trip(project: Project) -> None:
    project.set_setting("threshold", {"widget": 0.5})
    assert project.get_setting("threshold") == {"widget": 0.5}
    assert project.get_setting("absent", 3) == 3


# ------------------------------------------------------------------------------------------------------------
# Paths and package boundaries


def test_paths_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    data = make_mvtec(tmp_path / "dätä sét", category="ünï cat")
    with Project.create(tmp_path / "prøject with space") as opened:
        opened.import_index(discover(data, "ünï cat", "mvtec"))
        record = opened.images(defect_type="scratch")[0]
        assert record.path.is_file()
        assert "dätä sét" in str(record.path)
        expected = np.zeros((24, 32), bool)
        expected[2:6, 3:9] = True
        assert np.array_equal(opened.read_mask(record.id), expected)
        opened.set_mask(record.id, ~expected)
        assert np.array_equal(opened.read_mask(record.id), ~expected)


def test_demo_data_paths_stored_relative(tmp_path: Path) -> None:
    data = make_mvtec(tmp_path / "p" / "inside")
    with Project.create(tmp_path / "p") as opened:
        opened.import_index(discover(data, "widget", "mvtec"))
        assert all(not Path(r.stored_path).is_absolute() for r in opened.images())
    moved = tmp_path / "moved"
    (tmp_path / "p").rename(moved)
    with Project.open(moved) as reopened:
        assert reopened.check_missing() == []


def test_engine_modules_do_not_import_qt() -> None:
    code = (
        "import sys, glass_engine.store, glass_engine.demo, glass_engine.export\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph')]\n"
        "sys.exit(1 if bad else 0)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
