"""Excel and CSV reports of trained runs and of inspection results.

`write_report` puts one or more run folders into one .xlsx workbook with these sheets:

- Summary: one column per run with the dataset, backbone and weights, distribution mode, selection rule,
  metrics, the threshold in force and the OK/NG counts at that threshold.
- Categories: one row per run (a run trains one category) with its metrics.
- Images: one row per test image with its score, the OK/NG decision and, optionally, thumbnails of the
  image and of its anomaly map laid over it.
- Curves: the ROC, precision-recall and PRO points of curves.json with native Excel scatter charts of them.
- Distribution: the manifold / hypersphere judgement and the spectrum figure.
- Config: every parameter of config.yaml.

A score at or above the threshold is a defect decision (NG), as in glass_engine.evaluation.
`write_scores_csv` writes the per-image table of one run as CSV. `write_inspection_report` writes the
results of the Inspect view in the same sheet format. `register_cli` adds `glass-engine report`.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openpyxl
import yaml
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.chart import Reference, ScatterChart, Series
from openpyxl.drawing.image import Image as SheetImage
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from glass_engine import __version__
from glass_engine.analysis import DENSITY_THRESHOLD, MAGNITUDE_THRESHOLD, POINTS_THRESHOLD, RADIUS_THRESHOLD
from glass_engine.config import GlassConfig
from glass_engine.data import Preprocessor, read_image
from glass_engine.errors import CheckpointError, ConfigError, DatasetError, OutputError
from glass_engine.evaluation import PRO_FPR_LIMIT
from glass_engine.fileio import atomic_write, atomic_write_text
from glass_engine.runs import RunFolder

logger = logging.getLogger(__name__)

DEFAULT_MAX_IMAGES = 500
PERCENT_FORMAT = "0.0%"
SCORE_FORMAT = "0.0000"
NOT_AVAILABLE = "n/a"

"""Decimals of the scores in scores.csv (RunFolder.write_scores). Decisions compare at this precision."""
THUMBNAIL_SIDE = 96
"""Maximum side length in pixels of the image and heatmap thumbnails on the Images sheet."""
SPECTRUM_HEIGHT = 80
"""Height in pixels of the spectrum figure on the Distribution sheet."""
HEATMAP_OPACITY = 0.5
POINTS_PER_PIXEL = 0.75
"""Row heights are in points, and a pixel is 0.75 points at 96 dpi."""

SELECTION_RULE_MEANINGS = {
    "test_auroc_sum": (
        "The paper's rule: the epoch with the best image AUROC + pixel AUROC on the test set. "
        "It selects with the test labels, so the test metrics are optimistic."
    ),
    "validation": (
        "The epoch with the best score on held-out good training images and synthetic defects made from "
        "them. The test set plays no part in the choice."
    ),
    "last": "The final epoch, without any selection.",
}

METRICS = (
    ("image_auroc", "Image AUROC"),
    ("image_ap", "Image AP"),
    ("pixel_auroc", "Pixel AUROC"),
    ("pixel_ap", "Pixel AP"),
    ("pixel_aupro", f"Pixel AUPRO (FPR up to {PRO_FPR_LIMIT:.0%}, exact)"),
    ("pixel_pro_official", "PRO (official code, 200 thresholds)"),
)

HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDE3EA")
WARNING_FONT = Font(bold=True, color="C00000")
WARNING_FILL = PatternFill("solid", fgColor="FFD7D7")
MUTED_FONT = Font(color="808080")
WRAP = Alignment(wrap_text=True, vertical="top")
TOP = Alignment(vertical="top")


# --------------------------------------------------------------------------------------------------------
# Run data


@dataclass
class RunData:
    """Everything a report needs from one run folder, read once."""

    folder: RunFolder
    label: str
    """Short name of the run in sheet cells and chart legends: the folder name, made unique."""
    info: dict[str, Any]
    metrics: dict[str, Any]
    config: GlassConfig
    config_values: dict[str, Any]
    """config.yaml as written, for the Config sheet."""
    scores: list[dict[str, Any]]
    curves: dict[str, Any]
    distribution: dict[str, Any]
    threshold: float | None
    threshold_source: str


def load_run(
    run_dir: Path, threshold: float | None = None, label: str | None = None, need_results: bool = True
) -> RunData:
    """Read a run folder for a report. A `threshold`, when given, replaces the run's own threshold.

    Raises CheckpointError naming the folder when it does not exist or lacks config.yaml, or, with
    `need_results`, lacks metrics.json or scores.csv because the run did not finish its evaluation.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise CheckpointError(f"Run folder {root} not found. Give a folder written by `glass-engine train --out`.")
    folder = RunFolder(root)
    config = folder.read_config()

    if need_results and not (folder.metrics_path.is_file() and folder.scores_path.is_file()):
        raise CheckpointError(
            f"Run folder {root} has no metrics.json or scores.csv, so the run did not finish its evaluation. "
            f"Finish the training, or evaluate it with `glass-engine test --run {root}`."
        )
    info = folder.read_info() if folder.info_path.is_file() else {}
    metrics = folder.read_metrics() if folder.metrics_path.is_file() else {}
    scores = folder.read_scores() if folder.scores_path.is_file() else []
    value, source = _threshold_in_force(threshold, info, metrics)

    return RunData(
        folder=folder,
        label=label or root.name,
        info=info,
        metrics=metrics,
        config=config,
        config_values=yaml.safe_load(folder.config_path.read_text(encoding="utf-8")) or {},
        scores=scores,
        curves=folder.read_curves(),
        distribution=folder.read_distribution(),
        threshold=value,
        threshold_source=source,
    )


