"""Frame pipeline on a clip made from shared magnetic tile images, scored by a tiny trained run."""

from __future__ import annotations

import csv
import time

import cv2
import numpy as np
import pytest

from glass_engine.data import discover, read_image
from glass_engine.errors import DatasetError
from glass_engine.inference import Predictor
from glass_engine.training import Trainer
from glass_engine.video import (
    NG_CSV_COLUMNS,
    NG_CSV_NAME,
    FrameSource,
    LiveInspector,
    overlay,
    parse_source,
)
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

FRAME_SIZE = (160, 128)
"""Width and height of the generated clips in pixels."""


@pytest.fixture(scope="module")
def tile_images():
    test_dir = shared_dataset("magnetic_tile") / "magnetic_tile" / "test"
    good = sorted((test_dir / "good").iterdir())[:4]
    defective = sorted((test_dir / "blowhole").iterdir())[:2] + sorted((test_dir / "crack").iterdir())[:2]
    return good + defective


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    root = copy_mvtec_subset(source, tmp_path_factory.mktemp("data"), train=8, good=2, per_type=2, types=["crack"])
    config = tiny_run_config({"method.eval_epochs": 5})
    run_dir = tmp_path_factory.mktemp("run") / "run"
    Trainer(config, discover(root, "magnetic_tile"), run_dir).run_training()
    return Predictor(run_dir, device="cpu")


def write_clip(path, images, frames: int, fps: float):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, FRAME_SIZE)
    assert writer.isOpened()
    for number in range(frames):
        rgb = cv2.resize(read_image(images[number % len(images)]), FRAME_SIZE, interpolation=cv2.INTER_AREA)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decode_all(path):
    """Decode a clip with plain OpenCV, independently of FrameSource."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def run_inspector(inspector, path, realtime, timeout=120.0):
    inspector.start(FrameSource(path), realtime=realtime)
    assert inspector.wait(timeout), "the inspector did not finish in time"
    return inspector.stats()


class SlowPredictor:
    """The real predictor with a fixed delay per call, to be slower than the clip's frame rate."""

    def __init__(self, predictor, delay_s: float):
        self.predictor = predictor
        self.delay_s = delay_s
        self.calls = 0

    def predict_arrays(self, images, names=None):
        self.calls += 1
        time.sleep(self.delay_s)
        return self.predictor.predict_arrays(images, names)


def test_parse_source_kinds():
    assert parse_source("0") == 0
    assert parse_source(" 2 ") == 2
    assert parse_source(3) == 3
    assert parse_source("rtsp://127.0.0.1:8554/line") == "rtsp://127.0.0.1:8554/line"
    assert str(parse_source("/data/line 1.avi")) == "/data/line 1.avi"


def test_missing_video_file_raises(tmp_path):
    missing = tmp_path / "nothing.avi"
    with pytest.raises(DatasetError, match="nothing.avi"):
        FrameSource(missing)


def test_unreadable_video_file_raises(tmp_path):
    text_file = tmp_path / "notes.avi"
    text_file.write_text("this is not a video\n")
    with pytest.raises(DatasetError, match="could not be opened"):
        FrameSource(text_file)


def test_absent_camera_raises():
    with pytest.raises(DatasetError, match="Camera 97"):
        FrameSource(97)


def test_source_reports_fps_and_frames(tile_images, tmp_path):
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=9, fps=12.0)
    with FrameSource(path) as source:
        assert source.kind == "file"
        assert not source.is_live
        assert source.fps == pytest.approx(12.0)
        assert source.frame_count == 9
        first = source.read()
        assert first.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
        assert first.dtype == np.uint8


def test_every_frame_offline(predictor, tile_images, tmp_path):
    fps = 10.0
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=len(tile_images) + 2, fps=fps)
    reference_frames = decode_all(path)
    threshold = predictor.threshold
    results = []
    stats = run_inspector(LiveInspector(predictor, threshold, on_result=results.append), path, realtime=False)

    assert stats.error is None
    assert stats.dropped == 0
    assert stats.read == len(reference_frames)
    assert stats.processed == len(reference_frames)
    assert [result.index for result in results] == list(range(len(reference_frames)))

    reference = predictor.predict_arrays(reference_frames)
    for result, frame, expected in zip(results, reference_frames, reference):
        assert np.array_equal(result.frame_rgb, frame)
        assert result.score == pytest.approx(expected.score, abs=1e-5)
        assert result.is_defective == (expected.score >= threshold)
        assert result.map.shape == frame.shape[:2]
        assert result.timestamp == pytest.approx(result.index / fps)
    assert stats.ng == sum(expected.score >= threshold for expected in reference)


