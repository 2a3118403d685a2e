"""Tests of the MVTec AD export: what it writes is read back by discover with the same labels and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from glass_engine.data import discover, read_mask
from glass_engine.demo import DemoSpec, create_demo_project
from glass_engine.errors import OutputError
from glass_engine.export import export_mvtec

SPEC = DemoSpec(train_good=6, test_good=3, defects_per_type=(2, 2, 2), size=64)


@pytest.fixture()
def project(tmp_path: Path):
    opened = create_demo_project(tmp_path / "my project", SPEC)
    yield opened
    opened.close()


def test_export_reimports_same_labels_and_masks(project, tmp_path: Path) -> None:
    painted = project.images(split="test", label="good")[0]
    project.relabel([painted.id], "defect", "dent")
    mask = np.zeros((64, 64), bool)
    mask[10:20, 30:50] = True
    project.set_mask(painted.id, mask)

    summary = export_mvtec(project, tmp_path / "export ü", "surface")
    index = discover(tmp_path / "export ü", "surface", "mvtec")

    records = project.images(category="surface")
    assert summary.images == len(records)
    assert summary.masks == project.count(label="defect", annotated=True)
    assert len(index.train) + len(index.test) == len(records)

    exported = {(s.split, s.defect_type, s.path.name): s for s in index.train + index.test}
    for record in records:
        expected_type = "good" if record.label == "good" else record.defect_type
        expected_split = "train" if record.split == "train" else "test"
        sample = exported[(expected_split, expected_type, record.path.name)]
        assert sample.label == (1 if record.label == "defect" else 0)
        assert sample.path.read_bytes() == record.path.read_bytes()
        if record.label == "defect":
            assert np.array_equal(read_mask(sample.mask_path), project.read_mask(record.id))


def test_export_selection_and_validation(project, tmp_path: Path) -> None:
    train = project.images(split="train")
    project.move([train[0].id], "validation")
    chosen = [train[0].id, train[1].id]

    summary = export_mvtec(project, tmp_path / "out", "surface", selection=chosen)

    assert summary.folders == {"test/good": 1, "train/good": 1}
    assert (tmp_path / "out" / "surface" / "test" / "good" / train[0].path.name).is_file()


def test_export_name_clash(project, tmp_path: Path) -> None:
    train_000 = next(r for r in project.images(split="train") if r.path.name == "000.png")
    test_000 = next(r for r in project.images(split="test", label="good") if r.path.name == "000.png")
    project.move([train_000.id], "validation")

    export_mvtec(project, tmp_path / "out", "surface", selection=[train_000.id, test_000.id])

    names = sorted(p.name for p in (tmp_path / "out" / "surface" / "test" / "good").iterdir())
    assert len(names) == 2
    assert "000.png" in names


def test_export_into_non_empty_folder(project, tmp_path: Path) -> None:
    target = tmp_path / "out" / "surface"
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        export_mvtec(project, tmp_path / "out", "surface")
    assert (target / "keep.txt").read_text() == "x"


def test_export_cancel_removes_partial_folder(project, tmp_path: Path) -> None:
    from glass_engine.errors import CancelledError

    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        export_mvtec(project, tmp_path / "out", "surface", cancel=cancel)
    assert not (tmp_path / "out" / "surface").exists()
