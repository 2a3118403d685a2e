"""Distribution judgement of a category: manifold or hypersphere, from the spectrum of the mean training image.

GLASS projects its synthetic anomaly features differently for the two cases. The official code
(cqylunlun/GLASS, `distribution_judge` in utils.py, called by the trainer of glass.py) decides from the
mean training image. It resizes the image to 289x289, converts it to grayscale, box-blurs it with a 39x39
kernel and computes the centred DFT magnitude in decibels, 20 * ln|F|. Points with a value above 170 are
counted. Their maximum L1 offsets from the centre (side_x, side_y) and maximum L2 distance (radius) give
two densities. The category is a hypersphere when either density exceeds 0.21, the radius exceeds 12 and
there are more than 60 points. Otherwise it is a manifold. `judge_distribution` follows these steps.

The official distribution tables (datasets/excel/*_distribution.xlsx) have the columns `Class` and
`Distribution`, where 1 selects the hypersphere branch (the trainer's `svd = 1`) and 0 the manifold.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import openpyxl
from openpyxl.drawing.image import Image as SheetImage
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from glass_engine.errors import ConfigError, DatasetError, OutputError
from glass_engine.fileio import atomic_write

logger = logging.getLogger(__name__)

MANIFOLD = "manifold"
HYPERSPHERE = "hypersphere"
MODES = (MANIFOLD, HYPERSPHERE)

JUDGE_SIZE = 289
BLUR_SIZE = 39
MAGNITUDE_THRESHOLD = 170.0
"""Threshold on 20 * ln|F| (natural logarithm, as in the official code)."""
DENSITY_THRESHOLD = 0.21
RADIUS_THRESHOLD = 12.0
POINTS_THRESHOLD = 60

# The smallest positive float64 replaces |F| = 0, so that 20 * ln stays finite (about -14166) and the
# point lies far below the threshold.
_SMALLEST_MAGNITUDE = np.finfo(np.float64).tiny

TABLE_HEADERS = ("Category", "Mode", "Flag", "Points", "Radius", "L1 density", "L2 density", "Spectrum")
_COLUMN_WIDTHS = (24, 14, 7, 9, 10, 12, 12, 34)
_NUMBER_FORMATS = {"Flag": "0", "Points": "0", "Radius": "0.00", "L1 density": "0.0000", "L2 density": "0.0000"}
_THUMBNAIL_HEIGHT = 80
"""Height in pixels of the spectrum figure embedded in each table row."""


@dataclass
class DistributionJudgement:
    """Result of the spectrum analysis of one mean training image.

    `spectrum` is an RGB uint8 image, 289 x 578: the resized input on the left and the binarised spectrum
    (white = above the threshold) on the right, like the official figure.
    """

    mode: str
    points: int
    radius: float
    side_x: int
    side_y: int
    l1_density: float
    l2_density: float
    spectrum: np.ndarray = field(repr=False)

    @property
    def flag(self) -> int:
        """1 for hypersphere and 0 for manifold, the official table's `Distribution` value."""
        return 1 if self.mode == HYPERSPHERE else 0

    def to_dict(self) -> dict[str, Any]:
        """Return the numbers and the mode, without the spectrum image."""
        return {
            "mode": self.mode,
            "points": self.points,
            "radius": self.radius,
            "side_x": self.side_x,
            "side_y": self.side_y,
            "l1_density": self.l1_density,
            "l2_density": self.l2_density,
        }

    def table_row(self, category: str) -> dict[str, Any]:
        """Return a row for `write_distribution_table`, spectrum included."""
        return {"category": category, **self.to_dict(), "spectrum": self.spectrum}


def judge_distribution(mean_image_rgb: np.ndarray) -> DistributionJudgement:
    """Judge manifold or hypersphere from the mean training image (RGB uint8 H x W x 3, or gray H x W).

    An image without spectral content above the threshold, such as an all-black one, has 0 points and
    is a manifold with radius and both densities 0. A zero magnitude |F| = 0 gives no NaN or infinity.
    """
    image = _checked_image(mean_image_rgb)

    resized = cv2.resize(image, (JUDGE_SIZE, JUDGE_SIZE), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY) if resized.ndim == 3 else resized
    blurred = cv2.blur(gray, (BLUR_SIZE, BLUR_SIZE))
    above = _spectrum_above_threshold(blurred)

    height, width = above.shape
    centre_y, centre_x = height // 2, width // 2
    ys, xs = np.nonzero(above)
    dx = np.abs(xs - centre_x)
    dy = np.abs(ys - centre_y)
    squared = dx * dx + dy * dy

    points = int(xs.size)
    side_x = int(dx.max()) if points else 0
    side_y = int(dy.max()) if points else 0
    radius_squared = int(squared.max()) if points else 0
    radius = math.sqrt(radius_squared)

    l1_density = points / (4 * max(side_x, 1) * max(side_y, 1))
    disc = _grid_points_within(radius_squared, centre_y, centre_x, 2 * height, 2 * width)
    # The official code adds 1e-10 to the disc count. The disc always contains the centre, so it changes nothing.
    l2_density = points / (disc + 1e-10) if points else 0.0

    dense = l1_density > DENSITY_THRESHOLD or l2_density > DENSITY_THRESHOLD
    is_hypersphere = dense and radius > RADIUS_THRESHOLD and points > POINTS_THRESHOLD
    judgement = DistributionJudgement(
        mode=HYPERSPHERE if is_hypersphere else MANIFOLD,
        points=points,
        radius=radius,
        side_x=side_x,
        side_y=side_y,
        l1_density=float(l1_density),
        l2_density=float(l2_density),
        spectrum=_spectrum_figure(resized, above),
    )
    logger.info("Distribution judgement: %s", judgement.to_dict())
    return judgement


