"""Tests of local anomaly synthesis (glass_engine.synthesis): Perlin masks, textures and the LAS dataset."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from glass_engine.config import MethodConfig
from glass_engine.data import Preprocessor, Sample
from glass_engine.errors import ConfigError, TextureError
from glass_engine.synthesis import (
    AUGMENTATIONS,
    LASDataset,
    TextureSource,
    apply_augmentation,
    augment_texture,
    blend_anomaly,
    builtin_textures,
    combine_thresholds,
    foreground_mask,
    perlin_mask,
    perlin_noise,
    perlin_threshold,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def reference_perlin(shape, res, angles):
    """Scalar Perlin noise, one pixel at a time, from the textbook definition."""
    height, width = shape
    out = np.zeros(shape)
    for i in range(height):
        for j in range(width):
            y, x = i * res[0] / height, j * res[1] / width
            cy, cx = int(math.floor(y)), int(math.floor(x))
            fy, fx = y - cy, x - cx
            dots = {}
            for dy in (0, 1):
                for dx in (0, 1):
                    angle = angles[cy + dy, cx + dx]
                    dots[dy, dx] = math.cos(angle) * (fy - dy) + math.sin(angle) * (fx - dx)
            ty = 6 * fy**5 - 15 * fy**4 + 10 * fy**3
            tx = 6 * fx**5 - 15 * fx**4 + 10 * fx**3
            left = dots[0, 0] * (1 - ty) + dots[1, 0] * ty
            right = dots[0, 1] * (1 - ty) + dots[1, 1] * ty
            out[i, j] = math.sqrt(2) * (left * (1 - tx) + right * tx)
    return out


def brute_force_adaptive_max(mask, out_shape):
    height, width = mask.shape
    out = np.zeros(out_shape, dtype=np.float32)
    for i in range(out_shape[0]):
        y0, y1 = (i * height) // out_shape[0], -((-(i + 1) * height) // out_shape[0])
        for j in range(out_shape[1]):
            x0, x1 = (j * width) // out_shape[1], -((-(j + 1) * width) // out_shape[1])
            out[i, j] = mask[y0:y1, x0:x1].max()
    return out


# --------------------------------------------------------------------------------------------------------
# Perlin noise and masks


def test_perlin_matches_scalar_reference():
    shape, res = (13, 17), (3, 4)
    angles = 2 * math.pi * np.random.default_rng(5).random((res[0] + 1, res[1] + 1))

    noise = perlin_noise(shape, res, np.random.default_rng(5))

    np.testing.assert_allclose(noise, reference_perlin(shape, res, angles), atol=1e-5)


@pytest.mark.parametrize("res", [(1, 1), (4, 8), (32, 32), (3, 7)])
def test_perlin_odd_shape_bounded(res):
    noise = perlin_noise((250, 333), res, np.random.default_rng(0))

    assert noise.shape == (250, 333)
    assert noise.dtype == np.float32
    assert np.isfinite(noise).all()
    assert float(np.abs(noise).max()) <= 1.0 + 1e-5
    assert float(noise.std()) > 0.01


def test_perlin_same_seed_same_noise():
    first = perlin_noise((40, 50), (4, 2), np.random.default_rng(9))
    second = perlin_noise((40, 50), (4, 2), np.random.default_rng(9))

    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize(("image_shape", "feature_shape"), [((64, 64), (8, 8)), ((250, 333), (31, 41))])
def test_perlin_mask_pooling_and_binary(image_shape, feature_shape):
    for seed in range(5):
        mask_s, mask_l = perlin_mask(image_shape, feature_shape, np.random.default_rng(seed))

        assert mask_s.shape == feature_shape
        assert mask_l.shape == image_shape
        assert mask_s.dtype == np.float32
        assert mask_l.dtype == np.float32
        assert set(np.unique(mask_l)) <= {0.0, 1.0}
        assert mask_s.max() == 1.0
        np.testing.assert_array_equal(mask_s, brute_force_adaptive_max(mask_l, feature_shape))


def test_perlin_mask_respects_foreground():
    fg = np.zeros((64, 64), dtype=bool)
    fg[10:40, 5:30] = True

    for seed in range(10):
        mask_s, mask_l = perlin_mask((64, 64), (8, 8), np.random.default_rng(seed), fg_mask=fg)

        assert mask_l[~fg].max() == 0.0
        assert mask_l[fg].max() == 1.0
        assert mask_s.max() == 1.0


def test_perlin_mask_empty_foreground_falls_back(caplog):
    fg = np.zeros((32, 32), dtype=bool)

    with caplog.at_level(logging.WARNING, logger="glass_engine.synthesis"):
        mask_s, mask_l = perlin_mask((32, 32), (4, 4), np.random.default_rng(0), fg_mask=fg)

    assert mask_s.max() == 1.0
    assert mask_l.max() == 1.0
    assert "foreground mask is empty" in caplog.text


def test_perlin_mask_tiny_foreground_terminates(caplog):
    fg = np.zeros((32, 32), dtype=bool)
    fg[0, 0] = True

    with caplog.at_level(logging.WARNING, logger="glass_engine.synthesis"):
        mask_s, _ = perlin_mask((32, 32), (4, 4), np.random.default_rng(1), fg_mask=fg)

    assert mask_s.max() == 1.0


def test_perlin_mask_combinations_all_occur():
    shape = (48, 48)
    seen = {"union": 0, "intersection": 0, "first": 0}
    for seed in range(90):
        replay = np.random.default_rng(seed)
        first = perlin_threshold(shape, replay)
        second = perlin_threshold(shape, replay)
        draw = replay.random()
        if draw > 2 / 3:
            expected, mode = np.maximum(first, second), "union"
        elif draw > 1 / 3:
            expected, mode = first * second, "intersection"
        else:
            expected, mode = first, "first"
        if expected.max() == 0:
            continue  # perlin_mask retried with further draws

        _, mask_l = perlin_mask(shape, (6, 6), np.random.default_rng(seed))

        np.testing.assert_array_equal(mask_l, expected)
        seen[mode] += 1

    assert all(count >= 10 for count in seen.values()), seen


def test_combine_thresholds_by_hand():
    first = np.array([[1, 1, 0, 0]], dtype=np.float32)
    second = np.array([[1, 0, 1, 0]], dtype=np.float32)

    np.testing.assert_array_equal(combine_thresholds(first, second, 0.9), [[1, 1, 1, 0]])
    np.testing.assert_array_equal(combine_thresholds(first, second, 0.5), [[1, 0, 0, 0]])
    np.testing.assert_array_equal(combine_thresholds(first, second, 0.1), [[1, 1, 0, 0]])


def test_blend_formula_exact():
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(3, 8, 8, generator=generator)
    texture = torch.randn(3, 8, 8, generator=generator)
    mask = (torch.rand(1, 8, 8, generator=generator) > 0.5).float()
    beta = 0.3

    blended = blend_anomaly(image, texture, mask, beta)

    inside = mask.expand(3, 8, 8) > 0
    torch.testing.assert_close(blended[~inside], image[~inside])
    torch.testing.assert_close(blended[inside], 0.7 * texture[inside] + 0.3 * image[inside])


# --------------------------------------------------------------------------------------------------------
# Texture augmentation


def random_rgb(height=37, width=53, low=0, high=256, seed=0):
    return np.random.default_rng(seed).integers(low, high, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("count", [0, 1, 3, 9])
def test_augment_texture_shape_dtype(count):
    rgb = random_rgb()

    for seed in range(5):
        out = augment_texture(rgb, np.random.default_rng(seed), count=count)

        assert out.shape == rgb.shape
        assert out.dtype == np.uint8
    if count == 0:
        np.testing.assert_array_equal(augment_texture(rgb, np.random.default_rng(0), count=0), rgb)


def test_augment_texture_invalid_count():
    with pytest.raises(ValueError):
        augment_texture(random_rgb(), np.random.default_rng(0), count=10)


def test_augmentations_by_hand():
    rgb = random_rgb(low=20, high=200)
    rng = np.random.default_rng(0)

    np.testing.assert_array_equal(apply_augmentation(rgb, "hflip", rng), rgb[:, ::-1])
    np.testing.assert_array_equal(apply_augmentation(rgb, "vflip", rng), rgb[::-1])

    gray = apply_augmentation(rgb, "grayscale", rng)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    assert np.abs(gray[..., 0].astype(float) - luma).max() <= 1.0
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])

    brighter = apply_augmentation(rgb, "brightness", rng).astype(float)
    ratio = brighter.sum() / rgb.astype(float).sum()
    assert 0.79 <= ratio <= 1.21
    np.testing.assert_allclose(brighter, rgb * ratio, atol=1.5)

    contrast = apply_augmentation(rgb, "contrast", rng)
    assert abs(float(contrast.mean()) - float(rgb.mean())) < 2.0

    stretched = apply_augmentation(rgb, "autocontrast", rng)
    assert stretched.min(axis=(0, 1)).tolist() == [0, 0, 0]
    assert stretched.max(axis=(0, 1)).tolist() == [255, 255, 255]

    equalised = apply_augmentation(rgb, "equalize", rng)
    assert equalised.max() == 255

    assert apply_augmentation(rgb, "rotate", rng).shape == rgb.shape


def test_saturation_hue_keeps_gray_pixels():
    gray = np.repeat(random_rgb(seed=3)[..., :1], 3, axis=2)

    for seed in range(5):
        out = apply_augmentation(gray, "saturation_hue", np.random.default_rng(seed))
        assert np.abs(out.astype(int) - gray.astype(int)).max() <= 1


def test_augmentation_names_are_nine():
    assert len(AUGMENTATIONS) == len(set(AUGMENTATIONS)) == 9
    with pytest.raises(ValueError):
        apply_augmentation(random_rgb(), "sharpen", np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------------
# Texture sources


def test_texture_folder_missing(tmp_path):
    with pytest.raises(TextureError) as info:
        TextureSource.from_folder(tmp_path / "dtd")

    assert "dtd" in str(info.value)
    assert "built-in" in str(info.value)


def test_texture_folder_without_images(tmp_path):
    (tmp_path / "readme.txt").write_text("no textures", encoding="utf-8")
    (tmp_path / "empty.jpg").write_bytes(b"")

    with pytest.raises(TextureError, match="no image files"):
        TextureSource.from_folder(tmp_path)


def test_texture_folder_nested_any_case(tmp_path):
    (tmp_path / "images" / "banded").mkdir(parents=True)
    Image.fromarray(random_rgb()).save(tmp_path / "images" / "banded" / "a.JPG", format="JPEG")
    Image.fromarray(random_rgb(seed=1)).save(tmp_path / "b.Png", format="PNG")

    source = TextureSource.from_folder(tmp_path)
    texture = source.sample(np.random.default_rng(0))

    assert len(source) == 2
    assert texture.dtype == np.uint8
    assert texture.shape == (37, 53, 3)
    assert str(tmp_path) in source.describe()


def test_texture_folder_drops_undecodable(tmp_path, caplog):
    Image.fromarray(random_rgb()).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    source = TextureSource.from_folder(tmp_path)

    with caplog.at_level(logging.WARNING, logger="glass_engine.synthesis"):
        for seed in range(10):
            assert source.sample(np.random.default_rng(seed)).shape == (37, 53, 3)

    assert len(source) == 1
    assert "bad.png" in caplog.text


def test_texture_folder_all_undecodable(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    source = TextureSource.from_folder(tmp_path)

    with pytest.raises(TextureError, match="could be decoded"):
        source.sample(np.random.default_rng(0))


def test_builtin_textures_offline():
    source = TextureSource.builtin()

    texture = source.sample(np.random.default_rng(0))

    assert len(source) == 30
    assert texture.shape == (256, 256, 3)
    assert texture.dtype == np.uint8
    assert "built-in" in source.describe()
    assert all(float(t.std()) > 5.0 for t in builtin_textures())
    again = builtin_textures.__wrapped__(0)
    for first, second in zip(builtin_textures(), again):
        np.testing.assert_array_equal(first, second)


def test_shared_bark_textures():
    folder = SHARED / "textures_barkvn50" / "images"
    if not folder.is_dir():
        pytest.skip("shared datasets are not beside the repository")

    source = TextureSource.from_folder(folder)
    texture = source.sample(np.random.default_rng(0))

    assert len(source) == 150
    assert texture.ndim == 3
    assert texture.shape[2] == 3


# --------------------------------------------------------------------------------------------------------
# Foreground masks


def disk_image(bright_object: bool, size: int = 120) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size]
    disk = (y - 60) ** 2 + (x - 55) ** 2 <= 30**2
    noise = np.random.default_rng(0).integers(0, 20, (size, size))
    gray = np.where(disk == bright_object, 200, 40) + noise
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2), disk


@pytest.mark.parametrize("bright_object", [True, False])
def test_foreground_mask_finds_object(bright_object):
    rgb, disk = disk_image(bright_object)

    mask = foreground_mask(rgb)

    assert mask.dtype == bool
    overlap = (mask & disk).sum() / (mask | disk).sum()
    assert overlap > 0.95


def test_foreground_mask_flat_image_is_whole():
    assert foreground_mask(np.full((20, 30, 3), 90, dtype=np.uint8)).all()


def test_foreground_mask_unknown_method():
    with pytest.raises(ConfigError):
        foreground_mask(np.zeros((8, 8, 3), dtype=np.uint8), method="kmeans")


# --------------------------------------------------------------------------------------------------------
# LAS dataset


def make_images(folder: Path, count: int = 3, size: int = 64) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(random_rgb(size, size, seed=i)).save(path)
        samples.append(Sample(path, "train", 0, "good", None))
    return samples


def solid_texture_source(folder: Path, colour=(250, 10, 120)) -> TextureSource:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), colour, dtype=np.uint8)).save(folder / "solid.png")
    return TextureSource.from_folder(folder)


def test_las_item_blends_known_texture(tmp_path):
    colour = (250, 10, 120)
    samples = make_images(tmp_path / "images")
    method = MethodConfig(beta_mean=0.35, beta_std=0.0, rand_aug=False)
    preprocessor = Preprocessor(64)
    dataset = LASDataset(samples, preprocessor, solid_texture_source(tmp_path / "tex", colour), (8, 8), method, seed=1)

    item = dataset[1]

    texture = preprocessor.tensor_from_resized(np.full((64, 64, 3), colour, dtype=np.uint8))
    image, aug, mask_l = item["image"], item["aug"], item["mask_l"]
    assert image.shape == aug.shape == (3, 64, 64)
    assert mask_l.shape == (1, 64, 64)
    assert item["mask_s"].shape == (8, 8)
    assert item["beta"] == pytest.approx(0.35)
    inside = mask_l.expand(3, 64, 64) > 0
    assert inside.any()
    torch.testing.assert_close(aug[~inside], image[~inside])
    torch.testing.assert_close(aug[inside], 0.65 * texture[inside] + 0.35 * image[inside])
    pooled = mask_l[0].numpy().reshape(8, 8, 8, 8).max(axis=(1, 3))
    np.testing.assert_array_equal(item["mask_s"].numpy(), pooled)


def test_las_beta_is_clipped(tmp_path):
    samples = make_images(tmp_path / "images", count=1)
    method = MethodConfig(beta_mean=0.95, beta_std=0.0, rand_aug=False)
    dataset = LASDataset(samples, Preprocessor(64), TextureSource.builtin(), (8, 8), method, seed=0)

    assert dataset[0]["beta"] == pytest.approx(0.8)


def test_las_reproducible_per_epoch(tmp_path):
    samples = make_images(tmp_path / "images")
    dataset = LASDataset(samples, Preprocessor(64), TextureSource.builtin(), (8, 8), MethodConfig(), seed=7)

    later = dataset[2]["aug"]
    first = dataset[0]["aug"]
    again = dataset[2]["aug"]
    dataset.set_epoch(1)
    next_epoch = dataset[2]["aug"]

    torch.testing.assert_close(later, again)
    assert not torch.equal(first, later)
    assert not torch.equal(next_epoch, later)


def test_las_foreground_files(tmp_path, caplog):
    samples = make_images(tmp_path / "images", count=2)
    fg = np.zeros((64, 64), dtype=np.uint8)
    fg[:, :32] = 255
    Image.fromarray(fg).save(tmp_path / "fg.png")
    samples[0].fg_mask_path = tmp_path / "fg.png"
    dataset = LASDataset(
        samples, Preprocessor(64), TextureSource.builtin(), (8, 8), MethodConfig(), seed=0, foreground="files"
    )

    with caplog.at_level(logging.WARNING, logger="glass_engine.synthesis"):
        masks = []
        for epoch in range(3):
            dataset.set_epoch(epoch)
            masks.append(dataset[0]["mask_l"])
            dataset[1]

    for mask in masks:
        assert float(mask[0, :, 32:].max()) == 0.0
        assert float(mask.max()) == 1.0
    assert caplog.text.count("No foreground mask file") == 1


def test_las_foreground_binarize(tmp_path):
    rgb, disk = disk_image(bright_object=True, size=120)
    Image.fromarray(rgb).save(tmp_path / "disk.png")
    samples = [Sample(tmp_path / "disk.png", "train", 0, "good", None)]
    dataset = LASDataset(
        samples, Preprocessor(120), TextureSource.builtin(), (15, 15), MethodConfig(), seed=0, foreground="binarize"
    )

    for epoch in range(3):
        dataset.set_epoch(epoch)
        mask_l = dataset[0]["mask_l"][0].numpy() > 0
        outside = ~foreground_mask(rgb)
        assert not (mask_l & outside).any()
        assert mask_l.any()


def test_las_rejects_unknown_foreground(tmp_path):
    samples = make_images(tmp_path / "images", count=1)

    with pytest.raises(ConfigError, match="edges"):
        LASDataset(samples, Preprocessor(64), TextureSource.builtin(), (8, 8), MethodConfig(), 0, foreground="edges")


def test_las_random_augmentation_odd_size(tmp_path):
    samples = make_images(tmp_path / "images", count=1, size=70)
    dataset = LASDataset(samples, Preprocessor(75, "letterbox"), TextureSource.builtin(), (10, 10), MethodConfig(), 0)

    item = dataset[0]

    assert item["aug"].shape == (3, 75, 75)
    assert item["mask_s"].shape == (10, 10)
    assert torch.isfinite(item["aug"]).all()