def test_realtime_drops_frames_when_slow(predictor, tile_images, tmp_path):
    fps, frames = 30.0, 30
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=frames, fps=fps)
    slow = SlowPredictor(predictor, delay_s=0.15)
    results = []
    started = time.monotonic()
    stats = run_inspector(LiveInspector(slow, 0.5, on_result=results.append), path, realtime=True)
    elapsed = time.monotonic() - started

    assert stats.error is None
    assert stats.read == frames
    assert stats.dropped > 0
    assert stats.dropped + stats.processed == stats.read
    assert stats.processed == len(results) == slow.calls
    assert stats.max_pending == 1
    indices = [result.index for result in results]
    assert indices == sorted(set(indices))
    # Paced by the file: reading 30 frames at 30 fps takes about 1 s, not the few ms of decoding alone.
    assert elapsed >= (frames - 1) / fps * 0.9


def test_offline_waits_for_slow_model(predictor, tile_images, tmp_path):
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=6, fps=30.0)
    slow = SlowPredictor(predictor, delay_s=0.1)
    stats = run_inspector(LiveInspector(slow, 0.5), path, realtime=False)
    assert stats.dropped == 0
    assert stats.processed == 6
    assert stats.max_pending == 1


def test_pause_and_step(predictor, tile_images, tmp_path):
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=5, fps=10.0)
    results = []
    inspector = LiveInspector(predictor, 0.5, on_result=results.append)
    inspector.pause()
    inspector.start(FrameSource(path), realtime=True)
    time.sleep(0.5)
    assert results == []

    inspector.step()
    deadline = time.monotonic() + 30
    while len(results) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    inspector.step()
    while len(results) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert [result.index for result in results] == [0, 1]
    assert inspector.stats().paused

    inspector.resume()
    assert inspector.wait(60)
    stats = inspector.stats()
    assert [result.index for result in results] == [0, 1, 2, 3, 4]
    assert stats.dropped == 0
    assert stats.finished


def test_stop_ends_early(predictor, tile_images, tmp_path):
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=60, fps=30.0)
    finished = []
    inspector = LiveInspector(SlowPredictor(predictor, 0.05), 0.5, on_finished=finished.append)
    inspector.start(FrameSource(path), realtime=True)
    time.sleep(0.4)
    inspector.stop()
    assert inspector.wait(10)
    assert len(finished) == 1
    assert finished[0].finished
    assert finished[0].read < 60


def test_ng_frames_saved(predictor, tile_images, tmp_path):
    path = write_clip(tmp_path / "clip.avi", tile_images, frames=4, fps=10.0)
    results = []
    # Threshold 0 marks every frame NG, so every frame must be saved.
    inspector = LiveInspector(predictor, 0.0, on_result=results.append)
    inspector.set_ng_folder(tmp_path / "ng")
    stats = run_inspector(inspector, path, realtime=False)

    assert stats.ng == 4
    assert stats.saved == 4
    with open(tmp_path / "ng" / NG_CSV_NAME, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == NG_CSV_COLUMNS
    assert [int(row["frame"]) for row in rows] == [0, 1, 2, 3]
    for row, result in zip(rows, results):
        assert float(row["score"]) == pytest.approx(result.score, abs=1e-6)
        image = cv2.cvtColor(cv2.imread(str(tmp_path / "ng" / row["image"])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image, result.frame_rgb)
        saved_overlay = cv2.imread(str(tmp_path / "ng" / row["overlay"]))
        assert saved_overlay.shape == result.frame_rgb.shape


def test_overlay_blend_contour_and_label():
    frame = np.full((120, 160, 3), 100, dtype=np.uint8)
    anomaly_map = np.zeros((120, 160), dtype=np.float32)
    anomaly_map[40:80, 60:100] = 1.0

    image = overlay(frame, anomaly_map, threshold=0.5, alpha=0.5, score=0.9)

    # COLORMAP_JET: 0 is dark blue (RGB 0, 0, 128) and 1 is dark red (RGB 128, 0, 0); half of each is blended.
    assert image[110, 10].tolist() == [50, 50, 114]
    assert image[60, 80].tolist() == [114, 50, 50]
    # The outline of the region above the threshold is white, softened by anti-aliasing; the blend there
    # alone would be [114, 50, 50].
    assert image[40, 80].min() >= 200
    assert image[60, 60].min() >= 200
    # NG label box in the top-left corner, red because 0.9 >= 0.5.
    assert image[1, 1].tolist() == [230, 30, 30]

    ok_image = overlay(frame, anomaly_map * 0.2, threshold=0.5, alpha=0.5, score=0.2)
    assert ok_image[1, 1].tolist() == [20, 170, 60]
    # Nothing reaches the threshold, so no outline is drawn.
    assert ok_image[30:90, 50:110].min(axis=-1).max() < 200


def test_overlay_resizes_map_to_frame():
    frame = np.zeros((90, 70, 3), dtype=np.uint8)
    image = overlay(frame, np.zeros((32, 32), dtype=np.float32), threshold=None, alpha=1.0, label=False)
    assert image.shape == (90, 70, 3)
    assert image[45, 35].tolist() == [0, 0, 128]