def _threshold_in_force(given: float | None, info: dict[str, Any], metrics: dict[str, Any]) -> tuple[float | None, str]:
    """Return the threshold that decides OK/NG and a sentence saying where it comes from."""
    if given is not None:
        return float(given), "given for this report"
    if info.get("user_threshold") is not None:
        return float(info["user_threshold"]), "set by the operator"
    if metrics.get("threshold") is not None:
        f1 = metrics.get("threshold_f1")
        detail = f" (F1 = {f1:.3f})" if f1 is not None else ""
        return float(metrics["threshold"]), f"F1-optimal on the test set{detail}"
    return None, "none: the test set lacks good or defective images, so there is no F1-optimal threshold"


def decide(score: float, threshold: float | None) -> str | None:
    """Return "NG" when `score >= threshold`, "OK" below it, and None without a threshold.

    scores.csv keeps full float precision, so the F1-optimal threshold (the exact score of one test image)
    compares equal to that image's stored score and the image stays NG.
    """
    if threshold is None:
        return None
    return "NG" if float(score) >= float(threshold) else "OK"


def _unique_labels(roots: Sequence[Path]) -> list[str]:
    names = [root.name or str(root) for root in roots]
    labels = [f"{root.parent.name}/{name}" if names.count(name) > 1 else name for root, name in zip(roots, names)]
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


# --------------------------------------------------------------------------------------------------------
# Public API


def write_report(
    run_dirs: list[Path],
    out: Path,
    threshold: float | None = None,
    pictures: bool = True,
    max_images: int = DEFAULT_MAX_IMAGES,
) -> Path:
    """Write an .xlsx report of one or more runs atomically and return its path.

    `threshold` replaces every run's own threshold (the operator's, else the F1-optimal one).
    `pictures=False` leaves out the per-image thumbnails. The Images sheet lists at most `max_images`
    test images per run, the first ones in scores.csv order, and adds a note when it cuts the list.
    Raises CheckpointError naming a missing or unfinished run folder, OutputError for an unwritable `out`.
    """
    out = _checked_xlsx_path(out)
    _check_max_images(max_images)
    if not run_dirs:
        raise CheckpointError("No run folder given. Pass at least one folder written by `glass-engine train --out`.")
    roots = [Path(run_dir) for run_dir in run_dirs]
    runs = [load_run(root, threshold, label) for root, label in zip(roots, _unique_labels(roots))]

    workbook = openpyxl.Workbook()
    summary = workbook.active
    summary.title = "Summary"
    categories, images, curves, distribution, config = (
        workbook.create_sheet(name) for name in ("Categories", "Images", "Curves", "Distribution", "Config")
    )

    rows, notes, listed = _run_image_rows(runs, max_images, pictures)
    _write_images_sheet(images, rows, pictures, notes)
    fields = [_run_summary_fields(run, listed[run.label]) for run in runs]
    _write_summary_sheet(summary, [run.label for run in runs], fields, [_is_random_init(run) for run in runs])
    _write_categories_sheet(categories, runs)
    _write_curves_sheet(curves, runs)
    _write_distribution_sheet(distribution, runs)
    _write_config_sheet(config, runs)

    _save_workbook(workbook, out)
    logger.info("Wrote the report of %d run(s) with %d image rows to %s", len(runs), len(rows), out)
    return out


def write_scores_csv(run_dir: Path, out: Path, threshold: float | None = None) -> Path:
    """Write one row per test image of a run as CSV (path, true label, defect type, score, threshold, decision).

    `threshold` replaces the run's own threshold. Without any threshold, decision and correctness are
    empty. Returns `out`.
    """
    run = load_run(run_dir, threshold)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "true_label", "defect_type", "score", "threshold", "decision", "correct"])
    for entry in run.scores:
        decision = decide(entry["score"], run.threshold)
        writer.writerow(
            [
                entry["path"],
                _label_text(entry["label"]),
                entry["defect_type"],
                repr(float(entry["score"])),
                "" if run.threshold is None else repr(float(run.threshold)),
                decision or "",
                _correct_text(entry["label"], decision) or "",
            ]
        )
    out = Path(out)
    atomic_write_text(out, buffer.getvalue())
    logger.info("Wrote %d scores of run %s to %s", len(run.scores), run.folder.root, out)
    return out


def write_inspection_report(
    rows: list[dict[str, Any]],
    out: Path,
    run_dir: Path | None = None,
    threshold: float | None = None,
    pictures: bool = True,
) -> Path:
    """Write the results of an inspection in the report's format: Summary, Images and, with a run, Config.

    Each row needs `path` and `score`. A missing `decision` ("OK" or "NG") is computed from the score and
    the threshold. The optional `heatmap` is a PNG file, an RGB uint8 array shown as it is, or a 2-D float
    anomaly map in [0, 1] in the image's geometry (`Prediction.original_map`), laid over the image. Optional `label` (0/1 or "good"/"defective") and
    `defect_type` fill the label columns. The threshold is `threshold`, else the run's threshold in force.
    """
    out = _checked_xlsx_path(out)
    run = load_run(run_dir, threshold, need_results=False) if run_dir is not None else None
    if run is None:
        used_threshold, source = (None, "none") if threshold is None else (float(threshold), "given for this report")
    else:
        used_threshold, source = run.threshold, run.threshold_source

    image_rows = [_inspection_row(row, number, used_threshold, run) for number, row in enumerate(rows, start=1)]
    workbook = openpyxl.Workbook()
    summary = workbook.active
    summary.title = "Summary"
    images = workbook.create_sheet("Images")
    _write_images_sheet(images, image_rows, pictures, [])

    fields = _inspection_fields(image_rows, used_threshold, source)
    if run is not None:
        fields += _run_summary_fields(run, with_results=False)
        _write_config_sheet(workbook.create_sheet("Config"), [run])
    label = run.label if run is not None else "Inspection"
    _write_summary_sheet(summary, [label], [fields], [run is not None and _is_random_init(run)])

    _save_workbook(workbook, out)
    logger.info("Wrote the inspection report of %d images to %s", len(image_rows), out)
    return out


