"""The command line's contract: outputs of a run, and one-line errors with a non-zero exit on bad input."""

import json
import logging
import os
import shutil

import pytest

from glass_engine.cli import EXIT_BAD_INPUT, main
from tests.conftest import mobilenet_weights, shared_dataset
from tests.engine.subsets import copy_mvtec_subset

TINY = ["--preset", "mobilenet", "--image-size", "72", "--epochs", "1", "--limit", "4", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def tile_root(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    return copy_mvtec_subset(source, tmp_path_factory.mktemp("cli-data"), train=6, good=3, per_type=2, types=["crack"])


def train_args(root, out, *extra):
    return ["train", "--data", str(root), "--category", "magnetic_tile", *TINY, "--weights", str(mobilenet_weights()), "--out", str(out), *extra]


def error_lines(caplog):
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_train_cli_writes_contract_files(tile_root, tmp_path):
    out = tmp_path / "run"
    assert main(train_args(tile_root, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc", "image_ap", "pixel_auroc", "pixel_ap", "pixel_aupro", "pixel_pro_official", "threshold", "selection_rule", "best_epoch"):
        assert key in metrics
    header = (out / "scores.csv").read_text().splitlines()[0]
    assert header.startswith("path,label,defect_type,score")
    assert (out / "config.yaml").is_file()
    assert json.loads((out / "distribution.json").read_text())["mode"] in ("manifold", "hypersphere")

    predictions = tmp_path / "predictions"
    image = next((tile_root / "magnetic_tile" / "test" / "crack").iterdir())
    assert main(["predict", "--run", str(out), str(image), "--out", str(predictions), "--device", "cpu"]) == 0
    rows = (predictions / "scores.csv").read_text().splitlines()
    assert len(rows) == 2
    assert len(list((predictions / "heatmaps").glob("*.png"))) == 1


def test_empty_texture_folder_is_rejected(tile_root, tmp_path, caplog):
    empty = tmp_path / "textures"
    empty.mkdir()
    out = tmp_path / "run"
    assert main(train_args(tile_root, out, "--textures", str(empty))) == EXIT_BAD_INPUT
    assert any(str(empty) in line for line in error_lines(caplog))
    assert json.loads((out / "run.json").read_text())["status"] == "failed"

    # Nothing was trained, so the same folder takes the corrected settings.
    assert main(train_args(tile_root, out)) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_missing_texture_folder_is_rejected(tile_root, tmp_path, caplog):
    missing = tmp_path / "no-such-textures"
    assert main(train_args(tile_root, tmp_path / "run", "--textures", str(missing))) == EXIT_BAD_INPUT
    assert any(str(missing) in line for line in error_lines(caplog))


def test_missing_run_folder_for_test_and_predict(tmp_path, caplog):
    missing = tmp_path / "nothing-here"
    assert main(["test", "--run", str(missing)]) == EXIT_BAD_INPUT
    assert main(["predict", "--run", str(missing), str(tmp_path), "--out", str(tmp_path / "p")]) == EXIT_BAD_INPUT
    lines = error_lines(caplog)
    assert len(lines) == 2
    assert all(str(missing) in line for line in lines)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_output_folder(tile_root, tmp_path, caplog):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(train_args(tile_root, locked / "run")) == EXIT_BAD_INPUT
    finally:
        locked.chmod(0o700)
    assert any("not writable" in line or "Cannot write" in line for line in error_lines(caplog))


def test_output_path_that_is_a_file(tile_root, tmp_path, caplog):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    assert main(train_args(tile_root, blocker / "run")) == EXIT_BAD_INPUT
    assert any(str(blocker) in line for line in error_lines(caplog))


def test_wrong_architecture_weights(tile_root, tmp_path, caplog):
    import torch
    import torchvision

    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    args = train_args(tile_root, tmp_path / "run")
    args[args.index("--weights") + 1] = str(wrong)
    assert main(args) == EXIT_BAD_INPUT
    assert any(str(wrong) in line for line in error_lines(caplog))


def test_no_ground_truth_and_one_class_test_set(tile_root, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(tile_root, data)
    shutil.rmtree(data / "magnetic_tile" / "ground_truth")
    out = tmp_path / "no-masks"
    assert main(train_args(data, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pixel_auroc"] is None
    assert metrics["pixel_aupro"] is None
    assert metrics["image_auroc"] is not None

    shutil.rmtree(data / "magnetic_tile" / "test" / "crack")
    out = tmp_path / "one-class"
    assert main(train_args(data, out, "--selection-rule", "last")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["image_auroc"] is None
    assert metrics["threshold"] is None
    assert any("undefined" in record.getMessage() for record in caplog.records if record.levelno == logging.WARNING)


def test_image_size_not_multiple_of_32(tile_root, tmp_path):
    out = tmp_path / "odd"
    args = train_args(tile_root, out)
    args[args.index("--image-size") + 1] = "100"
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["image_auroc"] is not None


def test_analyze_writes_distribution_table(tile_root, tmp_path):
    import openpyxl

    out = tmp_path / "distribution.xlsx"
    assert main(["analyze", "--data", str(tile_root), "--image-size", "96", "--out", str(out)]) == 0
    sheet = openpyxl.load_workbook(out).active
    rows = [row for row in sheet.iter_rows(min_row=2, values_only=True) if row[0]]
    assert [row[0] for row in rows] == ["magnetic_tile"]
    assert rows[0][1] in ("manifold", "hypersphere")
    assert len(sheet._images) == 1
