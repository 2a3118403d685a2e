"""Tests of dataset discovery, image and mask reading and the input geometry (glass_engine.data)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torchvision import transforms

from glass_engine.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DatasetIndex,
    ImageDataset,
    Preprocessor,
    Sample,
    detect_layout,
    discover,
    list_categories,
    read_image,
    read_mask,
    _orient,
    split_validation,
)
from glass_engine.errors import DatasetError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def write_rgb(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return rgb


def write_mask(path: Path, height: int = 24, width: int = 32) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return mask > 0


def make_mvtec(root: Path, category: str = "widget") -> Path:
    base = root / category
    for i in range(3):
        write_rgb(base / "train" / "good" / f"{i:03d}.png", seed=i)
    for i in range(2):
        write_rgb(base / "test" / "good" / f"{i:03d}.png", seed=10 + i)
    for i in range(2):
        write_rgb(base / "test" / "crack" / f"{i:03d}.png", seed=20 + i)
        write_mask(base / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    write_rgb(base / "test" / "hole" / "000.png", seed=30)
    write_mask(base / "ground_truth" / "hole" / "000.png")
    return root


# --------------------------------------------------------------------------------------------------------
# Discovery


def test_discover_mvtec_counts_and_masks(tmp_path):
    make_mvtec(tmp_path)

    index = discover(tmp_path, None)

    assert index.layout == "mvtec"
    assert index.category == "widget"
    counts = index.counts()
    assert counts["train"] == 3
    assert counts["test_good"] == 2
    assert counts["test_defective"] == 3
    assert counts["masks"] == 3
    assert counts["defect_types"] == {"crack": 2, "hole": 1}
    assert index.has_masks
    by_name = {(s.defect_type, s.path.name): s for s in index.test}
    assert by_name[("crack", "001.png")].mask_path.name == "001_mask.png"
    assert by_name[("hole", "000.png")].mask_path.name == "000.png"
    assert by_name[("good", "000.png")].mask_path is None
    assert all(s.label == 0 and s.split == "train" for s in index.train)


def test_detect_layout_and_categories(tmp_path):
    make_mvtec(tmp_path, "alpha")
    make_mvtec(tmp_path, "beta")

    assert detect_layout(tmp_path) == "mvtec"
    assert list_categories(tmp_path) == ["alpha", "beta"]
    with pytest.raises(DatasetError, match="several categories"):
        discover(tmp_path, None)


def test_category_folder_as_root(tmp_path):
    make_mvtec(tmp_path)

    index = discover(tmp_path / "widget", None)

    assert index.category == "widget"
    assert index.root == tmp_path
    assert len(index.train) == 3


def test_missing_root_raises(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        discover(tmp_path / "absent", None)


def test_unknown_category_lists_found(tmp_path):
    make_mvtec(tmp_path)

    with pytest.raises(DatasetError) as info:
        discover(tmp_path, "gadget")

    assert "gadget" in str(info.value)
    assert "widget" in str(info.value)


def test_unknown_layout_raises(tmp_path):
    (tmp_path / "random").mkdir()

    with pytest.raises(DatasetError, match="no known dataset layout"):
        discover(tmp_path, None)


def test_bad_files_are_skipped_and_counted(tmp_path, caplog):
    make_mvtec(tmp_path)
    good = tmp_path / "widget" / "train" / "good"
    (good / "empty.png").write_bytes(b"")
    (good / "notes.txt").write_text("not an image", encoding="utf-8")
    (good / "broken.jpg").write_bytes(b"\x00\x01garbage" * 20)

    with caplog.at_level(logging.WARNING, logger="glass_engine.data"):
        index = discover(tmp_path, "widget")

    assert len(index.train) == 3
    reasons = {path.name: reason for path, reason in index.skipped}
    assert set(reasons) == {"empty.png", "notes.txt", "broken.jpg"}
    assert "0 bytes" in reasons["empty.png"]
    assert "not an image" in reasons["notes.txt"]
    assert "cannot decode" in reasons["broken.jpg"]
    assert index.counts()["skipped"] == 3
    assert "broken.jpg" in caplog.text


def test_truncated_image_fails_at_load(tmp_path):
    path = tmp_path / "cut.png"
    write_rgb(path, 64, 64)
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(DatasetError, match="cut.png"):
        read_image(path)


def test_missing_ground_truth_warns(tmp_path):
    make_mvtec(tmp_path)
    for mask in (tmp_path / "widget" / "ground_truth").rglob("*.png"):
        mask.unlink()
    for folder in sorted((tmp_path / "widget" / "ground_truth").iterdir()):
        folder.rmdir()
    (tmp_path / "widget" / "ground_truth").rmdir()

    index = discover(tmp_path, "widget")

    assert index.counts()["test_defective"] == 3
    assert not index.has_masks
    assert any("ground_truth" in warning for warning in index.warnings)


def test_missing_mask_of_one_image_warns(tmp_path):
    make_mvtec(tmp_path)
    (tmp_path / "widget" / "ground_truth" / "crack" / "001_mask.png").unlink()

    index = discover(tmp_path, "widget")

    assert index.counts()["masks"] == 2
    assert any("1 of 2 images" in warning for warning in index.warnings)


def test_mask_without_image_raises(tmp_path):
    make_mvtec(tmp_path)
    write_mask(tmp_path / "widget" / "ground_truth" / "crack" / "077_mask.png")

    with pytest.raises(DatasetError) as info:
        discover(tmp_path, "widget")

    assert "077_mask.png" in str(info.value)
    assert "remove the mask" in str(info.value)


def test_mask_folder_without_images_raises(tmp_path):
    make_mvtec(tmp_path)
    write_mask(tmp_path / "widget" / "ground_truth" / "scratch" / "000_mask.png")

    with pytest.raises(DatasetError, match="scratch"):
        discover(tmp_path, "widget")


def test_mask_of_skipped_image_is_dropped(tmp_path):
    make_mvtec(tmp_path)
    (tmp_path / "widget" / "test" / "crack" / "001.png").write_bytes(b"")

    index = discover(tmp_path, "widget")

    assert index.counts()["test_defective"] == 2
    assert index.counts()["masks"] == 2


def test_fg_masks_official_place(tmp_path):
    make_mvtec(tmp_path)
    for i in range(2):
        write_mask(tmp_path / "fg_mask" / "widget" / f"{i:03d}.png")

    index = discover(tmp_path, "widget")

    fg = {s.path.name: s.fg_mask_path for s in index.train}
    assert fg["000.png"] == tmp_path / "fg_mask" / "widget" / "000.png"
    assert fg["002.png"] is None
    assert index.counts()["fg_masks"] == 2
    assert any("foreground mask" in warning for warning in index.warnings)


def test_non_ascii_paths_with_spaces(tmp_path):
    root = tmp_path / "Prüfdaten Öl" / "数据 集"
    base = root / "pièce été"
    expected = write_rgb(base / "train" / "good" / "bild 1.png")
    write_rgb(base / "test" / "kratzer ä" / "bild 2.png")
    expected_mask = write_mask(base / "ground_truth" / "kratzer ä" / "bild 2_mask.png")

    index = discover(root, None)

    assert index.category == "pièce été"
    np.testing.assert_array_equal(read_image(index.train[0].path), expected)
    np.testing.assert_array_equal(read_mask(index.test[0].mask_path), expected_mask)


def test_visa_layout(tmp_path):
    rows = [
        ("candle", "train", "normal", "candle/Data/Images/Normal/000.JPG", ""),
        ("candle", "train", "normal", "candle/Data/Images/Normal/001.JPG", ""),
        ("candle", "test", "normal", "candle/Data/Images/Normal/002.JPG", ""),
        ("candle", "test", "anomaly", "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"),
        ("candle", "test", "anomaly", "candle/Data/Images/Anomaly/001.JPG", "candle/Data/Masks/Anomaly/001.png"),
        ("capsules", "train", "normal", "capsules/Data/Images/Normal/000.JPG", ""),
    ]
    for _, _, _, image, mask in rows:
        write_rgb(tmp_path / image)
    write_mask(tmp_path / "candle/Data/Masks/Anomaly/000.png")
    (tmp_path / "split_csv").mkdir()
    with open(tmp_path / "split_csv" / "1cls.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)

    assert detect_layout(tmp_path) == "visa"
    assert list_categories(tmp_path) == ["candle", "capsules"]
    index = discover(tmp_path, "candle")

    assert index.counts()["train"] == 2
    assert index.counts()["test_good"] == 1
    assert index.counts()["test_defective"] == 2
    assert index.counts()["masks"] == 1
    assert any("no mask file" in warning for warning in index.warnings)


def test_folder_layout_holdout_and_masks(tmp_path):
    for i in range(10):
        write_rgb(tmp_path / "good" / f"g{i}.png", seed=i)
    write_rgb(tmp_path / "dent" / "1.png")
    write_rgb(tmp_path / "dent" / "10.png")
    write_mask(tmp_path / "masks" / "dent" / "10_mask.png")
    write_rgb(tmp_path / "stain" / "a.jpg")
    write_rgb(tmp_path / "stain" / "a_b.jpg")
    write_mask(tmp_path / "stain_masks" / "a.png")
    write_mask(tmp_path / "stain_masks" / "a_b_mask.png")

    assert detect_layout(tmp_path) == "folder"
    index = discover(tmp_path, None)

    assert index.layout == "folder"
    assert len(index.train) == 8
    assert sum(1 for s in index.test if s.label == 0) == 2
    train_names = {s.path.name for s in index.train}
    held_names = {s.path.name for s in index.test if s.label == 0}
    assert not train_names & held_names
    assert any("Held out 2 of 10" in warning for warning in index.warnings)
    masks = {(s.defect_type, s.path.name): s.mask_path for s in index.test if s.label == 1}
    assert masks[("dent", "10.png")].name == "10_mask.png"
    assert masks[("dent", "1.png")] is None
    assert masks[("stain", "a.jpg")].name == "a.png"
    assert masks[("stain", "a_b.jpg")].name == "a_b_mask.png"
    assert index.counts()["defect_types"] == {"dent": 2, "stain": 2}

    again = discover(tmp_path, None)
    assert {s.path.name for s in again.train} == train_names


def test_folder_layout_with_category(tmp_path):
    for i in range(5):
        write_rgb(tmp_path / "parts" / "good" / f"{i}.png", seed=i)
    write_rgb(tmp_path / "parts" / "burr" / "x.png")

    index = discover(tmp_path, "parts", layout="folder")

    assert len(index.train) == 4
    assert index.counts()["test"] == 2


@pytest.mark.shared_data
def test_shared_magnetic_tile_counts():
    root = SHARED / "magnetic_tile"
    if not (root / "magnetic_tile").is_dir():
        pytest.skip("shared datasets are not beside the repository")

    counts = discover(root, "magnetic_tile").counts()

    assert counts["train"] == 619
    assert counts["test_good"] == 333
    assert counts["test_defective"] == 392
    assert counts["masks"] == 392
    assert counts["skipped"] == 0


def test_dataset_index_counts_by_hand():
    index = DatasetIndex(
        Path("r"), "c", "mvtec",
        train=[Sample(Path("a"), "train", 0, "good", None)],
        test=[
            Sample(Path("b"), "test", 0, "good", None),
            Sample(Path("d"), "test", 1, "dent", Path("dm")),
            Sample(Path("e"), "test", 1, "dent", None),
        ],
    )

    counts = index.counts()

    assert (counts["train"], counts["test"], counts["test_defective"], counts["masks"]) == (1, 3, 2, 1)
    assert counts["defect_types"] == {"dent": 2}


# --------------------------------------------------------------------------------------------------------
# Image and mask reading


def test_read_grayscale_as_rgb(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(gray).save(tmp_path / "g.png")

    rgb = read_image(tmp_path / "g.png")

    assert rgb.dtype == np.uint8
    assert rgb.shape == (12, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Full 16-bit range: divided by 257.
        ([0, 257 * 100, 65535], [0, 100, 255]),
        # 12-bit data: 4095 maps to 255 and 2048 to round(2048 * 255 / 4095).
        ([0, 2048, 4095], [0, 128, 255]),
    ],
)
def test_read_16bit_grayscale(tmp_path, values, expected):
    array = np.array([values], dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "g16.png")

    rgb = read_image(tmp_path / "g16.png")

    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], expected)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_read_16bit_colour(tmp_path):
    bgr = np.zeros((4, 5, 3), dtype=np.uint16)
    bgr[..., 0] = 65535
    bgr[..., 1] = 257 * 100
    bgr[..., 2] = 257 * 7
    path = tmp_path / "c16.png"
    cv2.imencode(".png", bgr)[1].tofile(path)

    rgb = read_image(path)

    np.testing.assert_array_equal(rgb[0, 0], [7, 100, 255])


def test_read_rgba_drops_alpha(tmp_path):
    rgba = np.zeros((6, 7, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 200, 100, 50, 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")

    rgb = read_image(tmp_path / "a.png")

    assert rgb.shape == (6, 7, 3)
    np.testing.assert_array_equal(rgb[3, 3], [200, 100, 50])


def test_read_palette_image(tmp_path):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8))
    palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.save(tmp_path / "p.png")
    expected = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))

    rgb = read_image(tmp_path / "p.png")

    np.testing.assert_array_equal(rgb, expected)


def test_read_exif_rotated_jpeg(tmp_path):
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[:5, :5] = (255, 0, 0)
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)

    rgb = read_image(tmp_path / "r.jpg")

    assert rgb.shape == (20, 10, 3)
    # The red top-left corner of the stored image is at the top-right once displayed upright.
    assert rgb[1, 8, 0] > 200
    assert rgb[1, 1, 0] < 50


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow(orientation):
    array = np.random.default_rng(orientation).integers(0, 256, (4, 7, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    image.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(image))

    np.testing.assert_array_equal(_orient(array, orientation), expected)


def test_read_image_not_an_image(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello", encoding="utf-8")

    with pytest.raises(DatasetError, match="fake.png"):
        read_image(path)


def test_read_mask_resizes_with_warning(tmp_path, caplog):
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[:, :5] = 255
    Image.fromarray(mask).save(tmp_path / "small_mask.png")

    with caplog.at_level(logging.WARNING, logger="glass_engine.data"):
        resized = read_mask(tmp_path / "small_mask.png", (20, 30))

    assert resized.shape == (20, 30)
    assert resized.dtype == bool
    assert resized[:, :15].all()
    assert not resized[:, 15:].any()
    assert "small_mask.png" in caplog.text


def test_read_mask_same_size_no_warning(tmp_path, caplog):
    expected = write_mask(tmp_path / "m.png")

    with caplog.at_level(logging.WARNING, logger="glass_engine.data"):
        mask = read_mask(tmp_path / "m.png", expected.shape)

    np.testing.assert_array_equal(mask, expected)
    assert caplog.text == ""


# --------------------------------------------------------------------------------------------------------
# Geometry


def ellipse_mask(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((y - 0.45 * height) / (0.3 * height)) ** 2 + ((x - 0.55 * width) / (0.25 * width)) ** 2 <= 1.0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("policy", ["resize", "letterbox"])
@pytest.mark.parametrize("hw", [(250, 333), (333, 250), (101, 101)])
def test_mask_round_trip(policy, hw):
    preprocessor = Preprocessor(100, policy)
    mask = ellipse_mask(*hw)

    tensor = preprocessor.mask_to_tensor(mask)
    back = preprocessor.map_to_original(tensor[0].numpy(), hw)

    assert tensor.shape == (1, 100, 100)
    assert set(np.unique(tensor.numpy())) <= {0.0, 1.0}
    assert back.shape == hw
    assert back.dtype == np.float32
    assert iou(back > 0.5, mask) > 0.95


def test_round_trip_resize_crop_zeroes_border():
    hw = (250, 333)
    preprocessor = Preprocessor(100, "resize_crop", crop_ratio=0.8)
    mask = np.ones(hw, dtype=bool)

    back = preprocessor.map_to_original(preprocessor.mask_to_tensor(mask)[0].numpy(), hw)

    # Short side 250 -> 125, long side int(125 * 333 / 250) = 166; the centre 100 x 100 is kept, which is
    # 80% of the height and 60% of the width of the original.
    kept_rows = np.flatnonzero(back[:, hw[1] // 2] > 0.5)
    kept_cols = np.flatnonzero(back[hw[0] // 2] > 0.5)
    assert abs(len(kept_rows) - 0.8 * hw[0]) <= 3
    assert abs(len(kept_cols) - 100 / 166 * hw[1]) <= 3
    assert back[0, 0] == 0.0
    assert back[-1, -1] == 0.0


@pytest.mark.parametrize("hw", [(250, 333), (333, 250), (77, 77)])
def test_resize_crop_matches_torchvision(hw):
    size, crop_ratio = 90, 0.875
    mask = np.random.default_rng(0).random(hw) > 0.5
    reference = transforms.Compose([
        transforms.Resize(round(size / crop_ratio), interpolation=transforms.InterpolationMode.NEAREST),
        transforms.CenterCrop(size),
    ])(Image.fromarray(mask.astype(np.uint8) * 255))

    tensor = Preprocessor(size, "resize_crop", crop_ratio).mask_to_tensor(mask)

    np.testing.assert_array_equal(tensor[0].numpy() > 0, np.asarray(reference) > 0)


def test_letterbox_padding_is_zero_after_normalisation():
    rgb = np.full((50, 200, 3), 255, dtype=np.uint8)
    preprocessor = Preprocessor(100, "letterbox")

    tensor = preprocessor.image_to_tensor(rgb)

    # 200 -> 100 wide, 50 -> 25 high, centred: rows 37..61 hold the image.
    assert tensor.shape == (3, 100, 100)
    assert float(tensor[:, :37].abs().max()) < 0.01
    assert float(tensor[:, 62:].abs().max()) < 0.01
    assert float(tensor[:, 40:60].min()) > 2.0


def test_normalisation_matches_torchvision():
    rgb = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    reference = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)(transforms.ToTensor()(rgb))

    tensor = Preprocessor(64).tensor_from_resized(rgb)

    assert tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, reference, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(Preprocessor(64).rgb_from_tensor(tensor), rgb)


@pytest.mark.parametrize("policy", ["resize", "letterbox", "resize_crop"])
def test_resize_rgb_shape_for_odd_sizes(policy):
    preprocessor = Preprocessor(99, policy)
    for hw in [(13, 250), (250, 13), (99, 99), (1000, 777)]:
        rgb = np.zeros(hw + (3,), dtype=np.uint8)
        assert preprocessor.resize_rgb(rgb).shape == (99, 99, 3)
        assert preprocessor.map_to_original(np.zeros((99, 99)), hw).shape == hw


def test_mask_any_rule_keeps_thin_lines():
    mask = np.zeros((400, 400), dtype=bool)
    mask[:, 201] = True
    preprocessor = Preprocessor(50)

    nearest = preprocessor.mask_to_tensor(mask)
    any_pixel = preprocessor.mask_to_tensor(mask, rule="any")

    assert float(any_pixel.sum()) == 50.0
    assert float(nearest.sum()) in (0.0, 50.0)


# --------------------------------------------------------------------------------------------------------
# Torch dataset and validation split


def test_image_dataset_items(tmp_path):
    make_mvtec(tmp_path)
    index = discover(tmp_path, "widget")
    dataset = ImageDataset(index.test, Preprocessor(40))

    items = [dataset[i] for i in range(len(dataset))]

    assert len(items) == 5
    for i, item in enumerate(items):
        assert item["image"].shape == (3, 40, 40)
        assert item["mask"].shape == (1, 40, 40)
        assert item["index"] == i
        assert item["original_hw"].tolist() == [24, 32]
        assert item["label"] == index.test[i].label
        if index.test[i].mask_path is None:
            assert float(item["mask"].sum()) == 0.0
        else:
            assert float(item["mask"].sum()) > 0.0


def test_image_dataset_bad_file_names_path(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG broken")
    dataset = ImageDataset([Sample(path, "test", 0, "good", None)], Preprocessor(32))

    with pytest.raises(DatasetError, match="bad.png"):
        dataset[0]


def test_split_validation_deterministic():
    samples = [Sample(Path(f"{i}.png"), "train", 0, "good", None) for i in range(20)]

    train, validation = split_validation(samples, 0.1, seed=3)
    train_again, validation_again = split_validation(samples, 0.1, seed=3)

    assert len(validation) == 2
    assert len(train) == 18
    assert validation == validation_again
    assert train == train_again
    assert not {s.path for s in train} & {s.path for s in validation}
    assert [s.path for s in train] == sorted((s.path for s in train), key=lambda p: int(p.stem))
    assert any(split_validation(samples, 0.1, seed)[1] != validation for seed in range(4, 10))


def test_split_validation_edge_cases():
    samples = [Sample(Path(f"{i}.png"), "train", 0, "good", None) for i in range(3)]

    assert split_validation(samples, 0.0, 0) == (samples, [])
    assert len(split_validation(samples, 0.01, 0)[1]) == 1
    assert split_validation(samples[:1], 0.5, 0) == (samples[:1], [])
