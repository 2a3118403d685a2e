"""Tests of the Train view on a small copy of the shared magnetic tile data with the shared MobileNetV2 weights.

Each real training takes about 10 to 20 s on a CPU.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torchvision

from glass_engine.config import preset
from glass_engine.data import discover
from glass_engine.features import user_weights_dir
from glass_engine.runs import RunFolder
from glass_engine.store import Project
from glass_gui import train_view
from glass_gui.results_view import ResultsView
from glass_gui.train_view import TrainView, prepare_screenshots
from glass_gui.train_worker import index_from_project, set_distribution_override, weights_status
from glass_gui.views import StudioContext
from tests.conftest import mobilenet_weights, shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

CATEGORY = "magnetic_tile"
TRAINING_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def tile_data(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    source = shared_dataset("magnetic_tile") / CATEGORY
    return copy_mvtec_subset(source, tmp_path_factory.mktemp("data"), train=12, good=4, per_type=3,
                             types=["blowhole", "crack"])


@pytest.fixture()
def project(tile_data, tmp_path) -> Project:  # type: ignore[no-untyped-def]
    created = Project.create(tmp_path / "tile project")
    created.import_index(discover(tile_data, CATEGORY))
    yield created
    created.close()


def small_config(**changes):  # type: ignore[no-untyped-def]
    config = tiny_run_config()
    return config.updated(changes) if changes else config


def make_views(qtbot, project: Project) -> tuple[StudioContext, TrainView, ResultsView]:  # type: ignore[no-untyped-def]
    context = StudioContext()
    train = TrainView(context)
    results = ResultsView(context)
    train._test_context = context  # keep the context alive as long as the views
    for view in (train, results):
        qtbot.addWidget(view)
        view.resize(1200, 800)
    context.set_project(project)
    return context, train, results


def read_scores_csv(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_training_completes_and_results_fill(qtbot, project):
    context, view, results = make_views(qtbot, project)
    view.form.set_config(small_config())
    events = []
    view.queue.event.connect(events.append)
    assert view.checked_categories() == [CATEGORY]

    with qtbot.waitSignal(view.queue.job_ended, timeout=TRAINING_TIMEOUT_MS) as ended:
        assert view.start()
        assert view.training_state()["running"]
        assert not view.start_button.isEnabled()
    job, status, message, _details = ended.args
    assert (status, message) == ("done", "")

    run = project.run(job.run_id)
    assert run.status == "done"
    assert run.run_dir == job.run_dir
    assert run.run_dir.parent == project.runs_dir
    assert run.metrics == RunFolder(run.run_dir).read_metrics()
    assert [item.state for item in project.queue()] == ["done"]
    assert not view.queue.is_running()
    assert view.progress_bar.value() == 1000

    # Every test image of the project is a row of scores.csv and of the Results view's table.
    index = index_from_project(project, CATEGORY)
    rows = read_scores_csv(run.run_dir)
    assert len(rows) == len(index.test) == 10
    assert sorted(row["path"] for row in rows) == sorted(str(sample.path) for sample in index.test)
    assert results.results is not None
    assert results.results.record.id == run.id
    assert results.model.rowCount() == 10

    # The store's per-image scores are those of scores.csv.
    ids = {str(record.path): record.id for record in project.images(category=CATEGORY)}
    stored = project.scores(run.id)
    assert len(stored) == 10
    for row in rows:
        assert stored[ids[row["path"]]] == pytest.approx(float(row["score"]), abs=1e-7)

    # The live plots show every batch's running loss and each evaluation.
    view._redraw_plots()
    batch_events = [event for event in events if event.kind == "batch"]
    loss_x, loss_y = view.curve_sets["loss"].curves["loss"].getData()
    assert len(loss_y) == len(batch_events) > 0
    assert list(loss_y) == pytest.approx([event.stats["loss"] for event in batch_events])
    auroc_x, auroc_y = view.curve_sets["eval"].curves["image_auroc"].getData()
    assert list(auroc_x) == [1.0, 2.0]
    assert "Finished" in view.log.toPlainText()

    # The screenshot preparation reuses the finished run: its history in the plots, its best defect shown.
    assert prepare_screenshots({"train": view, "results": results}) == run.id
    assert view.selected_run_id() == run.id
    history = RunFolder(run.run_dir).read_history()
    loss_x, loss_y = view.curve_sets["loss"].curves["loss"].getData()
    assert list(loss_y) == pytest.approx([row["loss"] for row in history])
    top = max((row for row in rows if row["label"] == "1"), key=lambda row: float(row["score"]))
    assert results.viewer.caption.text().startswith(Path(top["path"]).name)


def test_cancel_stops_within_batch_then_resumes(qtbot, project):
    context, view, _results = make_views(qtbot, project)
    view.form.set_config(small_config())

    def cancel_in_second_epoch(event):  # type: ignore[no-untyped-def]
        if event.kind == "batch" and event.epoch == 2 and view.queue.is_running():
            view.cancel()

    view.queue.event.connect(cancel_in_second_epoch)
    with qtbot.waitSignal(view.queue.job_ended, timeout=TRAINING_TIMEOUT_MS) as ended:
        view.start()
    job, status, _message, _details = ended.args
    view.queue.event.disconnect(cancel_in_second_epoch)

    assert status == "cancelled"
    assert view.queue.last_session.batches_after_cancel <= 1
    assert project.run(job.run_id).status == "cancelled"
    assert RunFolder(job.run_dir).read_info()["status"] == "cancelled"
    assert [item.state for item in project.queue()] == ["cancelled"]
    assert len(RunFolder(job.run_dir).read_history()) == 1

    view.select_run(job.run_id)
    assert view.resume_button.isEnabled()
    with qtbot.waitSignal(view.queue.job_ended, timeout=TRAINING_TIMEOUT_MS) as ended:
        assert view.resume(job.run_id)
    resumed_job, status, message, _details = ended.args
    assert (status, message) == ("done", "")
    assert resumed_job.run_id == job.run_id
    assert resumed_job.run_dir == job.run_dir
    assert resumed_job.resumed
    assert project.run(job.run_id).status == "done"
    assert [row["epoch"] for row in RunFolder(job.run_dir).read_history()] == [0, 1]
    assert "Resuming from the checkpoint of epoch 1" in view.log.toPlainText()
    assert len(project.runs()) == 1


def test_worker_error_one_message_failed_run(qtbot, project, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(train_view, "show_error", lambda parent, title, message, details="": shown.append(
        (title, message)))
    wrong_weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong_weights)
    set_distribution_override(project, CATEGORY, "hypersphere")

    context, view, _results = make_views(qtbot, project)
    view.form.set_config(small_config(**{"backbone.weights": str(wrong_weights)}))
    assert view.enqueue_checked()
    assert view.enqueue_checked()
    with qtbot.waitSignal(view.queue.job_ended, timeout=TRAINING_TIMEOUT_MS) as ended:
        view.start()
    job, status, message, _details = ended.args
    qtbot.wait(200)

    assert status == "failed"
    assert len(shown) == 1
    assert "does not fit backbone 'mobilenet_v2'" in shown[0][1]
    assert str(wrong_weights) in shown[0][1]
    run = project.run(job.run_id)
    assert run.status == "failed"
    assert "does not fit backbone" in run.error
    assert "distribution: hypersphere" in run.config_yaml
    # The failure pauses the queue: the second training waits for the user instead of failing again.
    assert [item.state for item in project.queue()] == ["failed", "waiting"]
    assert not view.queue.is_running()
    assert view.start_button.isEnabled()


def test_queue_survives_restart(qtbot, project):
    _context, view, _results = make_views(qtbot, project)
    view.form.set_config(small_config())
    first, second = view.enqueue_checked()[0], view.enqueue_checked()[0]
    assert view.queue_list.count() == 2

    # An application that ended during the first training left its queue item and run "running".
    project.set_queue_state(first, "running")
    run_id = project.add_run("interrupted", CATEGORY, project.runs_dir / "interrupted",
                             small_config().to_yaml(), status="running")
    view.queue._set_link(first, run_id)
    orphan_id = project.add_run("orphan", CATEGORY, project.runs_dir / "orphan", "", status="running")
    folder = project.folder
    project.close()

    reopened = Project.open(folder)
    try:
        _context, restarted, _results = make_views(qtbot, reopened)
        assert [item.id for item in reopened.queue(states=["waiting"])] == [first, second]
        assert restarted.queue_list.count() == 2
        assert "resume" in restarted.queue_list.item(0).text()
        assert restarted.queue.linked_run(first) == run_id
        assert reopened.run(run_id).status == "queued"
        assert reopened.run(orphan_id).status == "failed"
        assert "Interrupted" in reopened.run(orphan_id).error
        assert "2 trainings are waiting" in restarted.log.toPlainText()
    finally:
        reopened.close()


def test_import_weights_checks_architecture(qtbot, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(train_view, "show_error", lambda parent, title, message, details="": shown.append(
        (title, message)))
    context = StudioContext()
    view = TrainView(context)
    qtbot.addWidget(view)
    view.form.set_config(preset("mobilenet"))
    assert weights_status(view.form.config().backbone).state == "download"
    assert "Import weights file" in view.weights_label.text()

    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    worker = view.import_weights_file("mobilenet_v2", wrong)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert len(shown) == 1
    assert "does not fit backbone 'mobilenet_v2'" in shown[0][1]
    assert not (user_weights_dir() / "mobilenet_v2.pth").exists()

    source = mobilenet_weights()
    worker = view.import_weights_file("mobilenet_v2", source)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    target = user_weights_dir() / "mobilenet_v2.pth"
    assert target.read_bytes() == source.read_bytes()
    assert len(shown) == 1
    assert weights_status(view.form.config().backbone).state == "imported"
    assert str(target) in view.weights_label.text()