def _checked_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"The mean image must be uint8, got {array.dtype}. Use mean_training_image to build it.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"The mean image must be H x W x 3 (RGB) or H x W (gray), got shape {array.shape}.")
    if min(array.shape[:2]) == 0:
        raise ValueError(f"The mean image is empty (shape {array.shape}).")
    return np.ascontiguousarray(array)


def _spectrum_above_threshold(gray: np.ndarray) -> np.ndarray:
    """Return where 20 * ln|F| of the centred 2-D DFT exceeds the threshold."""
    spectrum = np.fft.fftshift(np.fft.fft2(gray.astype(np.float64)))
    magnitude = np.maximum(np.abs(spectrum), _SMALLEST_MAGNITUDE)
    return 20.0 * np.log(magnitude) > MAGNITUDE_THRESHOLD


def _grid_points_within(radius_squared: int, centre_y: int, centre_x: int, rows: int, columns: int) -> int:
    """Count the points of the index grid [0, rows) x [0, columns) within the radius of the centre.

    The official code uses a grid of twice the image size around the image centre, so a circle larger
    than the centre's offset is cut at the grid's top and left edges. This count keeps that definition.
    """
    dy = np.arange(rows, dtype=np.int64) - centre_y
    remaining = radius_squared - dy * dy
    inside_rows = remaining >= 0
    # floor(sqrt) is exact here because the values are far below 2**52.
    half_width = np.floor(np.sqrt(remaining[inside_rows])).astype(np.int64)
    left = np.maximum(centre_x - half_width, 0)
    right = np.minimum(centre_x + half_width, columns - 1)
    return int(np.sum(right - left + 1))


def _spectrum_figure(resized: np.ndarray, above: np.ndarray) -> np.ndarray:
    left = resized if resized.ndim == 3 else np.repeat(resized[:, :, np.newaxis], 3, axis=2)
    right = np.repeat((above.astype(np.uint8) * 255)[:, :, np.newaxis], 3, axis=2)
    return np.hstack([left, right])


def mean_training_image(images: Iterable[np.ndarray]) -> np.ndarray:
    """Return the pixel-wise mean of RGB uint8 images of one common size, rounded to uint8.

    The sum is kept in float64 and images are read one at a time. The official code averages the
    normalised tensors and un-normalises the mean, which is the same image up to rounding, because the
    normalisation is affine. Raises DatasetError when `images` is empty or the sizes differ.
    """
    total: np.ndarray | None = None
    count = 0
    for image in images:
        array = np.asarray(image)
        if total is None:
            total = np.zeros(array.shape, dtype=np.float64)
        elif array.shape != total.shape:
            raise DatasetError(
                f"Training image {count} has shape {array.shape} but the first has {total.shape}. "
                "Resize all images to the network input size before averaging."
            )
        total += array
        count += 1

    if total is None:
        raise DatasetError("No training images to average. Check that train/good contains images.")
    return np.clip(np.rint(total / count), 0, 255).astype(np.uint8)


