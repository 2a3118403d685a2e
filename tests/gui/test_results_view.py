"""Tests of the Results view on one real run, trained once per module on a small copy of the magnetic tile data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from PySide6.QtCore import Qt

from glass_engine.config import GlassConfig
from glass_engine.data import Preprocessor, discover, read_image, read_mask
from glass_engine.runs import RunFolder
from glass_engine.store import Project
from glass_engine.training import Trainer
from glass_gui.results_view import SLIDER_STEPS, ResultsView, config_differences
from glass_gui.train_worker import apply_distribution_override, index_from_project
from glass_gui.views import StudioContext
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

CATEGORY = "magnetic_tile"


def small_config() -> GlassConfig:
    return tiny_run_config()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A project with one finished run of the category, recorded as the Train view records it."""
    source = shared_dataset("magnetic_tile") / CATEGORY
    data = copy_mvtec_subset(source, tmp_path_factory.mktemp("data"), train=12, good=4, per_type=3,
                             types=["blowhole", "crack"])
    project = Project.create(tmp_path_factory.mktemp("projects") / "results project")
    project.import_index(discover(data, CATEGORY))
    config = small_config()
    run_dir = project.runs_dir / "first"
    run_id = project.add_run("first", CATEGORY, run_dir, config.to_yaml(), status="running")
    Trainer(config, index_from_project(project, CATEGORY), run_dir).run_training()
    project.update_run(run_id, status="done", metrics=RunFolder(run_dir).read_metrics())
    project.close()
    return project.folder, run_id, run_dir


@pytest.fixture()
def project(trained, tmp_path) -> Project:  # type: ignore[no-untyped-def]
    folder, _run_id, run_dir = trained
    opened = Project.open(folder)
    yield opened
    RunFolder(run_dir).update_info(user_threshold=None)
    opened.close()


@pytest.fixture()
def view(qtbot, project) -> ResultsView:  # type: ignore[no-untyped-def]
    context = StudioContext()
    results = ResultsView(context)
    results._test_context = context  # keep the context alive as long as the view
    qtbot.addWidget(results)
    results.resize(1400, 900)
    results.show()
    context.set_project(project)
    yield results
    # Closing saves a pending threshold, which needs the project still open.
    results.close()


def scores_csv(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def counts_by_hand(rows: list[dict[str, str]], threshold: float) -> dict[str, int]:
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}
    for row in rows:
        flagged = float(row["score"]) >= threshold
        defective = row["label"] == "1"
        if flagged:
            counts["tp" if defective else "fp"] += 1
        else:
            counts["fn" if defective else "tn"] += 1
    return counts


def shown_counts(view: ResultsView) -> dict[str, int]:
    return {key: int(cell.text()) for key, cell in view.threshold_panel.cells.items()}


def table_names(view: ResultsView) -> list[str]:
    return sorted(view.proxy.index(row, 0).data() for row in range(view.proxy.rowCount()))


def test_table_lists_test_images(view, trained):
    _folder, run_id, run_dir = trained
    rows = scores_csv(run_dir)
    assert view.results.record.id == run_id
    assert view.model.rowCount() == len(rows) == 10
    assert table_names(view) == sorted(Path(row["path"]).name for row in rows)
    scores = [float(view.proxy.index(row, 3).data(Qt.ItemDataRole.UserRole + 1)) for row in range(10)]
    assert scores == sorted(scores, reverse=True)


def test_default_threshold_is_f1_optimal(view, trained):
    _folder, _run_id, run_dir = trained
    f1_threshold = json.loads((run_dir / "metrics.json").read_text())["threshold"]
    assert view.threshold_panel.threshold == pytest.approx(f1_threshold, abs=1e-8)
    assert "F1-optimal" in view.threshold_panel.source_label.text()
    assert json.loads((run_dir / "run.json").read_text()).get("user_threshold") is None


