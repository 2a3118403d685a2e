"""End-to-end training on a small copy of the shared magnetic tile data, with the shared MobileNetV2 weights."""

import csv
import json
import threading

import numpy as np
import pytest

from glass_engine.data import discover, read_image
from glass_engine.errors import CancelledError, OutputError
from glass_engine.inference import Predictor
from glass_engine.runs import METRIC_KEYS, RunFolder
from glass_engine.training import Trainer, evaluate_run
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset


@pytest.fixture(scope="module")
def tile_root(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    # A space and non-ASCII letters in the path on purpose.
    target = tmp_path_factory.mktemp("data") / "Fliesen prüfung"
    return copy_mvtec_subset(source, target, train=12, good=4, per_type=3, types=["blowhole", "crack"])


def small_config(**changes):
    config = tiny_run_config()
    return config.updated(changes) if changes else config


def test_train_writes_complete_run(tile_root, tmp_path):
    index = discover(tile_root, "magnetic_tile")
    events = []
    run_dir = tmp_path / "run"
    metrics = Trainer(small_config(), index, run_dir, on_event=events.append).run_training()

    run = RunFolder(run_dir)
    saved = json.loads(run.metrics_path.read_text())
    for key in METRIC_KEYS:
        assert key in saved
    assert saved == metrics
    assert 0.0 <= saved["image_auroc"] <= 1.0
    assert 0.0 <= saved["pixel_auroc"] <= 1.0
    assert 0.0 <= saved["pixel_aupro"] <= 1.0
    assert saved["selection_rule"] == "test_auroc_sum"
    assert saved["best_epoch"] in (0, 1)

    with open(run.scores_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(index.test) == 10
    assert sum(int(row["label"]) for row in rows) == 6
    assert all(0.0 <= float(row["score"]) <= 1.0 for row in rows)

    maps = np.load(run.maps_path)
    assert maps.shape == (10, 96, 96)
    info = run.read_info()
    assert info["status"] == "done"
    assert info["pretrained"] is True
    assert info["distribution_mode"] in ("manifold", "hypersphere")
    assert run.distribution_path.is_file()
    assert run.best_checkpoint.is_file()
    assert run.config_path.read_text().startswith("data:")

    kinds = {event.kind for event in events}
    assert {"stage", "batch", "epoch", "evaluation", "finished"} <= kinds
    batches = [event for event in events if event.kind == "batch"]
    assert all({"loss", "p_true", "p_fake", "r_t", "r_g", "r_f"} <= set(event.stats) for event in batches)

    retest = evaluate_run(run_dir)
    assert retest["image_auroc"] == pytest.approx(saved["image_auroc"], abs=1e-6)

    predictor = Predictor(run_dir, device="cpu")
    first = rows[:3]
    predictions = list(predictor.predict_paths([row["path"] for row in first]))
    for row, prediction in zip(first, predictions):
        assert prediction.score == pytest.approx(float(row["score"]), abs=1e-5)
        assert prediction.original_map.shape == read_image(row["path"]).shape[:2]


def test_finished_run_is_not_overwritten(tile_root, tmp_path):
    index = discover(tile_root, "magnetic_tile")
    config = small_config(**{"method.meta_epochs": 1, "run.selection_rule": "last"})
    Trainer(config, index, tmp_path / "run").run_training()
    with pytest.raises(OutputError, match="already contains a finished run"):
        Trainer(config, index, tmp_path / "run").run_training()


def test_cancel_then_resume(tile_root, tmp_path):
    index = discover(tile_root, "magnetic_tile")
    config = small_config(**{"method.meta_epochs": 3, "run.selection_rule": "last"})
    cancel = threading.Event()

    def stop_in_second_epoch(event):
        if event.kind == "batch" and event.epoch == 2:
            cancel.set()

    run_dir = tmp_path / "run"
    with pytest.raises(CancelledError):
        Trainer(config, index, run_dir, on_event=stop_in_second_epoch, cancel=cancel).run_training()
    run = RunFolder(run_dir)
    assert run.read_info()["status"] == "cancelled"
    assert len(run.read_history()) == 1

    events = []
    Trainer(config, index, run_dir, on_event=events.append).run_training()
    epochs = [event.epoch for event in events if event.kind == "epoch"]
    assert epochs == [2, 3]
    assert run.read_info()["status"] == "done"
    assert [row["epoch"] for row in run.read_history()] == [0, 1, 2]


def test_cached_and_uncached_training_agree(tile_root, tmp_path):
    index = discover(tile_root, "magnetic_tile")
    config = small_config(**{"method.distribution": "manifold"})
    cached = Trainer(config, index, tmp_path / "cached", use_cache=True).run_training()
    uncached = Trainer(config, index, tmp_path / "uncached", use_cache=False).run_training()
    for key in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro"):
        assert cached[key] == pytest.approx(uncached[key], abs=1e-4), key


def test_validation_rule_never_reads_test_labels(tile_root, tmp_path):
    index = discover(tile_root, "magnetic_tile")
    config = small_config(**{"run.selection_rule": "validation", "data.validation_fraction": 0.25})
    events = []
    metrics = Trainer(config, index, tmp_path / "run", on_event=events.append).run_training()
    assert metrics["selection_rule"] == "validation"
    evaluations = [event for event in events if event.kind == "evaluation"]
    assert evaluations
    info = RunFolder(tmp_path / "run").read_info()
    assert info["validation_images"] == 3
    assert info["train_images"] == 9
