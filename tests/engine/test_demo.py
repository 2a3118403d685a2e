"""Tests of the generated demo project."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from glass_engine.data import read_image, read_mask
from glass_engine.demo import DEFECT_TYPES, DemoSpec, create_demo_project, write_demo_dataset


def test_demo_project_contents(tmp_path: Path) -> None:
    with create_demo_project(tmp_path / "demo project") as project:
        assert project.categories() == ["surface"]
        assert project.count(split="train", label="good") == 64
        assert project.count(split="test", label="good") == 16
        assert project.count(label="defect") == 16
        assert sorted(project.defect_types()) == sorted(DEFECT_TYPES)
        assert project.count(label="defect", annotated=True) == 16

        for record in project.images(label="defect"):
            image = read_image(record.path)
            mask = read_mask(record.mask_path)
            assert image.shape == (256, 256, 3)
            assert mask.shape == (256, 256)
            assert mask.any()
            assert record.path.is_relative_to(project.folder / "demo_data")


def _ring_mean(gray: np.ndarray, mask: np.ndarray) -> float:
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask
    return float(gray[ring].mean())


def test_defect_masks_mark_changed_pixels(tmp_path: Path) -> None:
    root = write_demo_dataset(tmp_path / "d", DemoSpec(train_good=1, test_good=1, defects_per_type=(3, 3, 3), size=128))
    brighter = {"scratch": True, "stain": False, "crack": False}
    for defect_type in DEFECT_TYPES:
        for image_path in sorted((root / "surface" / "test" / defect_type).glob("*.png")):
            gray = read_image(image_path).mean(axis=2)
            mask = read_mask(root / "surface" / "ground_truth" / defect_type / f"{image_path.stem}_mask.png")
            inside, around = float(gray[mask].mean()), _ring_mean(gray, mask)
            if brighter[defect_type]:
                assert inside > around + 20, (image_path, inside, around)
            else:
                assert inside < around - 20, (image_path, inside, around)


@pytest.mark.parametrize("seed, same", [(0, True), (1, False)])
def test_demo_is_deterministic(tmp_path: Path, seed: int, same: bool) -> None:
    spec = DemoSpec(train_good=2, test_good=1, defects_per_type=(1, 1, 1), size=64)
    first = write_demo_dataset(tmp_path / "a", spec)
    second = write_demo_dataset(tmp_path / "b", DemoSpec(**{**spec.__dict__, "seed": seed}))
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    identical = all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    assert identical == same