def test_slider_updates_confusion_matrix(view, trained, qtbot):
    _folder, _run_id, run_dir = trained
    rows = scores_csv(run_dir)
    panel = view.threshold_panel
    seen = set()
    for position in (0, 150, 400, 520, 700, 900, SLIDER_STEPS):
        panel.slider.setValue(position)
        threshold = panel.threshold
        expected = counts_by_hand(rows, threshold)
        assert shown_counts(view) == expected, f"slider {position}, threshold {threshold}"
        seen.add(tuple(expected.values()))
        flagged = expected["tp"] + expected["fp"]
        precision = expected["tp"] / flagged if flagged else None
        if precision is not None:
            assert f"Precision {precision:.3f}" in panel.ratio_label.text()
        assert f"False positives {expected['fp']}" in panel.ratio_label.text()
        assert f"False negatives {expected['fn']}" in panel.ratio_label.text()
    assert len(seen) >= 3

    # At the lowest threshold every image is flagged; the FP filter shows exactly the good images.
    panel.slider.setValue(0)
    view.filter_combo.setCurrentIndex(view.filter_combo.findData("fp"))
    good = sorted(Path(row["path"]).name for row in rows if row["label"] == "0")
    assert table_names(view) == good
    view.filter_combo.setCurrentIndex(view.filter_combo.findData("fn"))
    assert table_names(view) == []
    panel.slider.setValue(700)
    threshold = panel.threshold
    missed = sorted(Path(row["path"]).name for row in rows if row["label"] == "1" and float(row["score"]) < threshold)
    assert missed
    assert table_names(view) == missed


def test_threshold_saved_with_run(view, project, trained, qtbot):
    _folder, run_id, run_dir = trained
    panel = view.threshold_panel
    panel.slider.setValue(250)
    chosen = panel.threshold
    qtbot.waitUntil(lambda: json.loads((run_dir / "run.json").read_text()).get("user_threshold") is not None,
                    timeout=5000)
    assert RunFolder(run_dir).threshold() == chosen
    assert project.run(run_id).threshold == chosen
    assert "Operator threshold" in panel.source_label.text()

    view.use_f1_threshold()
    f1_threshold = RunFolder(run_dir).read_metrics()["threshold"]
    assert RunFolder(run_dir).read_info().get("user_threshold") is None
    assert RunFolder(run_dir).threshold() == f1_threshold
    assert panel.threshold == pytest.approx(f1_threshold, abs=1e-8)


def test_heatmap_matches_map_in_image_geometry(view, project, trained):
    _folder, _run_id, run_dir = trained
    rows = scores_csv(run_dir)
    row = next(i for i, entry in enumerate(rows) if entry["label"] == "1")
    view.show_row(row)

    image = read_image(Path(rows[row]["path"]))
    config = GlassConfig.load(run_dir / "config.yaml")
    maps = np.load(run_dir / "maps.npy")
    expected = Preprocessor(config.data.image_size, config.data.resize_policy, config.data.crop_ratio) \
        .map_to_original(maps[int(rows[row]["map_index"])].astype(np.float32), image.shape[:2])
    shown = view.viewer.map_item.image
    assert shown.shape == image.shape[:2]
    np.testing.assert_allclose(shown, expected)
    assert view.viewer.map_item.levels is not None
    assert list(view.viewer.map_item.levels) == [0.0, 1.0]

    # The ground-truth contour spans the mask's bounding box.
    record = next(r for r in project.images(category=CATEGORY) if str(r.path) == rows[row]["path"])
    mask = read_mask(record.mask_path, image.shape[:2])
    ys, xs = np.nonzero(mask)
    contour_x, contour_y = view.viewer.truth_items[0].getData()
    assert contour_x.min() - 0.5 == xs.min()
    assert contour_x.max() - 0.5 == xs.max()
    assert contour_y.min() - 0.5 == ys.min()
    assert contour_y.max() - 0.5 == ys.max()


def test_proposed_mask_stored_after_confirmation(view, project, trained, qtbot, message_boxes):
    _folder, _run_id, run_dir = trained
    rows = scores_csv(run_dir)
    row = max(range(len(rows)), key=lambda i: float(rows[i]["score"]))
    view.show_row(row)
    image = read_image(Path(rows[row]["path"]))
    record = next(r for r in project.images(category=CATEGORY) if str(r.path) == rows[row]["path"])
    config = GlassConfig.load(run_dir / "config.yaml")
    full_map = Preprocessor(config.data.image_size, config.data.resize_policy, config.data.crop_ratio) \
        .map_to_original(np.load(run_dir / "maps.npy")[int(rows[row]["map_index"])].astype(np.float32),
                         image.shape[:2])

    # The level follows the threshold until the operator changes it.
    assert view.mask_level() == view.threshold_panel.threshold
    view.threshold_panel.slider.setValue(300)
    assert view.mask_level() == view.threshold_panel.threshold

    level = round(float(np.quantile(full_map, 0.97)), 4)
    view.mask_level_spin.setValue(level)
    assert view.mask_level() == level
    expected = full_map >= level
    assert 0 < expected.sum() < expected.size
    view.threshold_panel.slider.setValue(600)
    assert view.mask_level() == level
    outline_x, _outline_y = view.viewer.proposal_item.getData()
    assert len(outline_x) > 0

    with qtbot.waitSignal(view.context.open_image_requested) as opened:
        assert view.propose_mask()
    assert opened.args[0] == record.id
    assert record.id in opened.args[1]
    assert message_boxes[-1][0] == "Use the proposed mask?"
    np.testing.assert_array_equal(project.read_mask(record.id), expected)


