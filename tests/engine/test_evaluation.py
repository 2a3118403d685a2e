"""Tests of glass_engine.evaluation against hand-computed values, sklearn and brute-force references."""

from __future__ import annotations

import logging
import tracemalloc

import cv2
import numpy as np
import pytest
from skimage import measure
from sklearn import metrics as sk_metrics

from glass_engine.evaluation import (
    PixelAccumulator,
    aupro_exact,
    benchmark_aupro,
    confusion_at,
    f1_optimal_threshold,
    image_curves,
    image_metrics,
    pro_official,
    summarize,
    synthetic_maps,
)

# ---------------------------------------------------------------------------------------------------------
# References written independently of the module under test


def brute_force_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Recompute FPR and PRO from scratch at every distinct score, then integrate up to the limit."""
    regions = []
    for amap, mask in zip(maps, masks):
        labels = measure.label(mask, connectivity=2)
        for region_id in range(1, labels.max() + 1):
            regions.append(amap[labels == region_id])
    background = maps[~masks]

    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        fpr = np.mean(background >= threshold)
        pro = np.mean([np.mean(region >= threshold) for region in regions])
        points.append((fpr, pro))

    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
            continue
        if x0 < fpr_limit:
            y_cut = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_cut) / 2
        break
    return area / fpr_limit


def official_pro_reference(maps: np.ndarray, masks: np.ndarray, num_th: int = 200) -> float:
    """Follow the official GLASS compute_pro steps literally: regionprops per region, per threshold."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
    low, high = maps.min(), maps.max()
    rows = []
    for threshold in np.arange(low, high, (high - low) / num_th):
        binary = maps > threshold
        overlaps = []
        for binary_map, mask in zip(binary, masks):
            dilated = cv2.dilate(binary_map.astype(np.uint8), kernel)
            for region in measure.regionprops(measure.label(mask)):
                hits = dilated[region.coords[:, 0], region.coords[:, 1]].sum()
                overlaps.append(hits / region.area)
        fpr = np.logical_and(~masks, binary).sum() / (~masks).sum()
        rows.append((fpr, np.mean(overlaps)))

    fpr = np.array([row[0] for row in rows])
    pro = np.array([row[1] for row in rows])
    kept = fpr < 0.3
    rescaled = (fpr[kept] - fpr[kept].min()) / (fpr[kept].max() - fpr[kept].min() + 1e-10)
    return sk_metrics.auc(rescaled, pro[kept])


