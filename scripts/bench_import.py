"""Benchmark: import many small generated images into a project and scroll the review grid through them.

Run from the repository root (it renders offscreen, so no display is needed):

    python scripts/bench_import.py --images 10000

It reports the time to write the images, to discover them, to import them into the store, to query and
relabel, and per-frame paint times while the grid scrolls from top to bottom. Thumbnails are made in the
background during the scroll, as in the application; the numbers include that load on the CPU.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger("bench_import")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="number of images to generate (default 10000)")
    parser.add_argument("--size", type=int, default=48, help="side of each generated image in pixels (default 48)")
    parser.add_argument("--workdir", type=Path, help="folder for the dataset and project (default: a temporary one)")
    parser.add_argument("--scroll-step", type=int, default=120, help="pixels per scroll frame (default 120)")
    return parser.parse_args(argv)


def write_dataset(root: Path, count: int, size: int) -> Path:
    """Write `count` PNG images in MVTec AD layout: 80 % train/good, 10 % test/good, 10 % test/spot with masks."""
    rng = np.random.default_rng(0)
    category = root / "bench"
    train, test_good = int(count * 0.8), int(count * 0.1)
    plan = [("train/good", train), ("test/good", test_good), ("test/spot", count - train - test_good)]
    for folder, number in plan:
        (category / folder).mkdir(parents=True, exist_ok=True)
    (category / "ground_truth" / "spot").mkdir(parents=True, exist_ok=True)

    for folder, number in plan:
        for i in range(number):
            image = rng.integers(60, 200, (size, size, 3), dtype=np.uint8)
            ok, data = cv2.imencode(".png", image)
            (category / folder / f"{i:05d}.png").write_bytes(data.tobytes())
            if folder == "test/spot":
                mask = np.zeros((size, size), np.uint8)
                cv2.circle(mask, (size // 2, size // 2), size // 6, 255, -1)
                ok, data = cv2.imencode(".png", mask)
                (category / "ground_truth" / "spot" / f"{i:05d}_mask.png").write_bytes(data.tobytes())
    return root


def timed(step: str, results: dict[str, float], func, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = func(*args, **kwargs)
    results[step] = time.perf_counter() - start
    logger.info("%-34s %8.2f s", step, results[step])
    return value


def scroll_grid(project, step: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Show the Images view offscreen and scroll it top to bottom, painting every frame synchronously."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    from glass_gui.images_view import ImagesView
    from glass_gui.views import StudioContext

    app = QApplication.instance() or QApplication([sys.argv[0]])
    context = StudioContext()
    view = ImagesView(context)
    view.resize(1280, 800)
    view.show()
    QCoreApplication.processEvents()

    start = time.perf_counter()
    context.set_project(project)
    QCoreApplication.processEvents()
    load_s = time.perf_counter() - start

    bar = view.list_view.verticalScrollBar()
    viewport = view.list_view.viewport()
    frames: list[float] = []
    scroll_start = time.perf_counter()
    value = 0
    while True:
        frame_start = time.perf_counter()
        bar.setValue(value)
        viewport.repaint()
        QCoreApplication.processEvents()
        frames.append(time.perf_counter() - frame_start)
        if value >= bar.maximum():
            break
        value = min(value + step, bar.maximum())
    scroll_s = time.perf_counter() - scroll_start

    settle_start = time.perf_counter()
    while not view._loader.is_idle() and time.perf_counter() - settle_start < 30:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    settle_s = time.perf_counter() - settle_start

    thumbnails = view.model.cached_thumbnails()
    view.shutdown()
    view.close()
    context.set_project(None)
    app.processEvents()
    frames_ms = sorted(frame * 1000 for frame in frames)
    return {
        "grid_load_s": load_s,
        "frames": len(frames),
        "scroll_s": scroll_s,
        "frame_mean_ms": statistics.fmean(frames_ms),
        "frame_p95_ms": frames_ms[int(0.95 * (len(frames_ms) - 1))],
        "frame_max_ms": frames_ms[-1],
        "settle_last_screen_s": settle_s,
        "thumbnails_in_memory": thumbnails,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("glass_engine").setLevel(logging.WARNING)

    from glass_engine.data import discover
    from glass_engine.store import Project

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glass-bench-"))
    os.environ.setdefault("GLASS_STUDIO_HOME", str(workdir / "home"))
    logger.info("Working folder %s, %d images of %d px", workdir, args.images, args.size)
    results: dict[str, float] = {}

    root = timed("write images", results, write_dataset, workdir / "data", args.images, args.size)
    index = timed("discover", results, discover, root, "bench", "mvtec")
    project = Project.create(workdir / "project", "bench")
    summary = timed("import into store", results, project.import_index, index)
    timed("re-import (nothing new)", results, project.import_index, index)
    records = timed("query all, sort by name", results, project.images, category="bench")
    timed("query defects without mask", results, project.images, category="bench", label="defect", annotated=False)
    timed("relabel 1000 images", results, project.relabel, [r.id for r in records[:1000]], "defect", "spot")
    timed("check missing files", results, project.check_missing)
    logger.info("Imported %d images (%d in the store)", summary.added, project.count())

    grid = scroll_grid(project, args.scroll_step)
    logger.info("Grid: model filled and first paint in %.3f s", grid["grid_load_s"])
    logger.info(
        "Grid: %d scroll frames in %.2f s; paint per frame mean %.1f ms, p95 %.1f ms, max %.1f ms",
        grid["frames"], grid["scroll_s"], grid["frame_mean_ms"], grid["frame_p95_ms"], grid["frame_max_ms"],
    )
    logger.info("Grid: last screen's thumbnails done %.2f s after the scroll; %d thumbnails in memory",
                grid["settle_last_screen_s"], grid["thumbnails_in_memory"])
    project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
