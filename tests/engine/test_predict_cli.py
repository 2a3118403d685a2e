"""`glass-engine predict` through cli.main: error exits, checkpoint files, folders and scores.csv output."""

import csv
import logging
import shutil
from pathlib import Path

import cv2
import pytest

from glass_engine.cli import main
from glass_engine.data import discover, read_image
from glass_engine.runs import RunFolder
from glass_engine.training import Trainer
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

# Scores in the predict output have 6 decimals and the run's scores.csv has 8.
SCORE_TOLERANCE = 1e-5


def tiny_config():
    return tiny_run_config()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    data_root = copy_mvtec_subset(
        source, tmp_path_factory.mktemp("data"), train=8, good=2, per_type=2, types=["blowhole", "crack"]
    )
    run_dir = tmp_path_factory.mktemp("runs") / "predict run"
    Trainer(tiny_config(), discover(data_root, "magnetic_tile"), run_dir).run_training()
    return run_dir


@pytest.fixture(scope="module")
def run_scores(trained_run):
    return {row["path"]: row["score"] for row in RunFolder(trained_run).read_scores()}


def read_output(out):
    with open(out / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def predict(*args):
    return main(["predict", *[str(arg) for arg in args]])


def test_predict_missing_run_exits_nonzero(tmp_path, caplog, run_scores):
    missing = tmp_path / "no run here"
    image = next(iter(run_scores))
    with caplog.at_level(logging.ERROR):
        code = predict("--run", missing, image, "--out", tmp_path / "out")

    assert code != 0
    assert str(missing) in caplog.text
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_predict_missing_image_exits_nonzero(trained_run, tmp_path, caplog):
    missing = tmp_path / "absent.png"
    with caplog.at_level(logging.ERROR):
        code = predict("--run", trained_run, missing, "--out", tmp_path / "out")

    assert code != 0
    assert str(missing) in caplog.text


def test_predict_run_without_checkpoint(tmp_path, caplog, run_scores):
    empty_run = tmp_path / "empty run"
    empty_run.mkdir()
    with caplog.at_level(logging.ERROR):
        code = predict("--run", empty_run, next(iter(run_scores)), "--out", tmp_path / "out")

    assert code != 0
    assert str(empty_run) in caplog.text


def test_predict_with_checkpoint_file(trained_run, tmp_path, run_scores):
    checkpoint = RunFolder(trained_run).best_checkpoint
    images = sorted(run_scores)[:2]
    out = tmp_path / "out"

    code = predict("--run", checkpoint, *images, "--out", out)

    assert code == 0
    rows = read_output(out)
    assert [row["path"] for row in rows] == images
    for row in rows:
        assert float(row["score"]) == pytest.approx(run_scores[row["path"]], abs=SCORE_TOLERANCE)


def test_predict_folder_skips_non_image(trained_run, tmp_path, run_scores, caplog):
    folder = tmp_path / "inbox"
    folder.mkdir()
    for path in sorted(run_scores)[:3]:
        shutil.copy(path, folder / Path(path).name)
    (folder / "notes.txt").write_text("not an image\n")
    out = tmp_path / "out"

    with caplog.at_level(logging.INFO):
        code = predict("--run", trained_run, folder, "--out", out)

    assert code == 0
    rows = read_output(out)
    assert len(rows) == 3
    assert all(not row["path"].endswith("notes.txt") for row in rows)
    assert "notes.txt" in caplog.text
    assert "Scored 3 images (1 skipped)" in caplog.text


def test_predict_writes_heatmaps(trained_run, tmp_path, run_scores):
    images = sorted(run_scores)[:3]
    out = tmp_path / "out"

    assert predict("--run", trained_run, *images, "--out", out) == 0

    rows = read_output(out)
    assert len(rows) == 3
    heatmaps = sorted((out / "heatmaps").iterdir())
    assert len(heatmaps) == 3
    for row in rows:
        heatmap = cv2.imread(str(out / row["heatmap"]), cv2.IMREAD_UNCHANGED)
        assert row["heatmap"].endswith(".png")
        assert heatmap is not None
        assert heatmap.shape == read_image(row["path"]).shape[:2] + (3,)


def test_predict_scores_match_run(trained_run, tmp_path, run_scores):
    out = tmp_path / "out"

    assert predict("--run", trained_run, *sorted(run_scores), "--out", out) == 0

    rows = read_output(out)
    assert len(rows) == len(run_scores)
    for row in rows:
        assert float(row["score"]) == pytest.approx(run_scores[row["path"]], abs=SCORE_TOLERANCE)


def test_predict_threshold_decides(trained_run, tmp_path, run_scores):
    out = tmp_path / "out"
    threshold = sorted(run_scores.values())[len(run_scores) // 2]

    assert predict("--run", trained_run, *sorted(run_scores), "--out", out, "--threshold", threshold) == 0

    decisions = {row["path"]: row["decision"] for row in read_output(out)}
    for path, score in run_scores.items():
        if abs(score - threshold) > SCORE_TOLERANCE:
            assert decisions[path] == ("NG" if score >= threshold else "OK"), path