def random_case(seed: int, n_maps: int = 3, size: int = 12, levels: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Quantised random maps (many ties) and masks with several regions, some touching only diagonally."""
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, levels, size=(n_maps, size, size)).astype(np.float64) / levels
    masks = np.zeros((n_maps, size, size), dtype=bool)
    masks[0, 1:4, 1:4] = True
    masks[0, 4, 4] = True  # touches the square only at a corner, so 8-connectivity joins it
    masks[0, 8:11, 7:9] = True
    masks[1, 2:3, 5:10] = True
    masks[1, 9, 1] = True
    maps = maps + 0.3 * masks * rng.random(masks.shape)
    return maps, masks


# ---------------------------------------------------------------------------------------------------------
# Image level


def test_image_metrics_known_example():
    # AUROC: of the 4 (defective, good) pairs, 3 are ordered correctly. AP: recall steps 1/2 at precision
    # 1 (score 0.8) and 1/2 at precision 2/3 (score 0.35), so AP = 0.5 + 1/3.
    result = image_metrics(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))

    assert result["image_auroc"] == pytest.approx(0.75)
    assert result["image_ap"] == pytest.approx(0.5 + 1 / 3)


def test_image_metrics_one_class_is_none(caplog):
    with caplog.at_level(logging.WARNING, logger="glass_engine.evaluation"):
        result = image_metrics(np.array([0.2, 0.3, 0.9]), np.array([0, 0, 0]))

    assert result == {"image_auroc": None, "image_ap": None}
    assert "undefined" in caplog.text


def test_image_metrics_rejects_nan_scores():
    with pytest.raises(ValueError, match="NaN"):
        image_metrics(np.array([0.2, np.nan]), np.array([0, 1]))


def test_image_metrics_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0 \\(good\\) or 1"):
        image_metrics(np.array([0.2, 0.4]), np.array([0, 2]))


def test_image_curves_match_sklearn():
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.2])
    labels = np.array([0, 0, 1, 1, 0, 1])

    curves = image_curves(scores, labels)

    fpr, tpr, _ = sk_metrics.roc_curve(labels, scores)
    precision, recall, pr_thresholds = sk_metrics.precision_recall_curve(labels, scores)
    assert curves["roc"]["fpr"] == pytest.approx(fpr.tolist())
    assert curves["roc"]["tpr"] == pytest.approx(tpr.tolist())
    assert curves["roc"]["thresholds"][0] is None
    assert curves["pr"]["precision"] == pytest.approx(precision.tolist())
    assert curves["pr"]["recall"] == pytest.approx(recall.tolist())
    assert len(curves["pr"]["thresholds"]) == len(pr_thresholds)


def test_image_curves_one_class_is_none():
    assert image_curves(np.array([0.1, 0.2]), np.array([1, 1])) == {"roc": None, "pr": None}


def test_f1_threshold_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = rng.integers(0, 6, size=30) / 5.0  # few levels, so thresholds tie
        labels = rng.random(30) < 0.4
        if not labels.any():
            continue

        result = f1_optimal_threshold(scores, labels)

        best = None
        for threshold in sorted(set(scores.tolist()), reverse=True):
            flagged = scores >= threshold
            tp = np.sum(flagged & labels)
            f1 = 2 * tp / (2 * tp + np.sum(flagged & ~labels) + np.sum(~flagged & labels))
            if best is None or f1 > best[1]:
                best = (threshold, f1, tp / flagged.sum(), tp / labels.sum())
        assert result["threshold"] == pytest.approx(best[0])
        assert result["f1"] == pytest.approx(best[1])
        assert result["precision"] == pytest.approx(best[2])
        assert result["recall"] == pytest.approx(best[3])


def test_f1_threshold_without_defects_is_none():
    result = f1_optimal_threshold(np.array([0.1, 0.5]), np.array([0, 0]))

    assert result == {"threshold": None, "f1": None, "precision": None, "recall": None}


def test_confusion_at_counts_ties_as_defective():
    scores = np.array([0.1, 0.5, 0.5, 0.7, 0.9])
    labels = np.array([0, 0, 1, 0, 1])

    result = confusion_at(scores, labels, 0.5)

    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 2, 1, 0)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(1.0)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(0.6)


def test_confusion_at_nothing_flagged():
    result = confusion_at(np.array([0.1, 0.2]), np.array([0, 1]), 0.9)

    assert result["precision"] is None
    assert result["recall"] == 0.0
    assert result["f1"] == 0.0


def test_summarize_prefixes_threshold_keys():
    summary = summarize({"image_auroc": 0.9}, {"pixel_auroc": 0.8}, {"threshold": 0.4, "f1": 0.7, "recall": 0.6})

    assert summary == {"image_auroc": 0.9, "pixel_auroc": 0.8, "f1_threshold": 0.4, "f1": 0.7, "f1_recall": 0.6}


# ---------------------------------------------------------------------------------------------------------
# Exact AUPRO


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 0.77, 1.0])
def test_aupro_exact_matches_brute_force(seed, fpr_limit):
    maps, masks = random_case(seed)

    assert aupro_exact(maps, masks, fpr_limit) == pytest.approx(brute_force_aupro(maps, masks, fpr_limit), abs=1e-6)


def test_aupro_exact_continuous_scores():
    rng = np.random.default_rng(11)
    maps, masks = random_case(11, n_maps=4, size=16)
    maps = maps + rng.random(maps.shape) * 1e-3

    assert aupro_exact(maps, masks) == pytest.approx(brute_force_aupro(maps, masks, 0.3), abs=1e-6)


def test_aupro_exact_hand_cases():
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 2:5, 2:5] = True
    masks[1, 7:9, 1:3] = True

    # Every defect pixel above every background pixel: PRO is 1 from FPR 0 on.
    assert aupro_exact(masks.astype(float), masks) == pytest.approx(1.0)
    # One threshold only: the curve is the diagonal, whose area up to 0.3 is 0.045.
    assert aupro_exact(np.zeros((2, 10, 10)), masks) == pytest.approx(0.045 / 0.3)
    # Every defect pixel below every background pixel: FPR reaches 1 before PRO leaves 0.
    assert aupro_exact((~masks).astype(float), masks) == pytest.approx(0.0)


def test_aupro_exact_without_defects_is_none():
    assert aupro_exact(np.random.default_rng(0).random((2, 8, 8)), np.zeros((2, 8, 8), dtype=bool)) is None


def test_aupro_exact_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="nearest-neighbour"):
        aupro_exact(np.zeros((2, 8, 8)), np.zeros((2, 8, 9), dtype=bool))


# ---------------------------------------------------------------------------------------------------------
# Official-code PRO


@pytest.mark.parametrize("seed", range(3))
def test_pro_official_matches_reference(seed):
    maps, masks = synthetic_maps(4, 40, seed=seed)

    assert pro_official(maps, masks) == pytest.approx(official_pro_reference(maps, masks), abs=1e-12)


def test_pro_official_constant_maps_is_none(caplog):
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 2:4, 2:4] = True

    with caplog.at_level(logging.WARNING, logger="glass_engine.evaluation"):
        assert pro_official(np.ones((1, 8, 8)), masks) is None
    assert "no thresholds" in caplog.text


def test_benchmark_aupro_small_run():
    result = benchmark_aupro(n_maps=4, size=48, seed=1)

    assert result["n_maps"] == 4
    assert 0.0 <= result["aupro_exact"] <= 1.0
    assert 0.0 <= result["pro_official"] <= 1.0
    assert result["aupro_exact_s"] > 0
    assert result["speedup"] == pytest.approx(result["pro_official_s"] / result["aupro_exact_s"])


# ---------------------------------------------------------------------------------------------------------
# PixelAccumulator


def float16_rounded(maps: np.ndarray) -> np.ndarray:
    return maps.astype(np.float16).astype(np.float32)


def test_accumulator_matches_full_computation():
    maps, masks = synthetic_maps(6, 40, seed=5)
    accumulator = PixelAccumulator(block_images=4)
    for amap, mask in zip(maps, masks):
        accumulator.add(amap, mask)

    result = accumulator.compute()

    stored = float16_rounded(maps)
    assert len(accumulator) == 6
    assert accumulator.has_masks
    assert result["pixel_auroc"] == pytest.approx(sk_metrics.roc_auc_score(masks.ravel(), stored.ravel()), abs=1e-12)
    assert result["pixel_ap"] == pytest.approx(
        sk_metrics.average_precision_score(masks.ravel(), stored.ravel()), abs=1e-12
    )
    assert result["pixel_aupro"] == pytest.approx(brute_force_aupro(stored, masks, 0.3), abs=1e-6)
    assert result["pixel_pro_official"] == pytest.approx(official_pro_reference(stored, masks), abs=1e-12)


def test_accumulator_stored_pairs_round_trip():
    maps, masks = synthetic_maps(5, 20, seed=2)
    accumulator = PixelAccumulator(block_images=2)
    for amap, mask in zip(maps, masks):
        accumulator.add(amap, mask)

    pairs = list(accumulator.iter_pairs())

    assert len(pairs) == 5
    for (amap, mask), original_map, original_mask in zip(pairs, float16_rounded(maps), masks):
        assert amap.dtype == np.float32
        assert np.array_equal(amap, original_map)
        assert np.array_equal(mask, original_mask)


def test_accumulator_missing_mask_means_no_defect():
    maps, masks = synthetic_maps(4, 24, seed=7)
    with_none = PixelAccumulator()
    with_zeros = PixelAccumulator()
    for amap, mask in zip(maps, masks):
        with_none.add(amap, mask if mask.any() else None)
        with_zeros.add(amap, mask)

    assert with_none.compute() == with_zeros.compute()


def test_accumulator_without_masks_reports_none():
    accumulator = PixelAccumulator()
    accumulator.add(np.random.default_rng(0).random((8, 8)))

    assert not accumulator.has_masks
    assert accumulator.compute() == dict.fromkeys(("pixel_auroc", "pixel_ap", "pixel_aupro", "pixel_pro_official"))
    assert accumulator.curves() is None


def test_accumulator_only_defect_pixels_is_none(caplog):
    accumulator = PixelAccumulator()
    with caplog.at_level(logging.WARNING, logger="glass_engine.evaluation"):
        accumulator.add(np.random.default_rng(0).random((8, 8)), np.ones((8, 8), dtype=bool))
        result = accumulator.compute()

    assert result["pixel_auroc"] is None
    assert result["pixel_aupro"] is None
    assert "undefined" in caplog.text


def test_accumulator_rejects_shape_change():
    accumulator = PixelAccumulator()
    accumulator.add(np.zeros((8, 8)))

    with pytest.raises(ValueError, match="earlier maps"):
        accumulator.add(np.zeros((8, 9)))


def test_accumulator_rejects_nan_map():
    with pytest.raises(ValueError, match="NaN"):
        PixelAccumulator().add(np.full((4, 4), np.nan))


def test_accumulator_negative_zero_ties_with_zero():
    amap = np.array([[0.0, -0.0], [1.0, 0.5]])
    mask = np.array([[True, False], [True, False]])
    accumulator = PixelAccumulator()
    accumulator.add(amap, mask)

    # Pairs (defect, good): (1, 0) > , (1, 0.5) >, (0, -0) tie = 0.5, (0, 0.5) < : AUROC = 2.5 / 4.
    assert accumulator.compute(with_official_pro=False)["pixel_auroc"] == pytest.approx(0.625)


def test_accumulator_curves_shape():
    maps, masks = synthetic_maps(6, 64, seed=4)
    accumulator = PixelAccumulator()
    for amap, mask in zip(maps, masks):
        accumulator.add(amap, mask)

    curves = accumulator.curves(fpr_limit=0.3, max_points=200)

    roc, pr, pro = curves["roc"], curves["pr"], curves["pro"]
    assert 2 < len(roc["fpr"]) <= 200
    assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0)
    assert roc["fpr"][-1] == pytest.approx(1.0)
    assert roc["tpr"][-1] == pytest.approx(1.0)
    assert np.all(np.diff(roc["fpr"]) >= 0)
    assert len(pr["recall"]) <= 200
    assert (pr["recall"][0], pr["precision"][0]) == (0.0, 1.0)
    assert pr["recall"][-1] == pytest.approx(1.0)
    assert len(pro["fpr"]) <= 200
    assert pro["fpr"][-1] == pytest.approx(0.3)
    assert np.all(np.diff(pro["pro"]) >= 0)


def test_accumulator_curve_area_matches_auroc():
    maps, masks = synthetic_maps(4, 48, seed=8)
    accumulator = PixelAccumulator()
    for amap, mask in zip(maps, masks):
        accumulator.add(amap, mask)

    curves = accumulator.curves(max_points=100000)
    auroc = accumulator.compute(with_official_pro=False)["pixel_auroc"]

    assert np.trapezoid(curves["roc"]["tpr"], curves["roc"]["fpr"]) == pytest.approx(auroc, abs=1e-12)


def test_accumulator_compute_memory_independent_of_count():
    def compute_peak(n_maps: int) -> int:
        maps, masks = synthetic_maps(n_maps, 96, seed=1)
        accumulator = PixelAccumulator()
        for amap, mask in zip(maps, masks):
            accumulator.add(amap, mask)
        del maps, masks
        tracemalloc.start()
        accumulator.compute(with_official_pro=False)
        accumulator.curves()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small = compute_peak(4)
    large = compute_peak(64)

    # 60 extra maps of 96x96 would need 2.2 MB even at one byte per pixel.
    assert large - small < 200_000
