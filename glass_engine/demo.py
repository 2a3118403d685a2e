"""A small generated demo project: textured surface images with scratches, stains and cracks, and their masks.

Everything is drawn with numpy and OpenCV from one seed, so the same seed gives the same files. The images
are written in MVTec AD layout under `<project>/demo_data/<category>/` and then imported into the store like
any other dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from glass_engine.errors import OutputError
from glass_engine.fileio import atomic_write_bytes
from glass_engine.store import Project

logger = logging.getLogger(__name__)

DEMO_CATEGORY = "surface"
DEMO_DATA_DIR = "demo_data"
DEFECT_TYPES = ("scratch", "stain", "crack")


@dataclass(frozen=True)
class DemoSpec:
    """How many images of each kind the demo has, their side in pixels, and the seed."""

    train_good: int = 64
    test_good: int = 16
    defects_per_type: tuple[int, ...] = (6, 5, 5)
    size: int = 256
    seed: int = 0


def create_demo_project(folder: Path, spec: DemoSpec | None = None, name: str = "Demo project") -> Project:
    """Create a project in `folder`, write the demo images into it and import them; return the open project."""
    spec = spec or DemoSpec()
    project = Project.create(folder, name)
    try:
        root = write_demo_dataset(project.folder / DEMO_DATA_DIR, spec)

        from glass_engine.data import discover

        index = discover(root, DEMO_CATEGORY, layout="mvtec")
        project.import_index(index)
    except BaseException:
        project.close()
        raise
    return project


def write_demo_dataset(root: Path, spec: DemoSpec, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the demo images and masks in MVTec AD layout under `root/<category>`; return `root`."""
    rng = np.random.default_rng(spec.seed)
    category = Path(root) / DEMO_CATEGORY
    total = spec.train_good + spec.test_good + sum(spec.defects_per_type)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for i in range(spec.train_good):
        _write_png(category / "train" / "good" / f"{i:03d}.png", surface_texture(spec.size, rng))
        step()
    for i in range(spec.test_good):
        _write_png(category / "test" / "good" / f"{i:03d}.png", surface_texture(spec.size, rng))
        step()
    for defect_type, count in zip(DEFECT_TYPES, spec.defects_per_type):
        for i in range(count):
            image = surface_texture(spec.size, rng)
            image, mask = DEFECT_PAINTERS[defect_type](image, rng)
            _write_png(category / "test" / defect_type / f"{i:03d}.png", image)
            _write_png(category / "ground_truth" / defect_type / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
            step()
    logger.info("Wrote %d demo images to %s", total, category)
    return Path(root)


# --------------------------------------------------------------------------------------------------------
# Textures


def value_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Return smooth noise in [0, 1]: a random grid of `cells` values, upsampled with bicubic interpolation."""
    grid = rng.random((cells[0] + 1, cells[1] + 1)).astype(np.float32)
    return np.clip(cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _smooth_noise(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Return smooth noise in [0, 1], from the engine's Perlin noise when that module provides it."""
    try:
        from glass_engine.synthesis import perlin_noise  # type: ignore[attr-defined]
    except ImportError:
        return value_noise(shape, cells, rng)
    noise = np.asarray(perlin_noise(shape, cells, rng), dtype=np.float32)
    low, high = float(noise.min()), float(noise.max())
    return (noise - low) / (high - low) if high > low else np.zeros(shape, np.float32)


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, octaves: int = 4, base_cells: int = 4) -> np.ndarray:
    """Sum octaves of smooth noise with halving amplitude; the result is rescaled to [0, 1]."""
    total = np.zeros(shape, np.float32)
    amplitude, weight = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        total += amplitude * _smooth_noise(shape, (cells, cells), rng)
        weight += amplitude
        amplitude *= 0.5
    total /= weight
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def surface_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a brushed-metal-like RGB uint8 image: horizontal streaks over cloudy shading plus grain."""
    shape = (size, size)
    clouds = fractal_noise(shape, rng)
    streak_rows = rng.normal(0.0, 1.0, (size, 1)).astype(np.float32)
    streaks = cv2.GaussianBlur(np.repeat(streak_rows, size, axis=1), (0, 0), sigmaX=8.0, sigmaY=0.6)
    grain = rng.normal(0.0, 1.0, shape).astype(np.float32)

    gray = 0.55 + 0.18 * (clouds - 0.5) + 0.05 * streaks + 0.02 * grain
    tint = np.array([1.0, 0.98, 0.93], np.float32)  # a slightly warm grey, in RGB order
    rgb = np.clip(gray[..., None] * tint * 255.0, 0, 255)
    return rgb.astype(np.uint8)


# --------------------------------------------------------------------------------------------------------
# Defects: each painter returns the changed image and the bool mask of changed pixels.


def paint_scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a thin curved bright scratch (a quadratic Bezier curve of 2 to 3 px width)."""
    size = image.shape[0]
    start, control, end = (rng.uniform(0.1, 0.9, 2) * size for _ in range(3))
    t = np.linspace(0.0, 1.0, 80)[:, None]
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    points = np.round(curve).astype(np.int32).reshape(-1, 1, 2)

    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.polylines(mask, [points], isClosed=False, color=1, thickness=int(rng.integers(2, 4)), lineType=cv2.LINE_8)
    out = image.astype(np.float32)
    out[mask > 0] = out[mask > 0] * 0.4 + 0.6 * 245.0
    return out.astype(np.uint8), mask > 0


def paint_stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a dark brownish blob whose outline is an ellipse warped by noise."""
    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(0.25, 0.75, 2) * size
    rx, ry = rng.uniform(0.06, 0.14, 2) * size
    angle = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
    wobble = 0.9 * (value_noise((size, size), (5, 5), rng) - 0.5)
    mask = (u**2 + v**2) < (1.0 + wobble)

    out = image.astype(np.float32)
    stain = np.array([95.0, 70.0, 45.0], np.float32)  # brown, RGB
    out[mask] = out[mask] * 0.45 + stain * 0.55
    return out.astype(np.uint8), mask


def paint_crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a dark jagged crack: a random walk with one side branch, 1 to 2 px wide."""
    size = image.shape[0]
    mask = np.zeros(image.shape[:2], np.uint8)
    walks = [_random_walk(rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0, 2 * np.pi), 40, rng)]
    branch_start = walks[0][len(walks[0]) // 2]
    walks.append(_random_walk(branch_start, rng.uniform(0, 2 * np.pi), 15, rng))
    for walk in walks:
        points = np.clip(np.round(walk), 0, size - 1).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(mask, [points], isClosed=False, color=1, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_8)

    out = image.astype(np.float32)
    out[mask > 0] *= 0.25
    return out.astype(np.uint8), mask > 0


def _random_walk(start: np.ndarray, heading: float, steps: int, rng: np.random.Generator) -> np.ndarray:
    points = [np.asarray(start, np.float64)]
    for _ in range(steps):
        heading += rng.normal(0.0, 0.5)
        points.append(points[-1] + 3.0 * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(points)


DEFECT_PAINTERS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "scratch": paint_scratch,
    "stain": paint_stain,
    "crack": paint_crack,
}


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OutputError(f"Cannot encode demo image {path} as PNG.")
    atomic_write_bytes(path, encoded.tobytes())