def _checked_xlsx_path(out: Path) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".xlsx":
        raise OutputError(f"Report file {out} must end in .xlsx, which Excel and LibreOffice open. Rename it.")
    return out


def _check_max_images(max_images: int) -> None:
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 0:
        raise ConfigError(f"max_images is {max_images!r}; give a whole number of 0 or more.")


def _save_workbook(workbook: openpyxl.Workbook, out: Path) -> None:
    def save(tmp_path: Path) -> None:
        try:
            workbook.save(tmp_path)
        except OSError as exc:
            raise OutputError(f"Cannot write report {out}: {exc}. Choose a writable location.") from exc

    atomic_write(out, save)


# --------------------------------------------------------------------------------------------------------
# Cell helpers


def _put(cell: Any, value: Any, number_format: str | None = None) -> Any:
    """Write a value to a cell and return the cell.

    None becomes "n/a". Text loses control characters, which Excel rejects, and never becomes a formula.
    """
    if value is None:
        cell.value = NOT_AVAILABLE
        cell.font = MUTED_FONT
        cell.alignment = Alignment(horizontal="right", vertical="top")
        return cell
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        cell.value = NOT_AVAILABLE
        return cell
    if isinstance(value, str):
        cell.value = ILLEGAL_CHARACTERS_RE.sub("?", value)
        # openpyxl stores any text that starts with "=" as a formula, but a path or label must stay text.
        cell.data_type = "s"
    else:
        cell.value = value
        if number_format:
            cell.number_format = number_format
    if not cell.alignment.wrap_text:
        cell.alignment = TOP
    return cell


def _write_header(sheet: Any, columns: Sequence[tuple[str, float]], row: int = 1) -> None:
    for column, (title, width) in enumerate(columns, start=1):
        cell = sheet.cell(row=row, column=column, value=title)
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(vertical="center", wrap_text=True)
        sheet.column_dimensions[get_column_letter(column)].width = width


def _pixels_to_width(pixels: int) -> int:
    """Convert a width in pixels to a column width in characters, with one character to spare.

    Excel draws a column of width w as about 7w + 5 pixels in its default font (Calibri 11).
    """
    return math.ceil((pixels - 5) / 7) + 1


def _label_text(label: int | None) -> str:
    if label is None:
        return ""
    return "defective" if int(label) == 1 else "good"


def _correct_text(label: int | None, decision: str | None) -> str | None:
    """Return "yes" or "no", or "" when the true label is unknown, or None when there is no decision."""
    if label is None:
        return ""
    if decision is None:
        return None
    return "yes" if (decision == "NG") == (int(label) == 1) else "no"


def _format_time(text: Any) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return str(text)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _is_random_init(run: RunData) -> bool:
    pretrained = run.info.get("pretrained", run.metrics.get("pretrained_backbone"))
    return pretrained is False or bool(run.config.backbone.random_init)


# --------------------------------------------------------------------------------------------------------
# Summary sheet


@dataclass
class SummaryField:
    """One line of the Summary sheet for one run."""

    label: str
    value: Any
    number_format: str | None = None
    warning: bool = False
    wrap: bool = False


def _run_summary_fields(run: RunData, listed: int | None = None, with_results: bool = True) -> list[SummaryField]:
    """Return the Summary lines of a run.

    `listed` is the number of its rows on the Images sheet, if known. Without `with_results`, the lines
    of the threshold and of the test-set counts are left out, as an inspection report has its own.
    """
    info, metrics, config = run.info, run.metrics, run.config
    fields = [
        SummaryField("Run folder", str(run.folder.root), wrap=True),
        SummaryField("Status", info.get("status")),
        SummaryField("Dataset root", info.get("dataset_root"), wrap=True),
        SummaryField("Category", info.get("category")),
        SummaryField("Dataset layout", info.get("layout")),
        SummaryField("Backbone", f"{config.backbone.name} (layers {', '.join(config.backbone.layers)})", wrap=True),
        _weights_field(run),
        SummaryField("Weights source", info.get("weights_source"), wrap=True),
        SummaryField("Network input", f"{config.data.image_size} px, {config.data.resize_policy}"),
        SummaryField("Distribution mode", info.get("distribution_mode", metrics.get("distribution_mode"))),
        SummaryField("Distribution decided by", _distribution_source(run.distribution.get("source"))),
    ]
    rule = metrics.get("selection_rule") or info.get("selection_rule") or config.run.selection_rule
    fields += [
        SummaryField("Checkpoint selection rule", rule),
        SummaryField("Selection rule meaning", SELECTION_RULE_MEANINGS.get(rule, "unknown rule"), wrap=True),
        SummaryField("Best epoch (first = 1)", _one_based(metrics.get("best_epoch", info.get("best_epoch")))),
        SummaryField("Epochs configured", config.method.meta_epochs),
        SummaryField("Training images", info.get("train_images")),
        SummaryField("Validation images", info.get("validation_images")),
    ]
    fields += [SummaryField(label, metrics.get(key), PERCENT_FORMAT) for key, label in METRICS]
    if with_results:
        fields += [
            SummaryField("Threshold", run.threshold, SCORE_FORMAT),
            SummaryField("Threshold source", run.threshold_source, wrap=True),
        ]
        fields += _count_fields(run)
    if listed is not None:
        fields.append(_listed_field(run, listed))
    fields += [
        SummaryField("Started", _format_time(info.get("started"))),
        SummaryField("Finished", _format_time(info.get("finished"))),
    ]
    return fields