def test_empty_proposal_explains_level(view, project, trained, monkeypatch):
    shown = []
    monkeypatch.setattr("glass_gui.results_view.show_error",
                        lambda parent, title, message, details="": shown.append(message))
    view.show_row(0)
    before = project.image(view.results.image_ids[0]).mask_path
    view.mask_level_spin.setValue(1.0)
    assert not view.propose_mask()
    assert len(shown) == 1
    assert "Lower the mask level" in shown[0]
    assert project.image(view.results.image_ids[0]).mask_path == before


def test_curves_from_curves_json(view, trained):
    _folder, _run_id, run_dir = trained
    curves = json.loads((run_dir / "curves.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    roc = view.curves.sets["roc"].curves
    image_name = f"image, AUROC {metrics['image_auroc']:.3f}"
    x, y = roc[image_name].getData()
    assert list(x) == pytest.approx(curves["image"]["roc"]["fpr"])
    assert list(y) == pytest.approx(curves["image"]["roc"]["tpr"])
    pro_name = next(iter(view.curves.sets["pro"].curves))
    assert f"{metrics['pixel_aupro']:.3f}" in pro_name
    x, y = view.curves.sets["pro"].curves[pro_name].getData()
    assert list(y) == pytest.approx(curves["pixel"]["pro"]["pro"])


def test_distribution_table_and_override(view, project, trained):
    _folder, _run_id, run_dir = trained
    distribution = json.loads((run_dir / "distribution.json").read_text())
    table = view.distribution.table
    assert table.rowCount() == 1
    assert table.item(0, 0).text() == CATEGORY
    assert table.item(0, 1).text() == distribution["mode"]
    assert table.item(0, 3).text() == str(distribution["points"])
    assert view.distribution.spectra[CATEGORY] == run_dir / "spectrum.png"

    combo = view.distribution.override_combo(CATEGORY)
    forced = "hypersphere" if distribution["mode"] == "manifold" else "manifold"
    combo.setCurrentIndex(combo.findData(forced))
    assert apply_distribution_override(small_config(), project, CATEGORY).method.distribution == forced
    combo.setCurrentIndex(combo.findData("auto"))
    assert apply_distribution_override(small_config(), project, CATEGORY).method.distribution == "auto"


def test_compare_shows_differing_settings(view, project, trained):
    _folder, run_id, run_dir = trained
    changed = small_config().updated({"method.lr": 0.0005, "run.seed": 3})
    second = project.add_run("second", CATEGORY, run_dir, changed.to_yaml(), status="done")
    project.update_run(second, metrics=RunFolder(run_dir).read_metrics())
    try:
        view.context.runs_changed.emit()
        view.compare.set_checked([run_id, second])
        table = view.compare.diff_table
        keys = [table.verticalHeaderItem(row).text() for row in range(table.rowCount())]
        assert keys == ["method.lr", "run.seed"]
        assert view.compare.metrics_table.rowCount() == 2
    finally:
        project.delete_run(second)


def test_config_differences_only_changed_keys():
    first = {"data": {"image_size": 96, "batch_size": 4}, "run": {"seed": 0}}
    second = {"data": {"image_size": 128, "batch_size": 4}, "run": {"seed": 0}}
    third = {"data": {"image_size": 96, "batch_size": 4}, "run": {"seed": 1}}
    assert config_differences([first, second]) == {"data.image_size": [96, 128]}
    assert config_differences([first, second, third]) == {"data.image_size": [96, 128, 96], "run.seed": [0, 0, 1]}
    assert config_differences([first, first]) == {}


def test_export_report_writes_workbook(view, trained, tmp_path, qtbot):
    _folder, _run_id, run_dir = trained
    out = tmp_path / "report.xlsx"
    worker = view.write_report([run_dir], out)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    workbook = openpyxl.load_workbook(out)
    assert "Summary" in workbook.sheetnames
    assert "Images" in workbook.sheetnames