def write_distribution_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Write one row per category to an .xlsx file, atomically, with the spectrum figure embedded.

    Each row needs `category` and `mode` ("manifold" or "hypersphere"); `points`, `radius`, `l1_density`,
    `l2_density` and `spectrum` (RGB uint8 image) are optional. `DistributionJudgement.table_row` builds
    such a row. The `Flag` column is 1 for hypersphere, as the official table's `Distribution` column.
    """
    path = Path(path)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "distribution"
    _write_header(sheet)

    for row_number, row in enumerate(rows, start=2):
        _write_row(sheet, row_number, row)

    def save(tmp_path: Path) -> None:
        try:
            workbook.save(tmp_path)
        except OSError as exc:
            raise OutputError(f"Cannot write distribution table {path}: {exc}. Choose a writable location.") from exc

    atomic_write(path, save)
    logger.info("Wrote distribution table with %d categories to %s", len(rows), path)


def _write_header(sheet: Any) -> None:
    for column, (title, width) in enumerate(zip(TABLE_HEADERS, _COLUMN_WIDTHS), start=1):
        cell = sheet.cell(row=1, column=column, value=title)
        cell.font = Font(bold=True)
        sheet.column_dimensions[get_column_letter(column)].width = width
    sheet.freeze_panes = "A2"


def _write_row(sheet: Any, row_number: int, row: dict[str, Any]) -> None:
    mode = row.get("mode")
    if mode not in MODES:
        raise ValueError(f"Row {row_number - 1} has mode {mode!r}. Use 'manifold' or 'hypersphere'.")
    category = row.get("category")
    if not category:
        raise ValueError(f"Row {row_number - 1} has no category name.")

    values = {
        "Category": str(category),
        "Mode": mode,
        "Flag": 1 if mode == HYPERSPHERE else 0,
        "Points": row.get("points"),
        "Radius": row.get("radius"),
        "L1 density": row.get("l1_density"),
        "L2 density": row.get("l2_density"),
    }
    for column, title in enumerate(TABLE_HEADERS[:-1], start=1):
        cell = sheet.cell(row=row_number, column=column, value=values[title])
        cell.alignment = Alignment(vertical="center")
        if title in _NUMBER_FORMATS:
            cell.number_format = _NUMBER_FORMATS[title]

    spectrum = row.get("spectrum")
    if spectrum is not None:
        picture = _png_picture(spectrum)
        sheet.add_image(picture, f"{get_column_letter(len(TABLE_HEADERS))}{row_number}")
        # Row heights are in points, and a pixel is 0.75 points at 96 dpi.
        sheet.row_dimensions[row_number].height = picture.height * 0.75 + 4


def _png_picture(image_rgb: np.ndarray) -> SheetImage:
    image = np.asarray(image_rgb, dtype=np.uint8)
    height, width = image.shape[:2]
    thumbnail_width = max(1, round(width * _THUMBNAIL_HEIGHT / height))
    thumbnail = cv2.resize(image, (thumbnail_width, _THUMBNAIL_HEIGHT), interpolation=cv2.INTER_AREA)
    if thumbnail.ndim == 3:
        thumbnail = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2BGR)
    encoded, buffer = cv2.imencode(".png", thumbnail)
    if not encoded:
        raise OutputError("PNG encoding of the spectrum figure failed.")
    return SheetImage(io.BytesIO(buffer.tobytes()))


def read_distribution_table(path: Path) -> dict[str, str]:
    """Read category -> "manifold" | "hypersphere" from a table of `write_distribution_table` or the official one.

    The category column is `Category` or `Class`. The mode comes from a `Mode` column when present, else
    from `Flag` or `Distribution` (1 = hypersphere, 0 = manifold). Header names ignore case. Raises
    ConfigError when the file is missing, unreadable or lacks these columns, or a value is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Distribution table {path} not found. Check method.distribution and the table path.")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"Cannot read distribution table {path}: {exc}. Save it as .xlsx.") from exc

    try:
        rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()
    if not rows:
        raise ConfigError(f"Distribution table {path} is empty. Expected a header row with Category and Mode.")

    header = [str(name).strip().lower() if name is not None else "" for name in rows[0]]
    category_column = _find_column(header, ("category", "class"), path)
    mode_column, is_flag = _mode_column(header, path)

    table: dict[str, str] = {}
    for row_number, row in enumerate(rows[1:], start=2):
        category = row[category_column] if category_column < len(row) else None
        if category is None or str(category).strip() == "":
            continue
        value = row[mode_column] if mode_column < len(row) else None
        table[str(category).strip()] = _parse_mode(value, is_flag, path, row_number)
    return table


def _find_column(header: list[str], names: tuple[str, ...], path: Path) -> int:
    for name in names:
        if name in header:
            return header.index(name)
    raise ConfigError(f"Distribution table {path} has no column named {' or '.join(names)}. Found columns: {header}.")


def _mode_column(header: list[str], path: Path) -> tuple[int, bool]:
    if "mode" in header:
        return header.index("mode"), False
    return _find_column(header, ("flag", "distribution"), path), True


def _parse_mode(value: Any, is_flag: bool, path: Path, row_number: int) -> str:
    if not is_flag:
        text = str(value).strip().lower() if value is not None else ""
        if text in MODES:
            return text
        raise ConfigError(f"Distribution table {path}, row {row_number}: mode {value!r} is not manifold or hypersphere.")
    if value in (0, 1) and not isinstance(value, bool):
        return HYPERSPHERE if int(value) == 1 else MANIFOLD
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return HYPERSPHERE if value.strip() == "1" else MANIFOLD
    raise ConfigError(f"Distribution table {path}, row {row_number}: distribution flag {value!r} is not 0 or 1.")
