"""Image- and pixel-level metrics of anomaly detection: AUROC, AP, F1 threshold, exact AUPRO and official PRO.

Conventions used throughout:

* A label or mask value of True (or 1) means defective. A score at or above a threshold is a defect
  decision (`score >= threshold` is NG).
* A metric that is undefined for the data is None, never 0: image metrics when the labels contain one
  class only, pixel metrics when no image had a ground-truth mask or the masks contain one class only.
  Each such case logs a warning.
* PRO regions are the 8-connected components of each ground-truth mask.

Two PRO variants exist. `aupro_exact` integrates the PRO curve exactly at every distinct score value up to
FPR = `fpr_limit` and divides the area by the limit. `pro_official` reproduces `compute_pro` of the
official GLASS code (cqylunlun/GLASS, metrics.py): 200 equally spaced thresholds, a 5x5 dilation of the
binarised map before the region overlap, points with FPR < 0.3 rescaled to [0, 1] and integrated with
`sklearn.metrics.auc`. The two give different numbers, so a report should name the variant it shows.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from skimage import measure
from sklearn import metrics as sk_metrics

logger = logging.getLogger(__name__)

PRO_FPR_LIMIT = 0.3
"""Default upper FPR bound of the PRO integral, as in the official GLASS code."""

OFFICIAL_PRO_THRESHOLDS = 200
OFFICIAL_PRO_DILATION = 5
"""Side in pixels of the square structuring element that the official code dilates the binary map with."""

MAX_CURVE_POINTS = 1000

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_FLOAT16_KEY_COUNT = 1 << 16


# ---------------------------------------------------------------------------------------------------------
# Input checks


def _as_scores_and_labels(scores: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    score_array = np.asarray(scores, dtype=np.float64).ravel()
    label_array = _as_binary(labels, what)
    if score_array.shape != label_array.shape:
        raise ValueError(
            f"{what}: {score_array.size} scores but {label_array.size} labels. Pass one label per score."
        )
    if score_array.size == 0:
        raise ValueError(f"{what}: no scores given. Evaluate at least one image.")
    non_finite = int(np.count_nonzero(~np.isfinite(score_array)))
    if non_finite:
        raise ValueError(
            f"{what}: {non_finite} of {score_array.size} scores are NaN or infinite. "
            "Check the model output for overflow or an empty input."
        )
    return score_array, label_array


def _as_binary(labels: Any, what: str) -> np.ndarray:
    """Return labels as a flat bool array. Accepts bool or the integers 0 and 1."""
    label_array = np.asarray(labels).ravel()
    if label_array.dtype == bool:
        return label_array
    invalid = ~np.isin(label_array, (0, 1))
    if np.any(invalid):
        example = label_array[invalid][0]
        raise ValueError(f"{what}: labels must be 0 (good) or 1 (defective), found {example!r}.")
    return label_array.astype(bool)


def _has_both_classes(positives: int, negatives: int, what: str) -> bool:
    if positives > 0 and negatives > 0:
        return True
    present = "defective" if positives > 0 else "good"
    logger.warning(
        "%s: all %d samples are %s, so AUROC, AP and PRO are undefined and reported as None.",
        what,
        positives + negatives,
        present,
    )
    return False


def _as_map_stack(maps: Any, masks: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (N, H, W) maps and bool masks of the same shape; a single (H, W) pair becomes N = 1."""
    map_stack = np.asarray(maps)
    mask_stack = np.asarray(masks)
    if map_stack.ndim == 2:
        map_stack = map_stack[np.newaxis]
    if mask_stack.ndim == 2:
        mask_stack = mask_stack[np.newaxis]
    if map_stack.ndim != 3:
        raise ValueError(f"Anomaly maps must have shape (N, H, W), got {map_stack.shape}.")
    if mask_stack.shape != map_stack.shape:
        raise ValueError(
            f"Masks have shape {mask_stack.shape} but anomaly maps have {map_stack.shape}. "
            "Resize the masks to the map size with nearest-neighbour interpolation."
        )
    if not np.issubdtype(map_stack.dtype, np.floating):
        map_stack = map_stack.astype(np.float64)
    # min and max propagate NaN, so two reductions find NaN and infinity without a full-size temporary.
    if map_stack.size and not (np.isfinite(map_stack.min()) and np.isfinite(map_stack.max())):
        raise ValueError("Anomaly maps contain NaN or infinite values. Check the model output.")
    return map_stack, mask_stack.astype(bool, copy=False)


