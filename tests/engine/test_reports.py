"""Tests of glass_engine.reports on one tiny real run: sheets, decisions, pictures, charts, CSV and CLI."""

from __future__ import annotations

import csv
import json
import re
import shutil

import cv2
import numpy as np
import openpyxl
import pytest
from openpyxl.utils import column_index_from_string

from glass_engine.cli import main
from glass_engine.data import discover
from glass_engine.errors import CheckpointError, OutputError
from glass_engine.inference import Predictor
from glass_engine.reports import write_inspection_report, write_report, write_scores_csv
from glass_engine.training import Trainer
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

METRIC_ROWS = {
    "image_auroc": "Image AUROC",
    "image_ap": "Image AP",
    "pixel_auroc": "Pixel AUROC",
    "pixel_ap": "Pixel AP",
    "pixel_aupro": "Pixel AUPRO (FPR up to 30%, exact)",
    "pixel_pro_official": "PRO (official code, 200 thresholds)",
}
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "pixel_aupro", "pixel_pro_official")
# Chart title -> (curves.json level, curve, x key, y key)
CHART_CURVES = {
    "Image ROC": ("image", "roc", "fpr", "tpr"),
    "Image precision-recall": ("image", "pr", "recall", "precision"),
    "Pixel ROC": ("pixel", "roc", "fpr", "tpr"),
    "Pixel precision-recall": ("pixel", "pr", "recall", "precision"),
    "PRO up to 30% FPR": ("pixel", "pro", "fpr", "pro"),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    # A space and non-ASCII letters in the data path on purpose.
    target = tmp_path_factory.mktemp("data") / "Prüf daten"
    data = copy_mvtec_subset(source, target, train=8, good=3, per_type=2, types=["blowhole", "crack"])
    config = tiny_run_config({"method.eval_epochs": 5})
    run_folder = tmp_path_factory.mktemp("runs") / "tile run"
    Trainer(config, discover(data, "magnetic_tile"), run_folder).run_training()
    return run_folder


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.xlsx"
    assert write_report([run_dir], out) == out
    return openpyxl.load_workbook(out)


@pytest.fixture
def no_mask_run(run_dir, tmp_path):
    """A copy of the run as the trainer leaves it without masks: no pixel metrics and no pixel curves."""
    copy = shutil.copytree(run_dir, tmp_path / "no masks")
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics.update(dict.fromkeys(PIXEL_KEYS))
    (copy / "metrics.json").write_text(json.dumps(metrics))
    curves = json.loads((copy / "curves.json").read_text())
    curves.pop("pixel")
    (copy / "curves.json").write_text(json.dumps(curves))
    return copy


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_scores(run_dir):
    with open(run_dir / "scores.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def expected_decision(score_text, threshold):
    return "NG" if float(score_text) >= threshold else "OK"


def summary_values(sheet):
    """Map each Summary field name to the list of its values, one per run column."""
    values = {}
    for row in sheet.iter_rows(min_row=2, values_only=True):
        if row[0] is not None:
            values[row[0]] = list(row[1:])
    return values


def sheet_records(sheet):
    rows = list(sheet.iter_rows(values_only=True))
    header = rows[0]
    return [dict(zip(header, row)) for row in rows[1:] if any(value is not None for value in row)]


def column_values(sheet, reference):
    """Read the cells of a reference such as 'Curves'!$J$3:$J$12."""
    match = re.fullmatch(r"'?([^'!]+)'?!\$([A-Z]+)\$(\d+):\$([A-Z]+)\$(\d+)", reference)
    assert match, reference
    assert match.group(1) == sheet.title
    assert match.group(2) == match.group(4)
    column = column_index_from_string(match.group(2))
    return [sheet.cell(row=row, column=column).value for row in range(int(match.group(3)), int(match.group(5)) + 1)]


def test_report_has_all_sheets(report):
    assert report.sheetnames == ["Summary", "Categories", "Images", "Curves", "Distribution", "Config"]
    for name in ("Summary", "Categories", "Images", "Config"):
        assert report[name].freeze_panes is not None


def test_summary_metrics_match_metrics_json(report, run_dir):
    metrics = read_json(run_dir / "metrics.json")
    sheet = report["Summary"]
    values = summary_values(sheet)

    assert sheet.cell(row=1, column=2).value == run_dir.name
    for key, label in METRIC_ROWS.items():
        assert metrics[key] is not None
        assert values[label][0] == pytest.approx(metrics[key], rel=1e-12)
    assert values["Threshold"][0] == pytest.approx(metrics["threshold"], rel=1e-12)
    assert values["Threshold source"][0].startswith("F1-optimal")
    assert values["Best epoch (first = 1)"][0] == metrics["best_epoch"] + 1
    assert values["Checkpoint selection rule"][0] == "test_auroc_sum"
    assert "optimistic" in values["Selection rule meaning"][0]
    assert values["Backbone weights"][0] == "pretrained"
    assert values["Category"][0] == "magnetic_tile"

    labels = set(METRIC_ROWS.values())
    metric_rows = [row for row in range(2, sheet.max_row + 1) if sheet.cell(row=row, column=1).value in labels]
    assert len(metric_rows) == len(METRIC_ROWS)
    for row in metric_rows:
        assert sheet.cell(row=row, column=2).number_format == "0.0%"


def test_summary_counts_at_threshold(report, run_dir):
    threshold = read_json(run_dir / "metrics.json")["threshold"]
    scores = read_scores(run_dir)
    decisions = [expected_decision(row["score"], threshold) for row in scores]
    values = summary_values(report["Summary"])

    assert values["Test images"][0] == len(scores) == 7
    assert values["Defective test images"][0] == 4
    assert values["NG at the threshold"][0] == decisions.count("NG")
    assert values["OK at the threshold"][0] == decisions.count("OK")
    false_alarms = sum(1 for row, decision in zip(scores, decisions) if row["label"] == "0" and decision == "NG")
    assert values["False alarms (good judged NG)"][0] == false_alarms


def test_images_sheet_decisions(report, run_dir):
    threshold = read_json(run_dir / "metrics.json")["threshold"]
    scores = read_scores(run_dir)
    records = sheet_records(report["Images"])

    assert len(records) == len(scores)
    for record, row in zip(records, scores):
        decision = expected_decision(row["score"], threshold)
        defective = row["label"] == "1"
        assert record["Path"] == row["path"]
        assert record["True label"] == ("defective" if defective else "good")
        assert record["Defect type"] == row["defect_type"]
        assert record["Score"] == pytest.approx(float(row["score"]), abs=1e-9)
        assert record["Decision"] == decision
        assert record["Correct"] == ("yes" if (decision == "NG") == defective else "no")


def test_f1_threshold_image_is_ng(report, run_dir):
    # The F1-optimal threshold is the score of one test image, which the report must count as NG.
    threshold = read_json(run_dir / "metrics.json")["threshold"]
    records = sheet_records(report["Images"])
    at_threshold = [record for record in records if abs(record["Score"] - threshold) < 1e-8]
    assert at_threshold
    for record in at_threshold:
        assert record["Decision"] == "NG"


def test_threshold_equal_to_score_is_ng(run_dir, tmp_path):
    # scores.csv keeps full precision, so an image whose score equals the threshold is NG and one just
    # below it is OK.
    scores = read_scores(run_dir)
    exact = float(scores[0]["score"])
    at_score = sheet_records(openpyxl.load_workbook(write_report([run_dir], tmp_path / "at.xlsx", threshold=exact, pictures=False))["Images"])
    above = sheet_records(openpyxl.load_workbook(write_report([run_dir], tmp_path / "above.xlsx", threshold=exact + 1e-9, pictures=False))["Images"])

    assert at_score[0]["Decision"] == "NG"
    assert above[0]["Decision"] == "OK"
    for record in at_score:
        assert record["Decision"] == ("NG" if record["Score"] >= exact else "OK")


def test_images_sheet_embeds_thumbnails(report):
    sheet = report["Images"]
    rows = len(sheet_records(sheet))
    anchors = {(picture.anchor._from.col, picture.anchor._from.row) for picture in sheet._images}

    assert len(sheet._images) == 2 * rows
    # Zero-based anchors: columns H and I (7, 8), rows 2.. (1..).
    assert anchors == {(column, row) for column in (7, 8) for row in range(1, rows + 1)}
    assert sheet.row_dimensions[2].height >= 60
    assert sheet["E2"].number_format == "0.0000"


def test_given_threshold_replaces_the_runs(run_dir, tmp_path):
    scores = read_scores(run_dir)
    threshold = float(np.median([float(row["score"]) for row in scores]))
    out = write_report([run_dir], tmp_path / "given.xlsx", threshold=threshold, pictures=False)
    workbook = openpyxl.load_workbook(out)
    records = sheet_records(workbook["Images"])

    assert [record["Decision"] for record in records] == [expected_decision(row["score"], threshold) for row in scores]
    values = summary_values(workbook["Summary"])
    assert values["Threshold"][0] == pytest.approx(threshold)
    assert values["Threshold source"][0] == "given for this report"


def test_max_images_and_no_pictures(run_dir, tmp_path):
    out = write_report([run_dir], tmp_path / "short.xlsx", pictures=False, max_images=3)
    workbook = openpyxl.load_workbook(out)
    sheet = workbook["Images"]
    records = sheet_records(sheet)

    assert [record["Path"] for record in records] == [row["path"] for row in read_scores(run_dir)[:3]]
    assert sheet._images == []
    assert "Image" not in [cell.value for cell in sheet[1][:9]]
    texts = [cell.value for cell in sheet[1] if isinstance(cell.value, str)]
    notes = [text for text in texts if "showing the first 3 of 7" in text]
    assert len(notes) == 1
    assert summary_values(workbook["Summary"])["Rows on the Images sheet"][0].startswith("3 of 7")


def test_curves_sheet_charts_reference_points(report, run_dir):
    curves = read_json(run_dir / "curves.json")
    metrics = read_json(run_dir / "metrics.json")
    sheet = report["Curves"]
    charts = {chart.title.tx.rich.p[0].r[0].t: chart for chart in sheet._charts}

    assert set(charts) == set(CHART_CURVES)
    for title, (level, kind, x_key, y_key) in CHART_CURVES.items():
        chart = charts[title]
        assert len(chart.series) == 1
        series = chart.series[0]
        xs = column_values(sheet, series.xVal.numRef.f)
        ys = column_values(sheet, series.yVal.numRef.f)
        assert xs == pytest.approx(curves[level][kind][x_key])
        assert ys == pytest.approx(curves[level][kind][y_key])
        assert chart.x_axis.title is not None
        assert chart.y_axis.title is not None

    legend = charts["Image ROC"].series[0].tx.v
    assert f"AUROC {metrics['image_auroc']:.1%}" in legend
    areas = sheet_records(sheet)[0]
    assert areas["Image AUROC"] == pytest.approx(metrics["image_auroc"])


def test_config_sheet_lists_parameters(report):
    records = sheet_records(report["Config"])
    values = {(record["Section"], record["Key"]): record["Value"] for record in records}

    assert values[("method", "meta_epochs")] == 2
    assert values[("data", "image_size")] == 96
    assert values[("backbone", "name")] == "mobilenet_v2"
    assert values[("run", "selection_rule")] == "test_auroc_sum"


def test_distribution_sheet_has_judgement(report, run_dir):
    judgement = read_json(run_dir / "distribution.json")
    sheet = report["Distribution"]
    record = sheet_records(sheet)[0]

    assert record["Mode in force"] == judgement["mode"]
    assert record["Points"] == judgement["points"]
    assert record["Radius"] == pytest.approx(judgement["radius"])
    assert record["Decided by"] == "FFT judgement of the mean training image"
    assert (run_dir / "spectrum.png").is_file()
    assert len(sheet._images) == 1


def test_two_runs_and_missing_masks(run_dir, no_mask_run, tmp_path):
    out = write_report([run_dir, no_mask_run], tmp_path / "two.xlsx", pictures=False)
    workbook = openpyxl.load_workbook(out)
    metrics = read_json(run_dir / "metrics.json")

    categories = sheet_records(workbook["Categories"])
    assert [record["Run"] for record in categories] == [run_dir.name, "no masks"]
    for key, label in METRIC_ROWS.items():
        assert categories[0][label] == pytest.approx(metrics[key], rel=1e-12)
        assert categories[1][label] == ("n/a" if key in PIXEL_KEYS else pytest.approx(metrics[key], rel=1e-12))

    summary = summary_values(workbook["Summary"])
    for key in PIXEL_KEYS:
        assert summary[METRIC_ROWS[key]][1] == "n/a"

    charts = {chart.title.tx.rich.p[0].r[0].t: chart for chart in workbook["Curves"]._charts}
    assert len(charts["Image ROC"].series) == 2
    assert len(charts["Pixel ROC"].series) == 1


def test_random_init_run_flagged_red(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "random")
    info = read_json(copy / "run.json")
    info["pretrained"] = False
    (copy / "run.json").write_text(json.dumps(info))
    workbook = openpyxl.load_workbook(write_report([copy], tmp_path / "random.xlsx", pictures=False))
    sheet = workbook["Summary"]

    row = next(row for row in range(2, sheet.max_row + 1) if sheet.cell(row=row, column=1).value == "Backbone weights")
    cell = sheet.cell(row=row, column=2)
    assert "RANDOM" in cell.value
    assert cell.font.color.rgb.endswith("C00000")


def test_missing_run_folder_named(tmp_path):
    missing = tmp_path / "no such run"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        write_report([missing], tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_unfinished_run_rejected(run_dir, tmp_path):
    copy = shutil.copytree(run_dir, tmp_path / "unfinished")
    (copy / "metrics.json").unlink()
    with pytest.raises(CheckpointError, match="no metrics.json"):
        write_report([copy], tmp_path / "x.xlsx")


def test_wrong_extension_rejected(run_dir, tmp_path):
    with pytest.raises(OutputError, match=r"\.xlsx"):
        write_report([run_dir], tmp_path / "report.xls")


def test_scores_csv(run_dir, tmp_path):
    threshold = read_json(run_dir / "metrics.json")["threshold"]
    out = write_scores_csv(run_dir, tmp_path / "scores.csv")
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores = read_scores(run_dir)

    assert len(rows) == len(scores)
    for row, source in zip(rows, scores):
        assert row["path"] == source["path"]
        assert float(row["score"]) == pytest.approx(float(source["score"]), abs=1e-9)
        assert row["decision"] == expected_decision(source["score"], threshold)
        assert row["true_label"] == ("defective" if source["label"] == "1" else "good")


def test_inspection_report(run_dir, tmp_path):
    scores = read_scores(run_dir)
    paths = [scores[0]["path"], scores[-1]["path"]]
    predictions = list(Predictor(run_dir, device="cpu").predict_paths(paths))
    heatmap_png = tmp_path / "heat.png"
    cv2.imwrite(str(heatmap_png), np.full((40, 60, 3), 200, dtype=np.uint8))
    rows = [
        {"path": predictions[0].path, "score": predictions[0].score, "heatmap": predictions[0].original_map},
        {"path": predictions[1].path, "score": predictions[1].score, "decision": "NG", "heatmap": heatmap_png},
    ]
    threshold = predictions[0].score - 1e-3

    out = write_inspection_report(rows, tmp_path / "inspect.xlsx", run_dir, threshold)
    workbook = openpyxl.load_workbook(out)
    records = sheet_records(workbook["Images"])

    assert workbook.sheetnames == ["Summary", "Images", "Config"]
    assert [record["Path"] for record in records] == paths
    assert records[0]["Decision"] == "NG"
    assert records[1]["Decision"] == "NG"
    assert records[0]["Score"] == pytest.approx(predictions[0].score)
    assert len(workbook["Images"]._images) == 4
    values = summary_values(workbook["Summary"])
    assert values["Inspected images"] == [2]
    assert values["NG"] == [2]
    assert values["Threshold"][0] == pytest.approx(threshold)


def test_inspection_without_run_or_threshold(run_dir, tmp_path):
    path = read_scores(run_dir)[0]["path"]
    out = write_inspection_report([{"path": path, "score": 0.4}], tmp_path / "plain.xlsx", None, None, pictures=False)
    workbook = openpyxl.load_workbook(out)

    assert workbook.sheetnames == ["Summary", "Images"]
    assert sheet_records(workbook["Images"])[0]["Decision"] == "n/a"
    assert summary_values(workbook["Summary"])["Threshold"] == ["n/a"]


def test_cli_report_writes_file(run_dir, tmp_path):
    out = tmp_path / "cli.xlsx"
    assert main(["report", "--run", str(run_dir), "--out", str(out), "--no-pictures"]) == 0
    workbook = openpyxl.load_workbook(out)
    assert len(sheet_records(workbook["Images"])) == len(read_scores(run_dir))
    assert workbook["Images"]._images == []


def test_cli_report_missing_run_fails(tmp_path, caplog):
    missing = tmp_path / "gone"
    out = tmp_path / "cli.xlsx"
    assert main(["report", "--run", str(missing), "--out", str(out)]) != 0
    assert not out.exists()
    assert str(missing) in caplog.text


def test_cli_csv_output(run_dir, tmp_path):
    out = tmp_path / "cli.csv"
    assert main(["report", "--run", str(run_dir), "--out", str(out), "--threshold", "0.5"]) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["decision"] for row in rows] == [expected_decision(row["score"], 0.5) for row in read_scores(run_dir)]
    assert {row["threshold"] for row in rows} == {"0.5"}
