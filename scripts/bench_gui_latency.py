"""Benchmark: event-loop latency of the Train view while a tiny real training runs in its worker thread.

Run from the repository root (it renders offscreen, so no display is needed):

    python scripts/bench_gui_latency.py

It creates the generated demo project in a temporary folder, trains its category with the MobileNetV2 preset
at a small image size in the Train view, and meanwhile a QTimer fires every `--interval-ms` in the GUI thread.
Each gap between two timer calls beyond the interval is time in which the GUI could not react. The script
reports the maximum and the 99th percentile of the gaps during training; the target is a maximum under 50 ms.
Backbone weights: `--weights FILE`, else the shared MobileNetV2 file beside the repository when present, else
random weights (the latency does not depend on the weights' values).

NOTE: while the worker thread builds the torchvision backbone, the GUI thread waited about 200 ms for the GIL
in every run on a loaded 2-core machine, so the overall maximum missed the target there. A second line
therefore reports the gaps from the first training batch on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet_coral_tflite_quant.pth"
TARGET_MS = 50.0

logger = logging.getLogger("bench_gui_latency")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="MobileNetV2 state dict (default: the shared file, if any)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--image-size", type=int, default=128, help="network input side in pixels (default 128)")
    parser.add_argument("--limit", type=int, default=32, help="training samples per epoch (default 32)")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="timer interval in ms (default 10)")
    parser.add_argument("--workdir", type=Path, help="folder for the demo project (default: a temporary one)")
    parser.add_argument("--show-gaps", type=float, metavar="MS", default=TARGET_MS,
                        help="list each gap longer than MS with the training stage before it (default 50)")
    return parser.parse_args(argv)


def training_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from glass_engine.config import preset

    weights = args.weights or (SHARED_WEIGHTS if SHARED_WEIGHTS.is_file() else None)
    changes = {
        "data.image_size": args.image_size,
        "data.batch_size": 8,
        "method.meta_epochs": args.epochs,
        "method.eval_epochs": 1,
        "method.limit": args.limit,
        "method.step": 5,
        "run.device": "cpu",
    }
    if weights is not None:
        changes["backbone.weights"] = str(weights)
    else:
        changes["backbone.random_init"] = True
        logger.info("No MobileNetV2 weights file found; training on random weights.")
    return preset("mobilenet").updated(changes)


def measure(workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Train in the Train view and return the timer gaps in ms (beyond the interval) and the training time."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from glass_engine.demo import create_demo_project
    from glass_gui.train_view import TrainView
    from glass_gui.views import StudioContext
    from glass_gui.workers import task_runner

    app = QApplication.instance() or QApplication(sys.argv[:1])
    # As glass_gui.app.main does at start-up.
    from glass_engine.features import warm_up_tracing

    warm_up_tracing()
    project = create_demo_project(workdir / "demo project")
    context = StudioContext()
    view = TrainView(context)
    view.resize(1400, 900)
    view.show()
    context.set_project(project)
    view.form.set_config(training_config(args))

    gaps: list[float] = []
    long_gaps: list[tuple[float, float, str]] = []
    last = time.perf_counter()
    ended: list[str] = []
    stage = ["start"]

    training_gaps: list[float] = []
    training_started: list[float] = []

    def tick() -> None:
        nonlocal last
        now = time.perf_counter()
        if view.queue.is_running():
            gap = (now - last) * 1000.0 - args.interval_ms
            gaps.append(gap)
            if training_started:
                training_gaps.append(gap)
            if gap > args.show_gaps:
                long_gaps.append((now - started, gap, stage[0]))
        last = now

    def remember_stage(event) -> None:  # type: ignore[no-untyped-def]
        stage[0] = f"{event.kind} (epoch {event.epoch}) {event.message[:60]}".strip()
        if event.kind == "batch" and not training_started:
            training_started.append(time.perf_counter())

    def job_ended(_job, status: str, message: str, _details: str) -> None:  # type: ignore[no-untyped-def]
        ended.append(status)
        if status != "done":
            logger.error("Training ended %s: %s", status, message)
        app.quit()

    timer = QTimer()
    timer.setInterval(int(args.interval_ms))
    timer.timeout.connect(tick)
    view.queue.job_ended.connect(job_ended)
    view.queue.event.connect(remember_stage)

    # The first paint of a new window loads fonts and fills every widget's caches. In the application the view
    # is on screen long before a training starts, so the measurement starts after that paint.
    settle_until = time.perf_counter() + 1.0
    while time.perf_counter() < settle_until:
        app.processEvents()
        time.sleep(0.01)

    started = time.perf_counter()
    last = started
    timer.start()
    if not view.start():
        raise SystemExit("The training did not start; see the log.")
    app.exec()
    timer.stop()
    seconds = time.perf_counter() - started
    task_runner().wait_all()
    project.close()

    if ended != ["done"] or not gaps:
        raise SystemExit(f"The training did not finish (status {ended}); no latency measured.")
    for at, gap, last_stage in long_gaps:
        logger.info("Gap of %.0f ms at %.1f s, after: %s", gap, at, last_stage)
    result = {"seconds": seconds, **gap_statistics(gaps, "")}
    if training_gaps:
        result.update(gap_statistics(training_gaps, "epochs_"))
    return result


def gap_statistics(gaps: list[float], prefix: str) -> dict[str, float]:
    values = np.maximum(np.array(gaps), 0.0)
    return {
        f"{prefix}ticks": float(len(values)),
        f"{prefix}max": float(values.max()),
        f"{prefix}p99": float(np.percentile(values, 99)),
        f"{prefix}median": float(np.median(values)),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO_ROOT))
    args = parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="glass-latency-") as temporary:
        workdir = args.workdir or Path(temporary)
        os.environ.setdefault("GLASS_STUDIO_HOME", str(workdir / "home"))
        result = measure(workdir, args)

    logger.info("Training in the Train view: %.1f s, %d timer ticks of %.0f ms", result["seconds"],
                result["ticks"], args.interval_ms)
    logger.info("Event-loop latency beyond the interval: max %.1f ms, 99th percentile %.1f ms, median %.1f ms",
                result["max"], result["p99"], result["median"])
    if "epochs_max" in result:
        logger.info("From the first training batch on (%d ticks): max %.1f ms, 99th percentile %.1f ms, "
                    "median %.1f ms", result["epochs_ticks"], result["epochs_max"], result["epochs_p99"],
                    result["epochs_median"])
    verdict = "met" if result["max"] < TARGET_MS else "missed"
    logger.info("Target max < %.0f ms: %s", TARGET_MS, verdict)
    return 0 if result["max"] < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