# ---------------------------------------------------------------------------------------------------------
# Image level


def image_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Compute image AUROC and average precision (sklearn definitions).

    Returns {"image_auroc": None, "image_ap": None} with a logged warning when the labels contain one
    class only.
    """
    score_array, label_array = _as_scores_and_labels(scores, labels, "Image metrics")
    positives = int(label_array.sum())
    if not _has_both_classes(positives, label_array.size - positives, "Image metrics"):
        return {"image_auroc": None, "image_ap": None}

    return {
        "image_auroc": float(sk_metrics.roc_auc_score(label_array, score_array)),
        "image_ap": float(sk_metrics.average_precision_score(label_array, score_array)),
    }


def image_curves(scores: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, list] | None]:
    """Return the image-level ROC and precision-recall curve points as lists.

    `roc` has `fpr`, `tpr` and `thresholds`; its first point (0, 0) has threshold None because it lies
    above every score. `pr` has `precision`, `recall` and `thresholds` as sklearn returns them: recall
    falls to 0, and the final point (recall 0, precision 1) has no threshold, so `thresholds` is one
    entry shorter. Both curves are None, with a warning, when the labels contain one class only.
    """
    score_array, label_array = _as_scores_and_labels(scores, labels, "Image curves")
    positives = int(label_array.sum())
    if not _has_both_classes(positives, label_array.size - positives, "Image curves"):
        return {"roc": None, "pr": None}

    fpr, tpr, roc_thresholds = sk_metrics.roc_curve(label_array, score_array)
    precision, recall, pr_thresholds = sk_metrics.precision_recall_curve(label_array, score_array)
    return {
        "roc": {
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": [float(t) if np.isfinite(t) else None for t in roc_thresholds],
        },
        "pr": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "thresholds": pr_thresholds.tolist(),
        },
    }


def f1_optimal_threshold(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """Find the score threshold with the maximum F1 when `score >= threshold` is a defect decision.

    Candidate thresholds are the distinct scores. Among thresholds with equal F1 the highest wins, which
    flags the fewest images. Returns `threshold`, `f1`, `precision` and `recall`; all are None, with a
    warning, when no label is defective, because F1 is then undefined.
    """
    score_array, label_array = _as_scores_and_labels(scores, labels, "F1 threshold")
    positives = int(label_array.sum())
    if positives == 0:
        logger.warning("F1 threshold: no sample is labelled defective, so F1 is undefined and reported as None.")
        return {"threshold": None, "f1": None, "precision": None, "recall": None}

    order = np.argsort(-score_array, kind="stable")
    sorted_scores = score_array[order]
    true_positives = np.cumsum(label_array[order])
    run_ends = _run_ends(sorted_scores)
    tp = true_positives[run_ends]
    flagged = run_ends + 1

    f1 = 2.0 * tp / (flagged + positives)
    best = int(np.argmax(f1))
    return {
        "threshold": float(sorted_scores[run_ends[best]]),
        "f1": float(f1[best]),
        "precision": float(tp[best] / flagged[best]),
        "recall": float(tp[best] / positives),
    }


def confusion_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int | float | None]:
    """Count decisions at `threshold` (`score >= threshold` is defective) and derive the usual ratios.

    A ratio whose denominator is 0 is None: precision when nothing is flagged, recall when no label is
    defective, F1 when both are the case.
    """
    score_array, label_array = _as_scores_and_labels(scores, labels, "Confusion matrix")
    flagged = score_array >= threshold
    tp = int(np.count_nonzero(flagged & label_array))
    fp = int(np.count_nonzero(flagged & ~label_array))
    fn = int(np.count_nonzero(~flagged & label_array))
    tn = int(label_array.size - tp - fp - fn)

    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, label_array.size),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _run_ends(sorted_values: np.ndarray) -> np.ndarray:
    """Return the index of the last element of each run of equal values in a sorted array."""
    return np.r_[np.flatnonzero(sorted_values[1:] != sorted_values[:-1]), sorted_values.size - 1]


# ---------------------------------------------------------------------------------------------------------
# Curves and areas shared by the pixel metrics


@dataclass
class _ScoreTable:
    """Pixel counts per distinct score value, highest value first.

    `region_overlap[i]` is the sum over defect pixels with score `values[i]` of 1 / (size of their region),
    so its cumulative sum divided by `n_regions` is the PRO at that threshold.
    """

    values: np.ndarray
    negatives: np.ndarray
    positives: np.ndarray
    region_overlap: np.ndarray
    n_regions: int

    def roc_points(self) -> tuple[np.ndarray, np.ndarray]:
        fpr = np.r_[0.0, np.cumsum(self.negatives) / self.negatives.sum()]
        tpr = np.r_[0.0, np.cumsum(self.positives) / self.positives.sum()]
        return fpr, tpr

    def pr_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Return recall and precision at each threshold, highest threshold first (sklearn's definitions)."""
        true_positives = np.cumsum(self.positives)
        flagged = true_positives + np.cumsum(self.negatives)
        return true_positives / true_positives[-1], true_positives / flagged

    def pro_points(self) -> tuple[np.ndarray, np.ndarray]:
        fpr = np.r_[0.0, np.cumsum(self.negatives) / self.negatives.sum()]
        pro = np.r_[0.0, np.cumsum(self.region_overlap) / self.n_regions]
        return fpr, pro

    def auroc(self) -> float:
        fpr, tpr = self.roc_points()
        return _polyline_area(fpr[:-1], fpr[1:], tpr[:-1], tpr[1:], limit=1.0)

    def average_precision(self) -> float:
        recall, precision = self.pr_points()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def aupro(self, fpr_limit: float) -> float:
        fpr, pro = self.pro_points()
        return _polyline_area(fpr[:-1], fpr[1:], pro[:-1], pro[1:], fpr_limit) / fpr_limit