def _weights_field(run: RunData) -> SummaryField:
    if _is_random_init(run):
        text = "RANDOM INIT: the backbone is not pretrained, so the results are meaningless"
        return SummaryField("Backbone weights", text, warning=True, wrap=True)
    pretrained = run.info.get("pretrained", run.metrics.get("pretrained_backbone"))
    return SummaryField("Backbone weights", "pretrained" if pretrained else "unknown")


def _distribution_source(source: Any) -> str | None:
    if not source:
        return None
    if source == "fft":
        return "FFT judgement of the mean training image"
    if source == "forced":
        return "set in the configuration"
    if str(source).startswith("table:"):
        return f"distribution table {str(source)[len('table:'):]}"
    return str(source)


def _one_based(epoch: Any) -> int | None:
    return None if epoch is None else int(epoch) + 1


def _count_fields(run: RunData) -> list[SummaryField]:
    labels = [entry["label"] for entry in run.scores]
    decisions = [decide(entry["score"], run.threshold) for entry in run.scores]
    has_threshold = run.threshold is not None

    def counted(condition: Callable[[int, str | None], bool]) -> int | None:
        if not has_threshold:
            return None
        return sum(1 for label, decision in zip(labels, decisions) if condition(label, decision))

    return [
        SummaryField("Test images", len(labels)),
        SummaryField("Good test images", labels.count(0)),
        SummaryField("Defective test images", labels.count(1)),
        SummaryField("NG at the threshold", counted(lambda label, decision: decision == "NG")),
        SummaryField("OK at the threshold", counted(lambda label, decision: decision == "OK")),
        SummaryField("Correct decisions", counted(lambda label, decision: (decision == "NG") == (label == 1))),
        SummaryField("False alarms (good judged NG)", counted(lambda label, decision: label == 0 and decision == "NG")),
        SummaryField(
            "Missed defects (defective judged OK)", counted(lambda label, decision: label == 1 and decision == "OK")
        ),
    ]


def _listed_field(run: RunData, listed: int) -> SummaryField:
    total = len(run.scores)
    text = f"{listed} of {total}" + ("" if listed == total else " (the first ones; raise max_images for more)")
    return SummaryField("Rows on the Images sheet", text, warning=listed < total)


def _inspection_fields(rows: list["ImageRow"], threshold: float | None, source: str) -> list[SummaryField]:
    decisions = [row.decision for row in rows]
    return [
        SummaryField("Inspected images", len(rows)),
        SummaryField("Threshold", threshold, SCORE_FORMAT),
        SummaryField("Threshold source", source, wrap=True),
        SummaryField("NG", decisions.count("NG") if threshold is not None or any(decisions) else None),
        SummaryField("OK", decisions.count("OK") if threshold is not None or any(decisions) else None),
    ]


