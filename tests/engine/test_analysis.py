"""Tests of glass_engine.analysis: spectrum judgement on images with known spectra, mean image, xlsx table."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import openpyxl
import pytest

from glass_engine.analysis import (
    HYPERSPHERE,
    MANIFOLD,
    judge_distribution,
    mean_training_image,
    read_distribution_table,
    write_distribution_table,
)
from glass_engine.errors import ConfigError, DatasetError

SIZE = 289


def reference_quantities(image_rgb: np.ndarray) -> dict:
    """Follow the official steps with OpenCV's float32 DFT on the BGR image and a dense index grid."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    gray = cv2.blur(cv2.cvtColor(cv2.resize(bgr, (SIZE, SIZE)), cv2.COLOR_BGR2GRAY), (39, 39))
    dft = np.fft.fftshift(cv2.dft(np.float32(gray), flags=cv2.DFT_COMPLEX_OUTPUT), axes=(0, 1))
    with np.errstate(divide="ignore"):
        decibels = 20 * np.log(cv2.magnitude(dft[:, :, 0], dft[:, :, 1]))
    ys, xs = np.nonzero(decibels > 170)

    centre = SIZE // 2
    distances = np.sqrt((xs - centre) ** 2 + (ys - centre) ** 2)
    grid_y, grid_x = np.indices((2 * SIZE, 2 * SIZE))
    grid_distances = np.sqrt((grid_x - centre) ** 2 + (grid_y - centre) ** 2)

    side_x = int(np.abs(xs - centre).max())
    side_y = int(np.abs(ys - centre).max())
    radius = float(distances.max())
    points = len(xs)
    l1_density = points / (4 * max(side_x, 1) * max(side_y, 1))
    l2_density = points / (np.sum(grid_distances <= radius) + 1e-10)
    dense = l1_density > 0.21 or l2_density > 0.21
    mode = HYPERSPHERE if dense and radius > 12 and points > 60 else MANIFOLD
    return {
        "mode": mode,
        "points": points,
        "radius": radius,
        "side_x": side_x,
        "side_y": side_y,
        "l1_density": l1_density,
        "l2_density": l2_density,
    }


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def checkerboard(square: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return gray_to_rgb((((x // square) + (y // square)) % 2 * 255).astype(np.uint8))


def horizontal_ramp() -> np.ndarray:
    x = np.tile(np.arange(SIZE), (SIZE, 1))
    return gray_to_rgb((x * 255 // (SIZE - 1)).astype(np.uint8))


def bright_disc(radius: int) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return gray_to_rgb((((x - 144) ** 2 + (y - 144) ** 2 < radius**2) * 255).astype(np.uint8))


def assert_matches_reference(image: np.ndarray) -> dict:
    judgement = judge_distribution(image)
    reference = reference_quantities(image)

    assert judgement.points == reference["points"]
    assert judgement.side_x == reference["side_x"]
    assert judgement.side_y == reference["side_y"]
    assert judgement.radius == pytest.approx(reference["radius"])
    assert judgement.l1_density == pytest.approx(reference["l1_density"])
    assert judgement.l2_density == pytest.approx(reference["l2_density"])
    assert judgement.mode == reference["mode"]
    return reference


def test_flat_grey_is_manifold():
    # A constant image has only the DC term: one point at the centre, radius 0.
    judgement = judge_distribution(np.full((SIZE, SIZE, 3), 128, dtype=np.uint8))

    assert judgement.points == 1
    assert judgement.radius == 0.0
    assert judgement.l1_density == pytest.approx(0.25)
    assert judgement.mode == MANIFOLD


def test_black_image_defined_manifold():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        judgement = judge_distribution(np.zeros((120, 90, 3), dtype=np.uint8))

    assert judgement.points == 0
    assert judgement.radius == 0.0
    assert judgement.l1_density == 0.0
    assert judgement.l2_density == 0.0
    assert judgement.mode == MANIFOLD
    assert not np.any(judgement.spectrum[:, SIZE:])


def test_checkerboard_sparse_harmonics_manifold():
    # Squares of 24 px have odd harmonics on a sparse 2-D lattice reaching the spectrum's edge: many
    # points far out, but they fill only a few percent of the box and the disc they span.
    reference = assert_matches_reference(checkerboard(24))

    assert reference["points"] > 60
    assert reference["radius"] > 100
    assert reference["l1_density"] < 0.21
    assert reference["mode"] == MANIFOLD


def test_ramp_single_row_hypersphere():
    # The ramp is constant along y, so all spectral energy lies in the centre row: side_y = 0 and
    # l1_density = points / (4 * side_x), above 0.21 once most of the row passes the threshold.
    image = horizontal_ramp()
    judgement = judge_distribution(image)
    assert_matches_reference(image)

    assert judgement.side_y == 0
    assert judgement.l1_density == pytest.approx(judgement.points / (4 * judgement.side_x))
    assert judgement.radius == judgement.side_x
    assert judgement.mode == HYPERSPHERE


def test_bright_disc_dense_hypersphere():
    # A centred disc gives a compact, filled spectrum (an Airy pattern) around the centre.
    reference = assert_matches_reference(bright_disc(80))

    assert reference["radius"] > 12
    assert reference["l2_density"] > 0.21
    assert reference["mode"] == HYPERSPHERE


def test_gray_input_equals_rgb_input():
    ramp = horizontal_ramp()

    assert judge_distribution(ramp[:, :, 0]).to_dict() == judge_distribution(ramp).to_dict()


def test_resized_input_is_judged_at_289():
    judgement = judge_distribution(cv2.resize(checkerboard(24), (400, 300), interpolation=cv2.INTER_NEAREST))

    assert judgement.spectrum.shape == (SIZE, 2 * SIZE, 3)
    assert judgement.spectrum.dtype == np.uint8


def test_spectrum_figure_marks_points():
    judgement = judge_distribution(horizontal_ramp())

    marked = judgement.spectrum[:, SIZE:, 0] == 255
    assert np.count_nonzero(marked) == judgement.points
    assert np.array_equal(judgement.spectrum[:, :SIZE], horizontal_ramp())


def test_judgement_rejects_float_image():
    with pytest.raises(ValueError, match="uint8"):
        judge_distribution(np.zeros((10, 10, 3), dtype=np.float32))


def test_to_dict_has_no_image():
    values = judge_distribution(horizontal_ramp()).to_dict()

    assert set(values) == {"mode", "points", "radius", "side_x", "side_y", "l1_density", "l2_density"}


def test_mean_training_image_streams():
    def images():
        for value in (0, 10, 255):
            yield np.full((4, 5, 3), value, dtype=np.uint8)

    mean = mean_training_image(images())

    assert mean.dtype == np.uint8
    assert mean.shape == (4, 5, 3)
    assert np.all(mean == 88)  # 265 / 3 = 88.3


def test_mean_training_image_rejects_size_change():
    with pytest.raises(DatasetError, match="Resize"):
        mean_training_image([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)])


def test_mean_training_image_rejects_empty():
    with pytest.raises(DatasetError, match="No training images"):
        mean_training_image([])


def test_table_round_trip(tmp_path):
    ramp = judge_distribution(horizontal_ramp())
    flat = judge_distribution(np.full((SIZE, SIZE, 3), 128, dtype=np.uint8))
    path = tmp_path / "out" / "distribution.xlsx"

    write_distribution_table([ramp.table_row("wood"), flat.table_row("bottle")], path)

    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    assert [cell.value for cell in sheet[1]] == [
        "Category", "Mode", "Flag", "Points", "Radius", "L1 density", "L2 density", "Spectrum",
    ]
    assert [cell.value for cell in sheet[2]][:4] == ["wood", "hypersphere", 1, ramp.points]
    assert sheet["E2"].value == pytest.approx(ramp.radius)
    assert sheet["F2"].value == pytest.approx(ramp.l1_density)
    assert sheet["F2"].number_format == "0.0000"
    assert [cell.value for cell in sheet[3]][:3] == ["bottle", "manifold", 0]
    assert sheet.freeze_panes == "A2"
    assert len(sheet._images) == 2
    assert read_distribution_table(path) == {"wood": HYPERSPHERE, "bottle": MANIFOLD}


def test_table_without_spectrum(tmp_path):
    path = tmp_path / "plain.xlsx"

    write_distribution_table([{"category": "grid", "mode": "manifold"}], path)

    assert read_distribution_table(path) == {"grid": MANIFOLD}


def test_table_rejects_unknown_mode(tmp_path):
    with pytest.raises(ValueError, match="manifold"):
        write_distribution_table([{"category": "grid", "mode": "sphere"}], tmp_path / "bad.xlsx")
    assert not (tmp_path / "bad.xlsx").exists()


def test_read_official_column_names(tmp_path):
    # The official tables have a pandas index column, then Class and Distribution (1 = hypersphere).
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append([None, "Class", "Distribution"])
    sheet.append([0, "carpet", 1])
    sheet.append([1, "bottle", 0])
    path = tmp_path / "mvtec_distribution.xlsx"
    workbook.save(path)

    assert read_distribution_table(path) == {"carpet": HYPERSPHERE, "bottle": MANIFOLD}


def test_read_rejects_bad_flag(tmp_path):
    workbook = openpyxl.Workbook()
    workbook.active.append(["Class", "Distribution"])
    workbook.active.append(["carpet", 2])
    path = tmp_path / "bad.xlsx"
    workbook.save(path)

    with pytest.raises(ConfigError, match="row 2"):
        read_distribution_table(path)


def test_read_missing_table(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_distribution_table(tmp_path / "missing.xlsx")