def _polyline_area(
    x_start: np.ndarray, x_end: np.ndarray, y_start: np.ndarray, y_end: np.ndarray, limit: float
) -> float:
    """Integrate straight segments (x ascending) with the trapezoid rule from x = 0 up to exactly `limit`.

    The segment that crosses `limit` is cut there, with y interpolated linearly. Vertical segments add 0.
    """
    crossing = (x_start < limit) & (x_end > limit)
    cut_x_end = np.minimum(x_end, limit)
    cut_x_start = np.minimum(x_start, limit)
    cut_y_end = np.array(y_end, dtype=np.float64, copy=True)
    fraction = (limit - x_start[crossing]) / (x_end[crossing] - x_start[crossing])
    cut_y_end[crossing] = y_start[crossing] + fraction * (y_end[crossing] - y_start[crossing])
    return float(np.sum((cut_x_end - cut_x_start) * (y_start + cut_y_end) / 2.0))


def _curve_up_to(x: np.ndarray, y: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a polyline with ascending x at x = limit, ending with the linearly interpolated point."""
    inside = int(np.searchsorted(x, limit, side="right"))
    if inside >= x.size:
        return x, y
    x_cut = x[:inside]
    y_cut = y[:inside]
    if x_cut[-1] < limit:
        fraction = (limit - x[inside - 1]) / (x[inside] - x[inside - 1])
        x_cut = np.r_[x_cut, limit]
        y_cut = np.r_[y_cut, y[inside - 1] + fraction * (y[inside] - y[inside - 1])]
    return x_cut, y_cut


def _downsample_curve(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[list[float], list[float]]:
    """Keep at most `max_points` points, spaced evenly along the curve's L1 path length, ends included."""
    if x.size <= max_points:
        return x.tolist(), y.tolist()
    path = np.r_[0.0, np.cumsum(np.abs(np.diff(x)) + np.abs(np.diff(y)))]
    targets = np.linspace(0.0, path[-1], max_points - 2)
    picked = np.searchsorted(path, targets, side="left").clip(0, x.size - 1)
    picked = np.unique(np.r_[0, picked, x.size - 1])
    return x[picked].tolist(), y[picked].tolist()


# ---------------------------------------------------------------------------------------------------------
# Exact AUPRO


def aupro_exact(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = PRO_FPR_LIMIT) -> float | None:
    """Compute the exact area under the PRO curve from FPR 0 to `fpr_limit`, divided by `fpr_limit`.

    Regions are the 8-connected components of each mask. At threshold t, FPR is the share of all
    background pixels with score >= t, and PRO is the mean over all regions of the share of the region's
    pixels with score >= t. The curve starts at (0, 0) and has one point per distinct score, so ties move
    together. The trapezoid rule integrates it up to exactly `fpr_limit`, and the last segment is cut
    there by linear interpolation.

    Between two distinct defect scores PRO is constant, so the background pixels there form one
    horizontal segment whose length is a count. Only the background scores above the `fpr_limit`
    quantile are sorted (after an O(n) partition) to get these counts, which makes this much faster than
    thresholding many times. Returns None, with a warning, when the masks contain no defect pixel or no
    background pixel.
    """
    _check_fpr_limit(fpr_limit)
    map_stack, mask_stack = _as_map_stack(maps, masks)

    defect_scores, defect_weights, n_regions = _defect_pixel_weights(map_stack, mask_stack)
    background_scores = map_stack[~mask_stack]
    if not _has_both_classes(defect_scores.size, background_scores.size, "AUPRO"):
        return None

    background_total = background_scores.size
    top_background = _top_background_scores(background_scores, fpr_limit)
    fpr, pro = _pro_polyline(defect_scores, defect_weights / n_regions, top_background, background_total)
    return _polyline_area(fpr[:-1], fpr[1:], pro[:-1], pro[1:], fpr_limit) / fpr_limit


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit is {fpr_limit}; it must be in (0, 1], for example 0.3.")


def _defect_pixel_weights(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Return the scores of all defect pixels, 1 / (size of their region) for each, and the region count."""
    scores: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    n_regions = 0
    for amap, mask in zip(maps, masks):
        if not mask.any():
            continue
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel())
        region_of_pixel = labels[mask]
        scores.append(amap[mask])
        weights.append(1.0 / sizes[region_of_pixel])
        n_regions += count
    if not scores:
        return np.empty(0), np.empty(0), 0
    return np.concatenate(scores), np.concatenate(weights), n_regions


def _top_background_scores(background_scores: np.ndarray, fpr_limit: float) -> np.ndarray:
    """Return, sorted ascending, the background scores at or above the one that first passes `fpr_limit`.

    Partitions `background_scores` in place, which saves a copy of the largest array.
    """
    total = background_scores.size

    # Two pixels more than the limit's share guarantee a score with FPR > fpr_limit despite float rounding.
    needed = min(total, math.floor(fpr_limit * total) + 2)
    background_scores.partition(total - needed)
    cutoff = background_scores[total - needed]
    top = background_scores[background_scores >= cutoff]
    top.sort()
    return top


def _pro_polyline(
    defect_scores: np.ndarray, defect_weights: np.ndarray, top_background: np.ndarray, background_total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the PRO curve's corner points (FPR ascending) from (0, 0) to FPR 1.

    For each distinct defect score v, descending, the curve runs horizontally to (FPR(> v), PRO(> v)) and
    then to (FPR(>= v), PRO(>= v)), which is a diagonal when background pixels tie with v. Defect scores
    below every score of `top_background` get FPR values past the limit, which is all the caller needs.
    """
    order = np.argsort(defect_scores, kind="stable")[::-1]
    descending = defect_scores[order]
    cumulative = np.cumsum(defect_weights[order])
    run_ends = _run_ends(descending)
    levels = descending[run_ends]
    pro_at_or_above = cumulative[run_ends]
    pro_above = np.r_[0.0, pro_at_or_above[:-1]]

    count = top_background.size
    fpr_above = (count - np.searchsorted(top_background, levels, side="right")) / background_total
    fpr_at_or_above = (count - np.searchsorted(top_background, levels, side="left")) / background_total

    fpr = np.r_[0.0, np.column_stack([fpr_above, fpr_at_or_above]).ravel(), 1.0]
    pro = np.r_[0.0, np.column_stack([pro_above, pro_at_or_above]).ravel(), pro_at_or_above[-1]]
    return fpr, pro


# ---------------------------------------------------------------------------------------------------------
# Official-code PRO


def pro_official(
    maps: np.ndarray, masks: np.ndarray, num_th: int = OFFICIAL_PRO_THRESHOLDS, fpr_limit: float = PRO_FPR_LIMIT
) -> float | None:
    """Compute the official-code PRO (200 thresholds) of `compute_pro` in cqylunlun/GLASS metrics.py.

    Steps as in that code: thresholds `np.arange(min, max, (max - min) / num_th)` over all maps; a pixel
    is positive when its score is > threshold. For PRO the binary map is dilated with a 5x5 rectangle
    (`cv2.dilate`), and PRO is the mean over all regions (`skimage.measure.label`, 8-connected) of the
    dilated overlap ratio. FPR counts the undilated positives outside the masks over all background
    pixels. Points with FPR < `fpr_limit` are kept, their FPR is min-max rescaled to [0, 1], and
    `sklearn.metrics.auc` integrates PRO over it.

    The official code min-max normalises the maps first. The binarisations match without normalisation,
    apart from float rounding at a threshold. As there, the thresholds have the maps' dtype. Region overlaps come from `np.bincount` of the label image
    in place of `regionprops` coordinates, which gives the same counts. Returns None, with a warning,
    where the official code would fail: constant maps, no region, or fewer than 2 points below the limit.
    """
    _check_fpr_limit(fpr_limit)
    map_stack, mask_stack = _as_map_stack(maps, masks)

    def pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return zip(map_stack, mask_stack)

    return _official_pro(pairs, map_stack.min(), map_stack.max(), num_th, fpr_limit)


def _official_pro(
    pairs: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
    low: np.floating,
    high: np.floating,
    num_th: int,
    fpr_limit: float,
) -> float | None:
    """Run the official PRO steps over (map, mask) pairs. The dtype of `low` and `high` is the thresholds' dtype."""
    if not high > low:
        logger.warning("Official PRO: every anomaly score equals %g, so there are no thresholds. Reporting None.", low)
        return None

    thresholds = np.arange(low, high, (high - low) / num_th)
    false_positives = np.zeros(thresholds.size, dtype=np.int64)
    overlap_sums = np.zeros(thresholds.size, dtype=np.float64)
    background_total = 0
    n_regions = 0
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (OFFICIAL_PRO_DILATION, OFFICIAL_PRO_DILATION))

    for amap, mask in pairs():
        background = ~mask
        background_total += int(np.count_nonzero(background))
        labels, count = measure.label(mask, connectivity=2, return_num=True)
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        n_regions += count
        for index, threshold in enumerate(thresholds):
            binary = amap > threshold
            false_positives[index] += np.count_nonzero(binary & background)
            if count:
                dilated = cv2.dilate(binary.view(np.uint8), kernel).view(bool)
                hits = np.bincount(labels[dilated], minlength=count + 1)[1:]
                overlap_sums[index] += float(np.sum(hits / areas))

    if n_regions == 0 or background_total == 0:
        _has_both_classes(n_regions, background_total, "Official PRO")
        return None

    fpr = false_positives / background_total
    pro = overlap_sums / n_regions
    kept = fpr < fpr_limit
    if np.count_nonzero(kept) < 2:
        logger.warning(
            "Official PRO: only %d of %d thresholds give FPR < %g, too few for an area. Reporting None.",
            int(np.count_nonzero(kept)),
            thresholds.size,
            fpr_limit,
        )
        return None
    fpr_kept = fpr[kept]
    # The 1e-10 is the official code's guard against a zero FPR range.
    rescaled = (fpr_kept - fpr_kept.min()) / (fpr_kept.max() - fpr_kept.min() + 1e-10)
    return float(sk_metrics.auc(rescaled, pro[kept]))


# ---------------------------------------------------------------------------------------------------------
# Streaming pixel metrics


def _float16_sort_keys(values: np.ndarray) -> np.ndarray:
    """Map float16 values to uint16 keys whose integer order is the value order (sign-magnitude flip)."""
    bits = values.view(np.uint16)
    return np.where(bits >= 0x8000, ~bits, bits | 0x8000).astype(np.uint16, copy=False)


def _float16_key_values() -> np.ndarray:
    """Return the float64 value of each of the 65536 sort keys (NaN patterns included, never counted)."""
    keys = np.arange(_FLOAT16_KEY_COUNT, dtype=np.int64)
    bits = np.where(keys >= 0x8000, keys - 0x8000, 0xFFFF - keys).astype(np.uint16)
    return bits.view(np.float16).astype(np.float64)


class PixelAccumulator:
    """Collects anomaly maps and masks one image at a time and computes pixel AUROC, AP and PRO.

    Maps are stored as float16 in preallocated blocks of `block_images` images, and masks are bit-packed.
    Storage is 2.125 bytes per pixel: 2 for the map and 1/8 for the mask. Histograms over the 65536
    float16 values (three arrays of 65536 eight-byte entries, 1.5 MiB) are updated in `add`, so
    `compute` and `curves` need no per-pixel memory. Only the official-code PRO reads the stored maps
    again, one image at a time.

    The metrics are exact for the float16 values. Rounding to float16 has a relative step of 2**-11
    (about 0.0005 near 1), and scores that round to the same value count as ties. Scores beyond the float16
    range (+-65504) are clipped, with a warning. A missing mask (None) means the image has no defect pixel.
    Pixel metrics are None when no image had a mask.
    """

    def __init__(self, block_images: int = 32) -> None:
        if block_images < 1:
            raise ValueError(f"block_images is {block_images}; it must be at least 1.")
        self._block_images = block_images
        self._shape: tuple[int, int] | None = None
        self._map_blocks: list[np.ndarray] = []
        self._mask_blocks: list[np.ndarray] = []
        self._count = 0
        self._has_masks = False
        self._clip_warned = False
        self._negatives = np.zeros(_FLOAT16_KEY_COUNT, dtype=np.int64)
        self._positives = np.zeros(_FLOAT16_KEY_COUNT, dtype=np.int64)
        self._region_overlap = np.zeros(_FLOAT16_KEY_COUNT, dtype=np.float64)
        self._n_regions = 0
        self._low = np.float32(np.inf)
        self._high = np.float32(-np.inf)

    def __len__(self) -> int:
        return self._count

    @property
    def has_masks(self) -> bool:
        """True when at least one added image came with a ground-truth mask."""
        return self._has_masks

    @property
    def shape(self) -> tuple[int, int] | None:
        """(H, W) of the maps, fixed by the first `add`, or None before it."""
        return self._shape

    def add(self, anomaly_map: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add the (H, W) anomaly map of one image and its defect mask (nonzero = defect), or None."""
        amap = self._checked_map(anomaly_map)
        defect = None if mask is None else self._checked_mask(mask, amap.shape)

        map16 = amap.astype(np.float16)
        # -0.0 and +0.0 are one threshold but have different bit patterns, so fold them.
        map16[map16 == 0] = 0
        self._low = min(self._low, map16.min().astype(np.float32))
        self._high = max(self._high, map16.max().astype(np.float32))
        self._update_histograms(map16, defect)
        self._store(map16, defect)

    def _checked_map(self, anomaly_map: np.ndarray) -> np.ndarray:
        amap = np.asarray(anomaly_map)
        if amap.ndim != 2:
            raise ValueError(f"Anomaly map {self._count} has shape {amap.shape}; pass one (H, W) map per call.")
        if self._shape is not None and amap.shape != self._shape:
            raise ValueError(
                f"Anomaly map {self._count} has shape {amap.shape} but earlier maps have {self._shape}. "
                "Resize all maps to one size before adding them."
            )
        if not np.all(np.isfinite(amap)):
            raise ValueError(f"Anomaly map {self._count} contains NaN or infinite values. Check the model output.")
        if np.any(np.abs(amap) > _FLOAT16_MAX):
            if not self._clip_warned:
                logger.warning(
                    "Anomaly map %d has scores beyond the float16 range +-%g; they are clipped and tie at the limit.",
                    self._count,
                    _FLOAT16_MAX,
                )
                self._clip_warned = True
            amap = np.clip(amap, -_FLOAT16_MAX, _FLOAT16_MAX)
        return amap

    def _checked_mask(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        defect = np.asarray(mask)
        if defect.shape != shape:
            raise ValueError(
                f"Mask {self._count} has shape {defect.shape} but its anomaly map has {shape}. "
                "Resize the mask with nearest-neighbour interpolation."
            )
        return defect.astype(bool, copy=False)

    def _update_histograms(self, map16: np.ndarray, defect: np.ndarray | None) -> None:
        keys = _float16_sort_keys(map16.ravel())
        if defect is None or not defect.any():
            self._negatives += np.bincount(keys, minlength=_FLOAT16_KEY_COUNT)
            return

        flat_defect = defect.ravel()
        labels, count = ndimage.label(defect, structure=_EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel())
        defect_keys = keys[flat_defect]
        self._negatives += np.bincount(keys[~flat_defect], minlength=_FLOAT16_KEY_COUNT)
        self._positives += np.bincount(defect_keys, minlength=_FLOAT16_KEY_COUNT)
        weights = 1.0 / sizes[labels.ravel()[flat_defect]]
        self._region_overlap += np.bincount(defect_keys, weights=weights, minlength=_FLOAT16_KEY_COUNT)
        self._n_regions += count

    def _store(self, map16: np.ndarray, defect: np.ndarray | None) -> None:
        if self._shape is None:
            self._shape = (int(map16.shape[0]), int(map16.shape[1]))
        slot = self._count % self._block_images
        if slot == 0:
            height, width = self._shape
            self._map_blocks.append(np.empty((self._block_images, height, width), dtype=np.float16))
            packed_length = (height * width + 7) // 8
            self._mask_blocks.append(np.zeros((self._block_images, packed_length), dtype=np.uint8))
        self._map_blocks[-1][slot] = map16
        if defect is not None:
            self._mask_blocks[-1][slot] = np.packbits(defect.ravel())
            self._has_masks = True
        self._count += 1

    def iter_pairs(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield each stored (map as float32, mask as bool) pair in the order added."""
        if self._shape is None:
            return
        height, width = self._shape
        for index in range(self._count):
            block, slot = divmod(index, self._block_images)
            amap = self._map_blocks[block][slot].astype(np.float32)
            packed = self._mask_blocks[block][slot]
            mask = np.unpackbits(packed, count=height * width).reshape(height, width).view(bool)
            yield amap, mask

    def _table(self) -> _ScoreTable | None:
        """Return the score table, or None (with a warning) when pixel metrics are not available."""
        if not self._has_masks:
            logger.info("Pixel metrics: no image has a ground-truth mask, so they are not available.")
            return None
        positives = int(self._positives.sum())
        if not _has_both_classes(positives, int(self._negatives.sum()), "Pixel metrics"):
            return None

        present = np.flatnonzero((self._negatives + self._positives) > 0)[::-1]
        return _ScoreTable(
            values=_float16_key_values()[present],
            negatives=self._negatives[present],
            positives=self._positives[present],
            region_overlap=self._region_overlap[present],
            n_regions=self._n_regions,
        )

    def compute(self, fpr_limit: float = PRO_FPR_LIMIT, with_official_pro: bool = True) -> dict[str, float | None]:
        """Compute `pixel_auroc`, `pixel_ap`, `pixel_aupro` (exact) and `pixel_pro_official`.

        All four are None when no image had a mask or the masks contain one class only.
        `pixel_pro_official` is also None when `with_official_pro` is False. It is the slow one, with
        200 thresholds times one dilation per image.
        """
        _check_fpr_limit(fpr_limit)
        result: dict[str, float | None] = dict.fromkeys(("pixel_auroc", "pixel_ap", "pixel_aupro", "pixel_pro_official"))
        table = self._table()
        if table is None:
            return result

        result["pixel_auroc"] = table.auroc()
        result["pixel_ap"] = table.average_precision()
        result["pixel_aupro"] = table.aupro(fpr_limit)
        if with_official_pro:
            result["pixel_pro_official"] = _official_pro(
                self.iter_pairs, self._low, self._high, OFFICIAL_PRO_THRESHOLDS, fpr_limit
            )
        return result

    def curves(self, fpr_limit: float = PRO_FPR_LIMIT, max_points: int = MAX_CURVE_POINTS) -> dict[str, dict] | None:
        """Return pixel ROC, precision-recall and PRO curve points, each at most `max_points` long.

        Keys: `roc` {`fpr`, `tpr`} from (0, 0) to (1, 1); `pr` {`recall`, `precision`} starting at
        (0, 1) as sklearn's final point; `pro` {`fpr`, `pro`} from (0, 0) up to FPR = `fpr_limit`
        (interpolated end point). Returns None when pixel metrics are not available.
        """
        _check_fpr_limit(fpr_limit)
        if max_points < 3:
            raise ValueError(f"max_points is {max_points}; it must be at least 3.")
        table = self._table()
        if table is None:
            return None

        fpr, tpr = table.roc_points()
        recall, precision = table.pr_points()
        pro_fpr, pro = _curve_up_to(*table.pro_points(), fpr_limit)

        roc_x, roc_y = _downsample_curve(fpr, tpr, max_points)
        pr_x, pr_y = _downsample_curve(np.r_[0.0, recall], np.r_[1.0, precision], max_points)
        pro_x, pro_y = _downsample_curve(pro_fpr, pro, max_points)
        return {
            "roc": {"fpr": roc_x, "tpr": roc_y},
            "pr": {"recall": pr_x, "precision": pr_y},
            "pro": {"fpr": pro_x, "pro": pro_y},
        }


# ---------------------------------------------------------------------------------------------------------
# Summary and benchmark


def summarize(
    image: dict[str, Any], pixel: dict[str, Any], threshold: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge image metrics, pixel metrics and an F1 threshold result into one flat dict.

    The threshold keys get an `f1_` prefix (`f1_threshold`, `f1_precision`, `f1_recall`), except `f1`.
    """
    summary = {**image, **pixel}
    for key, value in (threshold or {}).items():
        summary[key if key == "f1" else f"f1_{key}"] = value
    return summary


def synthetic_maps(n_maps: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Build float32 maps (smooth noise plus raised defects) and masks with 1 to 3 ellipses in every other image."""
    rng = np.random.default_rng(seed)
    maps = np.empty((n_maps, size, size), dtype=np.float32)
    masks = np.zeros((n_maps, size, size), dtype=bool)
    for index in range(n_maps):
        noise = rng.random((size, size), dtype=np.float32)
        maps[index] = cv2.GaussianBlur(noise, (0, 0), sigmaX=4)
        if index % 2:
            continue
        canvas = np.zeros((size, size), dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.integers(2, max(3, size // 8))), int(rng.integers(2, max(3, size // 8))))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
        masks[index] = canvas > 0
        maps[index] += 0.1 * cv2.GaussianBlur(canvas.astype(np.float32), (0, 0), sigmaX=3)
    return maps, masks


def benchmark_aupro(n_maps: int = 100, size: int = 288, seed: int = 0) -> dict[str, float | int | None]:
    """Time `aupro_exact` against `pro_official` on synthetic maps and masks (see `synthetic_maps`).

    Returns both values, both times in seconds and `speedup` (official time / exact time). Both functions
    first run once on 2 small maps, so that one-time library start-up costs stay out of the timings.
    """
    warm_maps, warm_masks = synthetic_maps(2, 32, seed)
    aupro_exact(warm_maps, warm_masks)
    pro_official(warm_maps, warm_masks)
    maps, masks = synthetic_maps(n_maps, size, seed)

    start = time.perf_counter()
    exact = aupro_exact(maps, masks)
    exact_seconds = time.perf_counter() - start

    start = time.perf_counter()
    official = pro_official(maps, masks)
    official_seconds = time.perf_counter() - start

    result = {
        "n_maps": n_maps,
        "size": size,
        "aupro_exact": exact,
        "pro_official": official,
        "aupro_exact_s": exact_seconds,
        "pro_official_s": official_seconds,
        "speedup": official_seconds / exact_seconds if exact_seconds > 0 else None,
    }
    logger.info(
        "AUPRO benchmark on %d maps of %dx%d: exact %.3f s, official %.3f s.",
        n_maps,
        size,
        size,
        exact_seconds,
        official_seconds,
    )
    return result
