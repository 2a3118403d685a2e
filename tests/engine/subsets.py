"""Small copies of shared datasets for end-to-end tests (the shared folders are read-only)."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_mvtec_subset(source: Path, target: Path, train: int, good: int, per_type: int, types: list[str]) -> Path:
    """Copy the first images of each split (sorted by name) and their masks into an MVTec-layout folder."""
    category = source.name
    destination = target / category

    def copy(relative: str, count: int) -> list[Path]:
        files = sorted((source / relative).iterdir())[:count]
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copy(file, destination / relative / file.name)
        return files

    copy("train/good", train)
    copy("test/good", good)
    for defect_type in types:
        for image in copy(f"test/{defect_type}", per_type):
            mask = source / "ground_truth" / defect_type / f"{image.stem}_mask.png"
            (destination / "ground_truth" / defect_type).mkdir(parents=True, exist_ok=True)
            shutil.copy(mask, destination / "ground_truth" / defect_type / mask.name)
    return target