def _write_summary_sheet(
    sheet: Any, labels: list[str], fields_per_run: list[list[SummaryField]], flagged: list[bool]
) -> None:
    """Write one column per run: field names in column A, the runs' values beside them."""
    value_width = 46
    _write_header(sheet, [("Field", 38)] + [(label, value_width) for label in labels])
    for column, is_flagged in enumerate(flagged, start=2):
        if is_flagged:
            header = sheet.cell(row=1, column=column)
            header.font = WARNING_FONT
            header.fill = WARNING_FILL

    for row, field_ in enumerate(fields_per_run[0], start=2):
        _put(sheet.cell(row=row, column=1), field_.label).font = HEADER_FONT
    for column, fields in enumerate(fields_per_run, start=2):
        for row, field_ in enumerate(fields, start=2):
            cell = sheet.cell(row=row, column=column)
            if field_.wrap:
                cell.alignment = WRAP
            _put(cell, field_.value, field_.number_format)
            if field_.warning:
                cell.font = WARNING_FONT
                cell.fill = WARNING_FILL
            if field_.wrap and isinstance(field_.value, str):
                lines = math.ceil(len(field_.value) / (value_width - 4))
                current = sheet.row_dimensions[row].height or 15
                sheet.row_dimensions[row].height = max(current, 15 * lines)

    footer = len(fields_per_run[0]) + 3
    written = _format_time(datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _put(sheet.cell(row=footer, column=1), f"Written {written} by glass-engine {__version__}").font = MUTED_FONT
    sheet.freeze_panes = "B2"


# --------------------------------------------------------------------------------------------------------
# Categories sheet


CATEGORY_COLUMNS = (
    ("Run", 22),
    ("Category", 18),
    ("Dataset root", 40),
    ("Backbone", 18),
    ("Pretrained", 11),
    ("Selection rule", 15),
    ("Best epoch", 8),
) + tuple((label, 13) for _, label in METRICS) + (("Threshold", 10), ("Test images", 8))


def _write_categories_sheet(sheet: Any, runs: list[RunData]) -> None:
    _write_header(sheet, CATEGORY_COLUMNS)
    sheet.row_dimensions[1].height = 45
    for row, run in enumerate(runs, start=2):
        random_init = _is_random_init(run)
        values: list[tuple[Any, str | None]] = [
            (run.label, None),
            (run.info.get("category"), None),
            (run.info.get("dataset_root"), None),
            (run.config.backbone.name, None),
            ("NO (random init)" if random_init else "yes", None),
            (run.metrics.get("selection_rule") or run.config.run.selection_rule, None),
            (_one_based(run.metrics.get("best_epoch")), None),
        ]
        values += [(run.metrics.get(key), PERCENT_FORMAT) for key, _ in METRICS]
        values += [(run.threshold, SCORE_FORMAT), (len(run.scores), None)]
        for column, (value, number_format) in enumerate(values, start=1):
            _put(sheet.cell(row=row, column=column), value, number_format)
        if random_init:
            pretrained = sheet.cell(row=row, column=5)
            pretrained.font = WARNING_FONT
            pretrained.fill = WARNING_FILL
    sheet.freeze_panes = "B2"


# --------------------------------------------------------------------------------------------------------
# Images sheet


@dataclass
class ImageRow:
    """One line of the Images sheet."""

    run: str
    path: str
    score: float
    decision: str | None
    label: int | None = None
    defect_type: str = ""
    render: Callable[[], tuple[np.ndarray | None, np.ndarray | None]] | None = field(default=None, repr=False)
    """Function that returns the RGB thumbnails of the image and of its heatmap overlay, each None if unavailable."""


IMAGE_COLUMNS = (
    ("Run", 18),
    ("Path", 48),
    ("True label", 10),
    ("Defect type", 14),
    ("Score", 9),
    ("Decision", 9),
    ("Correct", 8),
)
PICTURE_COLUMNS = (("Image", _pixels_to_width(THUMBNAIL_SIDE)), ("Heatmap overlay", _pixels_to_width(THUMBNAIL_SIDE)))


def _run_image_rows(
    runs: list[RunData], max_images: int, pictures: bool
) -> tuple[list[ImageRow], list[str], dict[str, int]]:
    """Return the image rows of all runs, the notes about cut lists, and the listed count per run label."""
    rows: list[ImageRow] = []
    notes: list[str] = []
    listed: dict[str, int] = {}
    for run in runs:
        renderer = _RunPictures(run) if pictures else None
        entries = run.scores[:max_images]
        for entry in entries:
            render = partial(renderer.render, entry["path"], entry.get("map_index")) if renderer else None
            rows.append(
                ImageRow(
                    run=run.label,
                    path=entry["path"],
                    score=entry["score"],
                    decision=decide(entry["score"], run.threshold),
                    label=entry["label"],
                    defect_type=entry["defect_type"],
                    render=render,
                )
            )
        listed[run.label] = len(entries)
        if len(entries) < len(run.scores):
            notes.append(
                f"Run {run.label}: showing the first {len(entries)} of {len(run.scores)} test images. "
                f"Raise max_images, or write all scores with `glass-engine report --out FILE.csv`."
            )
            logger.warning("Report lists %d of %d test images of run %s", len(entries), len(run.scores), run.label)
    return rows, notes, listed


def _write_images_sheet(sheet: Any, rows: list[ImageRow], pictures: bool, notes: list[str]) -> None:
    columns = IMAGE_COLUMNS + (PICTURE_COLUMNS if pictures else ())
    _write_header(sheet, columns)
    longest_path = max((len(row.path) for row in rows), default=0)
    sheet.column_dimensions["B"].width = min(80, max(20, longest_path + 2))

    missing = 0
    for number, row in enumerate(rows, start=2):
        _write_image_cells(sheet, number, row)
        if pictures and row.render is not None:
            missing += _embed_row_pictures(sheet, number, row)
    if missing:
        logger.warning("%d image files of the report were not found or unreadable; their cells show a note.", missing)

    note_column = len(columns) + 2
    if notes:
        sheet.column_dimensions[get_column_letter(note_column)].width = 90
    for offset, note in enumerate(notes):
        _put(sheet.cell(row=1 + offset, column=note_column), note).font = WARNING_FONT
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(IMAGE_COLUMNS))}{len(rows) + 1}"
    sheet.freeze_panes = "A2"


def _write_image_cells(sheet: Any, number: int, row: ImageRow) -> None:
    _put(sheet.cell(row=number, column=1), row.run)
    path_cell = _put(sheet.cell(row=number, column=2), row.path)
    path = Path(row.path)
    if path.is_absolute() and path.is_file():
        path_cell.hyperlink = path.as_uri()
        path_cell.style = "Hyperlink"
        path_cell.alignment = TOP
    _put(sheet.cell(row=number, column=3), _label_text(row.label))
    _put(sheet.cell(row=number, column=4), row.defect_type or "")
    _put(sheet.cell(row=number, column=5), float(row.score), SCORE_FORMAT)
    decision = _put(sheet.cell(row=number, column=6), row.decision)
    if row.decision == "NG":
        decision.font = Font(bold=True, color="C00000")
    correct = _put(sheet.cell(row=number, column=7), _correct_text(row.label, row.decision))
    if correct.value == "no":
        correct.font = WARNING_FONT
        correct.fill = WARNING_FILL


