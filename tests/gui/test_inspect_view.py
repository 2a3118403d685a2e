"""Inspect view: folder inspection against the run's scores.csv, summary counts, exports and video inspection."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap

from glass_engine.data import discover, read_image
from glass_engine.runs import RunFolder
from glass_engine.training import Trainer
from glass_gui.inspect_view import (
    THUMBNAIL_SIDE,
    InspectionModel,
    InspectView,
    ThumbnailRole,
    prepare_screenshot_state,
    report_writer,
)
from glass_gui.views import StudioContext
from glass_gui.workers import task_runner
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

WAIT_MS = 180_000
FRAME_SIZE = (160, 128)


@pytest.fixture(scope="module")
def tile_copy(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    target = tmp_path_factory.mktemp("data") / "tiles copy"
    return copy_mvtec_subset(source, target, train=8, good=3, per_type=2, types=["blowhole", "crack"])


@pytest.fixture(scope="module")
def run_dir(tile_copy, tmp_path_factory):
    config = tiny_run_config({"method.eval_epochs": 5})
    run_dir = tmp_path_factory.mktemp("run") / "tiny run"
    Trainer(config, discover(tile_copy, "magnetic_tile"), run_dir).run_training()
    return run_dir


def make_view(qtbot, run_dir: Path | None) -> InspectView:
    context = StudioContext()
    view = InspectView(context)
    view._test_context = context
    qtbot.addWidget(view)
    view.resize(1400, 850)
    view.show()
    qtbot.waitExposed(view)
    if run_dir is not None:
        view.run_selector.select_path(run_dir)
    return view


def expected_counts(scores: list[float], threshold: float) -> tuple[int, int, int]:
    ng = 0
    for score in scores:
        if score >= threshold:
            ng += 1
    return len(scores), len(scores) - ng, ng


def inspect_and_wait(qtbot, view: InspectView, inputs: list[Path]) -> None:
    panel = view.images_panel
    panel.inspect_paths(inputs)
    qtbot.waitUntil(lambda: panel.last_outcome is not None and not panel.is_busy(), timeout=WAIT_MS)
    # Let the preview worker of the selected row finish.
    qtbot.waitUntil(lambda: not task_runner().running(), timeout=WAIT_MS)


def write_clip(path: Path, images: list[Path], frames: int, fps: float) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_SIZE)
    for number in range(frames):
        rgb = cv2.resize(read_image(images[number % len(images)]), FRAME_SIZE, interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def clip_images(tile_copy: Path) -> list[Path]:
    test_dir = tile_copy / "magnetic_tile" / "test"
    return sorted(test_dir.glob("*/*.jpg"))


def test_folder_scores_match_run(qtbot, run_dir, tile_copy, tmp_path):
    view = make_view(qtbot, run_dir)
    run = RunFolder(run_dir)
    assert view.threshold() == run.threshold()

    inspect_and_wait(qtbot, view, [tile_copy / "magnetic_tile" / "test"])

    expected = {str(Path(row["path"]).resolve()): row["score"] for row in run.read_scores()}
    model = view.images_panel.model
    got = {str(row.path.resolve()): row.score for row in model.rows}
    assert set(got) == set(expected)
    for path, score in expected.items():
        assert got[path] == pytest.approx(score, abs=1e-5), path

    proxy = view.images_panel.proxy
    assert proxy.rowCount() == len(expected)
    shown = {proxy.index(row, InspectionModel.IMAGE).data(): proxy.index(row, InspectionModel.SCORE).data()
             for row in range(proxy.rowCount())}
    assert shown == {Path(path).name: f"{score:.4f}" for path, score in expected.items()}

    # At the run's own threshold, which usually equals one test score, that image must be NG.
    total, ok, ng = expected_counts(list(expected.values()), run.threshold())
    assert model.counts() == (total, ok, ng)
    assert view.images_panel.summary_label.text().startswith(f"Total {total} · OK {ok} · NG {ng}")

    thumbnail = proxy.index(0, 0).data(ThumbnailRole)
    assert isinstance(thumbnail, QPixmap)
    assert 0 < max(thumbnail.width(), thumbnail.height()) <= THUMBNAIL_SIDE
    assert view.images_panel.preview.image() is not None

    path = tmp_path / "inspect_images.png"
    assert view.grab().save(str(path))


def test_summary_follows_threshold(qtbot, run_dir, tile_copy):
    view = make_view(qtbot, run_dir)
    inspect_and_wait(qtbot, view, [tile_copy / "magnetic_tile" / "test"])
    scores = [row["score"] for row in RunFolder(run_dir).read_scores()]
    panel = view.images_panel

    for threshold in (view.threshold(), float(np.median(scores)), 0.0, 1.0):
        view.run_selector.threshold_spin.setValue(threshold)
        total, ok, ng = expected_counts(scores, view.threshold())
        assert panel.model.counts() == (total, ok, ng)
        assert panel.summary_label.text().startswith(f"Total {total} · OK {ok} · NG {ng}")
        decisions = [panel.proxy.index(row, InspectionModel.DECISION).data() for row in range(panel.proxy.rowCount())]
        assert decisions.count("NG") == ng
        assert decisions.count("OK") == ok


def test_table_sorts_by_score(qtbot, run_dir, tile_copy):
    view = make_view(qtbot, run_dir)
    inspect_and_wait(qtbot, view, [tile_copy / "magnetic_tile" / "test"])
    panel = view.images_panel
    panel.table.sortByColumn(InspectionModel.SCORE, Qt.SortOrder.DescendingOrder)
    shown = [float(panel.proxy.index(row, InspectionModel.SCORE).data()) for row in range(panel.proxy.rowCount())]
    assert shown == sorted(shown, reverse=True)
    assert shown[0] == pytest.approx(max(row.score for row in panel.model.rows), abs=1e-4)


def test_csv_export_matches_results(qtbot, run_dir, tile_copy, tmp_path):
    view = make_view(qtbot, run_dir)
    inspect_and_wait(qtbot, view, [tile_copy / "magnetic_tile" / "test" / "crack"])
    panel = view.images_panel
    threshold = view.threshold()
    out = tmp_path / "results.csv"
    panel.export_csv(out)

    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = {str(row.path): row.score for row in panel.model.rows}
    assert len(rows) == len(expected) == 2
    for row in rows:
        score = float(row["score"])
        assert score == pytest.approx(expected[row["path"]], abs=1e-7)
        assert row["decision"] == ("NG" if score >= threshold else "OK")


def test_excel_export_writes_workbook(qtbot, run_dir, tile_copy, tmp_path):
    if report_writer() is None:
        pytest.skip("glass_engine.reports is not installed")
    import openpyxl

    view = make_view(qtbot, run_dir)
    inspect_and_wait(qtbot, view, [tile_copy / "magnetic_tile" / "test" / "good"])
    panel = view.images_panel
    assert panel.excel_button.isEnabled()
    out = tmp_path / "report.xlsx"
    results = []
    worker = panel.export_excel(out)
    worker.succeeded.connect(results.append)
    qtbot.waitUntil(lambda: worker.done, timeout=WAIT_MS)
    assert results == [out]
    workbook = openpyxl.load_workbook(out)
    assert "Images" in workbook.sheetnames
    cells = [str(cell.value) for row in workbook["Images"].iter_rows() for cell in row if cell.value is not None]
    for row in panel.model.rows:
        assert any(row.path.name in cell for cell in cells)


def test_unreadable_image_is_skipped(qtbot, run_dir, tile_copy, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((tile_copy / "magnetic_tile" / "test" / "good").iterdir())[0]
    (folder / good.name).write_bytes(good.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    view = make_view(qtbot, run_dir)
    inspect_and_wait(qtbot, view, [folder])
    panel = view.images_panel
    assert [row.path.name for row in panel.model.rows] == [good.name]
    assert [path.name for path, _reason in panel.last_outcome.skipped] == ["broken.png"]
    assert "1 unreadable" in panel.summary_label.text()


def load_predictor(qtbot, view: InspectView):
    loaded = []
    view.with_predictor(loaded.append)
    qtbot.waitUntil(lambda: bool(loaded), timeout=WAIT_MS)
    return loaded[0]


def start_video_and_wait(qtbot, view: InspectView, source: Path, realtime: bool) -> None:
    panel = view.video_panel
    panel.start(source, realtime)
    qtbot.waitUntil(lambda: panel.last_stats is not None, timeout=WAIT_MS)


def test_video_every_frame(qtbot, run_dir, tile_copy, tmp_path):
    clip = write_clip(tmp_path / "clip.avi", clip_images(tile_copy), frames=12, fps=10.0)
    view = make_view(qtbot, run_dir)
    predictor = load_predictor(qtbot, view)
    start_video_and_wait(qtbot, view, clip, realtime=False)
    panel = view.video_panel
    stats = panel.last_stats

    assert stats.error is None
    assert stats.processed == 12
    assert stats.dropped == 0
    assert "dropped 0" in panel.stats_label.text()
    assert panel.log.rowCount() == 12
    assert panel.display.image() is not None

    # Newest first in the log; compare with the model on frames decoded by plain OpenCV.
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    reference = predictor.predict_arrays(frames)
    threshold = view.threshold()
    for row in range(panel.log.rowCount()):
        index = int(panel.log.item(row, 0).text())
        assert index == 11 - row
        assert float(panel.log.item(row, 2).text()) == pytest.approx(reference[index].score, abs=1e-4)
        assert panel.log.item(row, 3).text() == ("NG" if reference[index].score >= threshold else "OK")


def test_video_realtime_counts_dropped_frames(qtbot, run_dir, tile_copy, tmp_path):
    frames, fps = 30, 30.0
    clip = write_clip(tmp_path / "clip.avi", clip_images(tile_copy), frames=frames, fps=fps)
    view = make_view(qtbot, run_dir)
    predictor = load_predictor(qtbot, view)
    real_predict = predictor.predict_arrays

    def slow_predict(images, names=None):
        time.sleep(0.15)
        return real_predict(images, names)

    predictor.predict_arrays = slow_predict
    start_video_and_wait(qtbot, view, clip, realtime=True)
    panel = view.video_panel
    stats = panel.last_stats

    assert stats.error is None
    assert stats.read == frames
    assert stats.dropped > 0
    assert stats.dropped + stats.processed == frames
    assert stats.max_pending == 1
    assert f"dropped {stats.dropped}" in panel.stats_label.text()
    assert f"inspected {stats.processed}" in panel.stats_label.text()
    assert panel.log.rowCount() == stats.processed
    assert panel.frames_shown >= 1

    path = tmp_path / "inspect_video.png"
    view.tabs.setCurrentWidget(panel)
    assert view.grab().save(str(path))


def test_video_missing_file_shows_error(qtbot, run_dir, tmp_path, message_boxes):
    view = make_view(qtbot, run_dir)
    load_predictor(qtbot, view)
    missing = tmp_path / "no such clip.avi"
    start_video_and_wait(qtbot, view, missing, realtime=True)
    assert view.video_panel.last_stats.error is not None
    assert any("no such clip.avi" in text for _title, text in message_boxes)
    assert not view.video_panel.is_running()


def test_screenshot_state_shows_results(qtbot, run_dir, tmp_path):
    view = make_view(qtbot, None)
    assert prepare_screenshot_state(view, run_dir)
    panel = view.images_panel
    expected = RunFolder(run_dir).read_scores()
    assert panel.model.rowCount() == len(expected)
    first = float(panel.proxy.index(0, InspectionModel.SCORE).data())
    assert first == pytest.approx(max(row["score"] for row in expected), abs=1e-4)
    assert panel.preview.image() is not None
    qtbot.waitUntil(lambda: not task_runner().running(), timeout=WAIT_MS)
    assert view.grab().save(str(tmp_path / "inspect_screenshot.png"))


def test_screenshot_state_without_run(qtbot):
    view = make_view(qtbot, None)
    assert not prepare_screenshot_state(view)
    assert view.images_panel.model.rowCount() == 0
