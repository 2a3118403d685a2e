"""Export a project category as an MVTec AD folder that `glass_engine.data.discover` reads back.

Layout written under `<out_root>/<category>/`:

    train/good/<name>                      good images of the train split
    test/good/<name>                       good images of the test and validation splits
    test/<defect type>/<name>              defect images (MVTec AD has no validation split, so it joins test)
    ground_truth/<defect type>/<stem>_mask.png   8-bit masks, 0 or 255, at the size of their image

Images are copied byte for byte. Two images that would get the same file name in one folder are distinguished
by their project id (`<stem>_<id><suffix>`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from glass_engine.errors import CancelledError, DatasetError, OutputError
from glass_engine.fileio import atomic_write, atomic_write_bytes
from glass_engine.store import DEFAULT_DEFECT_TYPE, ImageRecord, Project

logger = logging.getLogger(__name__)


@dataclass
class ExportSummary:
    """Result of an export: the category folder, file counts per folder, and the files left out with reasons."""

    root: Path
    images: int = 0
    masks: int = 0
    folders: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def export_mvtec(
    project: Project,
    out_root: Path,
    category: str,
    selection: Iterable[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ExportSummary:
    """Write the images of `category` (or only the image ids in `selection`) as an MVTec AD folder.

    The target `<out_root>/<category>` must not exist or must be empty. Missing images are left out with a
    warning, and so is the mask of a defect image that has none. On failure or cancel, the partly written
    folder is removed again.
    """
    destination = Path(out_root) / category
    existed = destination.exists()
    if existed and (not destination.is_dir() or any(destination.iterdir())):
        raise OutputError(f"Export folder {destination} already exists and is not empty. Choose another folder.")

    records = project.images(category=category, ids=selection, order="name")
    if not records:
        raise DatasetError(f"Category {category!r} of project {project.folder} has no images to export.")

    summary = ExportSummary(root=destination)
    try:
        _write_all(project, records, destination, summary, progress, cancel)
    except BaseException:
        shutil.rmtree(destination, ignore_errors=True)
        if existed:
            destination.mkdir(parents=True, exist_ok=True)
        raise
    logger.info(
        "Exported %d images and %d masks of %s to %s (%d warnings)",
        summary.images, summary.masks, category, destination, len(summary.warnings),
    )
    return summary


def _write_all(
    project: Project,
    records: list[ImageRecord],
    destination: Path,
    summary: ExportSummary,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> None:
    used_names: dict[str, set[str]] = {}
    for done, record in enumerate(records, start=1):
        if cancel is not None and cancel():
            raise CancelledError(f"Export to {destination} cancelled; the partial folder was removed.")

        if not record.path.is_file():
            summary.warnings.append(f"{record.path}: image file is missing, left out")
        else:
            _export_one(project, record, destination, used_names, summary)

        if progress is not None:
            progress(done, len(records))


def _export_one(
    project: Project,
    record: ImageRecord,
    destination: Path,
    used_names: dict[str, set[str]],
    summary: ExportSummary,
) -> None:
    defect_type = None if record.label == "good" else (record.defect_type or DEFAULT_DEFECT_TYPE)
    if defect_type is None:
        folder = "train/good" if record.split == "train" else "test/good"
    else:
        folder = f"test/{defect_type}"

    name = _unique_name(record, used_names.setdefault(folder, set()))
    target = destination / folder / name
    atomic_write(target, lambda tmp: shutil.copyfile(record.path, tmp))
    summary.images += 1
    summary.folders[folder] = summary.folders.get(folder, 0) + 1

    if defect_type is None:
        return
    if record.mask_path is None:
        summary.warnings.append(f"{record.path}: defect image without a mask, exported without ground truth")
        return
    mask = project.read_mask(record.id)
    mask = _fit_mask(mask, record)
    encoded_ok, encoded = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not encoded_ok:
        raise OutputError(f"Cannot encode the mask of {record.path} as PNG.")
    atomic_write_bytes(destination / "ground_truth" / defect_type / f"{Path(name).stem}_mask.png", encoded.tobytes())
    summary.masks += 1


def _unique_name(record: ImageRecord, used: set[str]) -> str:
    name = record.path.name
    if name.lower() in used:
        name = f"{record.path.stem}_{record.id}{record.path.suffix}"
    used.add(name.lower())
    return name


def _fit_mask(mask: np.ndarray, record: ImageRecord) -> np.ndarray:
    """Return the mask at the image's size; the store rejects mismatched masks, but dataset masks may differ."""
    if record.width is None or record.height is None or mask.shape == (record.height, record.width):
        return mask
    logger.warning(
        "Mask %s is %dx%d px but image %s is %dx%d px; resizing it for the export",
        record.mask_path, mask.shape[1], mask.shape[0], record.path, record.width, record.height,
    )
    resized = cv2.resize(mask.astype(np.uint8), (record.width, record.height), interpolation=cv2.INTER_NEAREST)
    return resized > 0