def _embed_row_pictures(sheet: Any, number: int, row: ImageRow) -> int:
    """Anchor the row's thumbnails in the picture columns; return 1 when the image file was missing."""
    image, overlay = row.render()
    first = len(IMAGE_COLUMNS) + 1
    tallest = 0
    for offset, (picture, absent) in enumerate(((image, "image not found"), (overlay, "no anomaly map saved"))):
        cell = sheet.cell(row=number, column=first + offset)
        if picture is None:
            _put(cell, absent).font = MUTED_FONT
            continue
        sheet.add_image(_sheet_image(picture), cell.coordinate)
        tallest = max(tallest, picture.shape[0])
    if tallest:
        sheet.row_dimensions[number].height = tallest * POINTS_PER_PIXEL + 4
    return 1 if image is None else 0


class _RunPictures:
    """Thumbnails of a run's test images and of their anomaly maps from maps.npy, laid over the image."""

    def __init__(self, run: RunData) -> None:
        data = run.config.data
        self.preprocessor = Preprocessor(data.image_size, data.resize_policy, data.crop_ratio)
        path = run.folder.maps_path
        self.maps = np.load(path, mmap_mode="r") if path.is_file() else None

    def render(self, path: str, map_index: int | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        image = _read_thumbnail(Path(path))
        if self.maps is None or map_index is None or not 0 <= map_index < len(self.maps):
            return image, None
        anomaly_map = np.asarray(self.maps[map_index], dtype=np.float32)
        if image is None:
            return None, _thumbnail(_colour_map(anomaly_map))
        # The map is in the network's input geometry, and map_to_original undoes the resize, padding or crop.
        # NOTE: the placement is computed for the thumbnail's size, which can differ from the original's
        # by rounding, so the overlay may be off by a thumbnail pixel for letterbox and resize_crop.
        heat = self.preprocessor.map_to_original(anomaly_map, image.shape[:2])
        return image, _blend(image, _colour_map(heat))


def _read_thumbnail(path: Path) -> np.ndarray | None:
    try:
        return _thumbnail(read_image(path))
    except DatasetError as exc:
        logger.debug("No thumbnail of %s: %s", path, exc)
        return None


def _thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Scale an image so that its longest side is `side` pixels, keeping the aspect ratio."""
    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation)


def _colour_map(anomaly_map: np.ndarray) -> np.ndarray:
    """Colour an anomaly map with the JET palette on the fixed range 0..1 (the score range), as RGB."""
    heat = np.clip(np.nan_to_num(np.asarray(anomaly_map, dtype=np.float32)), 0.0, 1.0)
    coloured = cv2.applyColorMap(np.rint(heat * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def _blend(image: np.ndarray, coloured: np.ndarray) -> np.ndarray:
    if coloured.shape[:2] != image.shape[:2]:
        coloured = cv2.resize(coloured, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(image, 1.0 - HEATMAP_OPACITY, coloured, HEATMAP_OPACITY, 0.0)


def _sheet_image(rgb: np.ndarray) -> SheetImage:
    array = np.ascontiguousarray(rgb, dtype=np.uint8)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    encoded, buffer = cv2.imencode(".png", array)
    if not encoded:
        raise OutputError(f"PNG encoding of a {array.shape} thumbnail failed.")
    return SheetImage(io.BytesIO(buffer.tobytes()))


# --------------------------------------------------------------------------------------------------------
# Inspection rows


def _inspection_row(row: dict[str, Any], number: int, threshold: float | None, run: RunData | None) -> ImageRow:
    if "path" not in row or "score" not in row:
        raise ValueError(f"Inspection row {number} needs `path` and `score`; it has {sorted(row)}.")
    decision = row.get("decision")
    if decision is not None:
        decision = str(decision).upper()
        if decision not in ("OK", "NG"):
            raise ValueError(f"Inspection row {number} has decision {row['decision']!r}; use 'OK' or 'NG'.")
    else:
        decision = decide(float(row["score"]), threshold)
    return ImageRow(
        run=run.label if run is not None else "",
        path=str(row["path"]),
        score=float(row["score"]),
        decision=decision,
        label=_parse_label(row.get("label"), number),
        defect_type=str(row.get("defect_type") or ""),
        render=partial(_inspection_pictures, Path(row["path"]), row.get("heatmap")),
    )


def _parse_label(label: Any, number: int) -> int | None:
    if label is None or label == "":
        return None
    if label in (0, 1):
        return int(label)
    text = str(label).lower()
    if text in ("good", "ok"):
        return 0
    if text in ("defective", "defect", "ng"):
        return 1
    raise ValueError(f"Inspection row {number} has label {label!r}; use 0/1, 'good' or 'defective'.")


def _inspection_pictures(path: Path, heatmap: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    image = _read_thumbnail(path)
    if heatmap is None:
        return image, None
    if isinstance(heatmap, (str, Path)):
        return image, _read_png_thumbnail(Path(heatmap))
    array = np.asarray(heatmap)
    if array.ndim == 3:
        return image, _thumbnail(array.astype(np.uint8))
    if array.ndim != 2:
        raise ValueError(f"Heatmap of {path} has shape {array.shape}; give (H, W) scores or an (H, W, 3) RGB image.")
    if image is None:
        return None, _thumbnail(_colour_map(array))
    return image, _blend(image, _colour_map(array))


def _read_png_thumbnail(path: Path) -> np.ndarray | None:
    try:
        return _thumbnail(read_image(path))
    except DatasetError as exc:
        logger.warning("Heatmap %s is not readable (%s); its cell stays empty.", path, exc)
        return None


# --------------------------------------------------------------------------------------------------------
# Curves sheet


@dataclass(frozen=True)
class CurveSpec:
    """A chart of the Curves sheet: which points of curves.json it draws and which metric is its area."""

    title: str
    level: str
    kind: str
    x_key: str
    y_key: str
    x_title: str
    y_title: str
    metric: str
    metric_name: str
    x_max: float = 1.0


FPR_TITLE = "False positive rate"
TPR_TITLE = "True positive rate"
CURVES = (
    CurveSpec("Image ROC", "image", "roc", "fpr", "tpr", FPR_TITLE, TPR_TITLE, "image_auroc", "AUROC"),
    CurveSpec("Image precision-recall", "image", "pr", "recall", "precision", "Recall", "Precision", "image_ap", "AP"),
    CurveSpec("Pixel ROC", "pixel", "roc", "fpr", "tpr", FPR_TITLE, TPR_TITLE, "pixel_auroc", "AUROC"),
    CurveSpec("Pixel precision-recall", "pixel", "pr", "recall", "precision", "Recall", "Precision", "pixel_ap", "AP"),
    CurveSpec(
        f"PRO up to {PRO_FPR_LIMIT:.0%} FPR",
        "pixel",
        "pro",
        "fpr",
        "pro",
        FPR_TITLE,
        "Per-region overlap",
        "pixel_aupro",
        "AUPRO",
        x_max=PRO_FPR_LIMIT,
    ),
)
AREA_COLUMNS = (("Run", 24),) + tuple((label, 14) for _, label in METRICS)
CHART_ROWS = 18
CHART_SIZE_CM = (16.0, 8.5)
POINTS_FIRST_ROW = 3
POINTS_FIRST_COLUMN = len(AREA_COLUMNS) + 3
"""First column of the curve points, right of the area table and of the charts below it."""


def _write_curves_sheet(sheet: Any, runs: list[RunData]) -> None:
    """Write the areas per run, then the curve points in column pairs, then one scatter chart per curve."""
    _write_header(sheet, AREA_COLUMNS)
    sheet.row_dimensions[1].height = 45
    for row, run in enumerate(runs, start=2):
        _put(sheet.cell(row=row, column=1), run.label)
        for column, (key, _) in enumerate(METRICS, start=2):
            _put(sheet.cell(row=row, column=column), run.metrics.get(key), PERCENT_FORMAT)

    column = POINTS_FIRST_COLUMN
    chart_row = len(runs) + 3
    for spec in CURVES:
        series = []
        for run in runs:
            points = _curve_points(run, spec)
            if points is None:
                continue
            series.append(_write_points(sheet, column, spec, run, points))
            column += 3
        if series:
            sheet.add_chart(_scatter_chart(spec, series), f"A{chart_row}")
        else:
            note = f"{spec.title}: no run has these points"
            if spec.level == "pixel":
                note += " (pixel curves need ground-truth masks of the defective test images)"
            _put(sheet.cell(row=chart_row, column=1), note + ".").font = MUTED_FONT
        chart_row += CHART_ROWS
    sheet.freeze_panes = f"A{POINTS_FIRST_ROW}"


def _curve_points(run: RunData, spec: CurveSpec) -> tuple[list[float], list[float]] | None:
    curve = (run.curves.get(spec.level) or {}).get(spec.kind) or {}
    xs, ys = curve.get(spec.x_key), curve.get(spec.y_key)
    if not xs or not ys or len(xs) != len(ys):
        return None
    return xs, ys


def _write_points(
    sheet: Any, column: int, spec: CurveSpec, run: RunData, points: tuple[list[float], list[float]]
) -> Series:
    xs, ys = points
    title = sheet.cell(row=1, column=column, value=f"{spec.title}: {run.label}")
    title.font = HEADER_FONT
    for offset, name in enumerate((spec.x_title, spec.y_title)):
        header = sheet.cell(row=2, column=column + offset, value=name)
        header.font = HEADER_FONT
        header.fill = HEADER_FILL
        sheet.column_dimensions[get_column_letter(column + offset)].width = 13
    for row, (x, y) in enumerate(zip(xs, ys), start=POINTS_FIRST_ROW):
        sheet.cell(row=row, column=column, value=float(x)).number_format = SCORE_FORMAT
        sheet.cell(row=row, column=column + 1, value=float(y)).number_format = SCORE_FORMAT

    last_row = POINTS_FIRST_ROW + len(xs) - 1
    x_values = Reference(sheet, min_col=column, min_row=POINTS_FIRST_ROW, max_row=last_row)
    y_values = Reference(sheet, min_col=column + 1, min_row=POINTS_FIRST_ROW, max_row=last_row)
    area = run.metrics.get(spec.metric)
    area_text = NOT_AVAILABLE if area is None else f"{area:.1%}"
    series = Series(y_values, x_values, title=f"{run.label} ({spec.metric_name} {area_text})")
    series.marker.symbol = "none"
    series.smooth = False
    return series


def _scatter_chart(spec: CurveSpec, series: list[Series]) -> ScatterChart:
    chart = ScatterChart(scatterStyle="lineMarker")
    chart.title = spec.title
    chart.style = 13
    chart.width, chart.height = CHART_SIZE_CM
    chart.x_axis.title = spec.x_title
    chart.y_axis.title = spec.y_title
    chart.x_axis.scaling.min, chart.x_axis.scaling.max = 0.0, spec.x_max
    chart.y_axis.scaling.min, chart.y_axis.scaling.max = 0.0, 1.0
    chart.x_axis.number_format = "0%"
    chart.y_axis.number_format = "0%"
    # openpyxl 3.1.5 writes no `delete` element for an axis unless it is set. False writes
    # <c:delete val="0"/>, so that Excel shows both axes.
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.x_axis.axPos = "b"
    chart.legend.position = "b"
    chart.series.extend(series)
    return chart


# --------------------------------------------------------------------------------------------------------
# Distribution and Config sheets


DISTRIBUTION_COLUMNS = (
    ("Run", 22),
    ("Category", 18),
    ("Mode in force", 13),
    ("Configured", 12),
    ("Decided by", 30),
    ("Points", 8),
    ("Radius", 8),
    ("Side x", 7),
    ("Side y", 7),
    ("L1 density", 10),
    ("L2 density", 10),
    ("Spectrum (mean image | points above the threshold)", _pixels_to_width(2 * SPECTRUM_HEIGHT)),
)


def _write_distribution_sheet(sheet: Any, runs: list[RunData]) -> None:
    _write_header(sheet, DISTRIBUTION_COLUMNS)
    sheet.row_dimensions[1].height = 30
    for row, run in enumerate(runs, start=2):
        judgement = run.distribution
        values: list[tuple[Any, str | None]] = [
            (run.label, None),
            (run.info.get("category"), None),
            (run.info.get("distribution_mode", judgement.get("mode")), None),
            (run.config.method.distribution, None),
            (_distribution_source(judgement.get("source")), None),
            (judgement.get("points"), "0"),
            (judgement.get("radius"), "0.00"),
            (judgement.get("side_x"), "0"),
            (judgement.get("side_y"), "0"),
            (judgement.get("l1_density"), SCORE_FORMAT),
            (judgement.get("l2_density"), SCORE_FORMAT),
        ]
        for column, (value, number_format) in enumerate(values, start=1):
            _put(sheet.cell(row=row, column=column), value, number_format)
        _embed_spectrum(sheet, row, run)

    rule = (
        f"The FFT judgement picks the hypersphere when the L1 or L2 density exceeds {DENSITY_THRESHOLD}, "
        f"the radius exceeds {RADIUS_THRESHOLD:g} and there are more than {POINTS_THRESHOLD} spectrum points "
        f"above {MAGNITUDE_THRESHOLD:g} (20 ln|F|). Otherwise it picks the manifold. "
        "A mode forced by the configuration or read from a table has no spectrum quantities (n/a)."
    )
    _put(sheet.cell(row=len(runs) + 3, column=1), rule).font = MUTED_FONT
    sheet.freeze_panes = "B2"


def _embed_spectrum(sheet: Any, row: int, run: RunData) -> None:
    cell = sheet.cell(row=row, column=len(DISTRIBUTION_COLUMNS))
    path = run.folder.spectrum_path
    if not path.is_file():
        _put(cell, "no spectrum figure").font = MUTED_FONT
        return
    decoded = cv2.imdecode(np.frombuffer(path.read_bytes(), dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        logger.warning("Spectrum figure %s is not a readable image; its cell shows a note.", path)
        _put(cell, "spectrum figure unreadable").font = MUTED_FONT
        return
    rgb = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    size = (max(1, round(width * SPECTRUM_HEIGHT / height)), SPECTRUM_HEIGHT)
    sheet.add_image(_sheet_image(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)), cell.coordinate)
    sheet.row_dimensions[row].height = SPECTRUM_HEIGHT * POINTS_PER_PIXEL + 4


CONFIG_COLUMNS = (("Run", 22), ("Section", 12), ("Key", 26), ("Value", 60))


def _write_config_sheet(sheet: Any, runs: list[RunData]) -> None:
    _write_header(sheet, CONFIG_COLUMNS)
    row = 2
    for run in runs:
        for section, key, value in _config_items(run.config_values):
            for column, item in enumerate((run.label, section, key, _config_cell_value(value)), start=1):
                _put(sheet.cell(row=row, column=column), item)
            row += 1
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:D{max(row - 1, 1)}"


def _config_items(values: dict[str, Any]) -> list[tuple[str, str, Any]]:
    items = []
    for section, entries in values.items():
        if not isinstance(entries, dict):
            items.append(("", str(section), entries))
            continue
        for key, value in entries.items():
            items.append((str(section), str(key), value))
    return items


def _config_cell_value(value: Any) -> Any:
    if value is None:
        return "(not set)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items())
    return value


# --------------------------------------------------------------------------------------------------------
# Command line


def register_cli(commands: Any) -> None:
    """Add `glass-engine report` to the CLI's subcommands."""
    report = commands.add_parser("report", help="write an Excel report of runs, or the scores of one run as CSV")
    report.add_argument(
        "--run", dest="runs", action="append", required=True, type=Path, help="run folder; repeat it for several runs"
    )
    report.add_argument(
        "--out", required=True, type=Path, help="file to write: .xlsx for the report, .csv for the scores of one run"
    )
    report.add_argument("--threshold", type=float, help="OK/NG threshold for every run (default: each run's own)")
    report.add_argument("--no-pictures", action="store_true", help="leave out the image and heatmap thumbnails")
    report.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        help="maximum test images listed per run (default: %(default)s)",
    )
    report.set_defaults(handler=command_report)


def command_report(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() == ".csv":
        if len(args.runs) != 1:
            raise OutputError(
                f"A .csv output contains the scores of one run, but {len(args.runs)} runs were given. Use .xlsx."
            )
        path = write_scores_csv(args.runs[0], out, threshold=args.threshold)
    else:
        path = write_report(
            args.runs, out, threshold=args.threshold, pictures=not args.no_pictures, max_images=args.max_images
        )
    logger.info("Report written to %s", path)
    return 0
