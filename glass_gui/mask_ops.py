"""Pixel operations of the mask editor, on numpy arrays only, so they are testable without a display.

Coordinates are image coordinates in pixels as floats: pixel (column x, row y) covers [x, x + 1) x [y, y + 1)
and its centre is (x + 0.5, y + 0.5). A shape covers a pixel when it covers the pixel's centre. Masks are
uint8 arrays of 0 and 1 with the image's height and width.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

Region = tuple[int, int, int, int]
"""Rows y0:y1 and columns x0:x1 of a rectangle in the mask, end exclusive, as (y0, y1, x0, x1)."""


def stamp_segment(mask: np.ndarray, start: tuple[float, float], end: tuple[float, float], radius: float,
                  value: int) -> Region | None:
    """Set to `value` every pixel whose centre lies within `radius` of the segment start-end.

    A segment of zero length stamps a disc. Returns the bounding region that was visited, or None when the
    brush lies entirely outside the mask.
    """
    height, width = mask.shape
    (x0, y0), (x1, y1) = start, end
    left = max(int(np.floor(min(x0, x1) - radius)), 0)
    right = min(int(np.ceil(max(x0, x1) + radius)) + 1, width)
    top = max(int(np.floor(min(y0, y1) - radius)), 0)
    bottom = min(int(np.ceil(max(y0, y1) + radius)) + 1, height)
    if left >= right or top >= bottom:
        return None

    ys, xs = np.mgrid[top:bottom, left:right]
    px, py = xs + 0.5, ys + 0.5
    dx, dy = x1 - x0, y1 - y0
    length_sq = dx * dx + dy * dy
    if length_sq == 0:
        t = np.zeros_like(px)
    else:
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / length_sq, 0.0, 1.0)
    dist_sq = (px - (x0 + t * dx)) ** 2 + (py - (y0 + t * dy)) ** 2
    inside = dist_sq <= radius * radius
    mask[top:bottom, left:right][inside] = value
    return top, bottom, left, right


def fill_polygon(mask: np.ndarray, points: list[tuple[float, float]], value: int) -> Region | None:
    """Set to `value` every pixel whose centre lies inside the polygon; return the visited region."""
    if len(points) < 3:
        return None
    # OpenCV puts pixel centres on integer coordinates, so shift by half a pixel; 8 fractional bits keep
    # sub-pixel vertex positions.
    shift = 8
    scaled = np.round((np.asarray(points, np.float64) - 0.5) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    region = _points_region(mask.shape, points)
    if region is None:
        return None
    cv2.fillPoly(mask, [scaled], int(value), lineType=cv2.LINE_8, shift=shift)
    return region


def fill_rectangle(mask: np.ndarray, corner_a: tuple[float, float], corner_b: tuple[float, float],
                   value: int) -> Region | None:
    """Set to `value` every pixel whose centre lies inside the axis-aligned rectangle; return that region."""
    height, width = mask.shape
    x_low, x_high = sorted((corner_a[0], corner_b[0]))
    y_low, y_high = sorted((corner_a[1], corner_b[1]))
    # Pixel x is inside when x_low <= x + 0.5 <= x_high.
    left = max(int(np.ceil(x_low - 0.5)), 0)
    right = min(int(np.floor(x_high - 0.5)) + 1, width)
    top = max(int(np.ceil(y_low - 0.5)), 0)
    bottom = min(int(np.floor(y_high - 0.5)) + 1, height)
    if left >= right or top >= bottom:
        return None
    mask[top:bottom, left:right] = value
    return top, bottom, left, right


def magic_wand(image: np.ndarray, seed: tuple[int, int], tolerance: int, connectivity: int = 4) -> np.ndarray:
    """Return the bool region connected to pixel `seed` (x, y) whose values differ from the seed's by at most
    `tolerance` in every channel (cv2.floodFill with a fixed range)."""
    height, width = image.shape[:2]
    x, y = seed
    region = np.zeros((height + 2, width + 2), np.uint8)
    if not (0 <= x < width and 0 <= y < height):
        return np.zeros((height, width), bool)
    channels = 1 if image.ndim == 2 else image.shape[2]
    difference = (tolerance,) * channels
    flags = connectivity | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    cv2.floodFill(np.ascontiguousarray(image), region, (int(x), int(y)), 0, difference, difference, flags)
    return region[1:-1, 1:-1].astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Return the mask with every enclosed background area filled."""
    return ndimage.binary_fill_holes(mask > 0).astype(np.uint8)


def changed_region(before: np.ndarray, after: np.ndarray) -> Region | None:
    """Return the bounding region of all pixels that differ, or None when the arrays are equal."""
    rows = np.flatnonzero((before != after).any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero((before[rows[0] : rows[-1] + 1] != after[rows[0] : rows[-1] + 1]).any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


def _points_region(shape: tuple[int, int], points: list[tuple[float, float]]) -> Region | None:
    array = np.asarray(points, np.float64)
    top = max(int(np.floor(array[:, 1].min())), 0)
    bottom = min(int(np.ceil(array[:, 1].max())) + 1, shape[0])
    left = max(int(np.floor(array[:, 0].min())), 0)
    right = min(int(np.ceil(array[:, 0].max())) + 1, shape[1])
    if left >= right or top >= bottom:
        return None
    return top, bottom, left, right
