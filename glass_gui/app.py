"""Entry point of the desktop application (`glass-studio`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

SCREENSHOT_SIZE = (1400, 900)
SETTLE_TIMEOUT_S = 10.0
SCREENSHOT_TRAIN_TIMEOUT_S = 1800.0
"""Limit for the small training that --screenshots runs when the category has no finished run."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glass-studio", description="GLASS Studio desktop application.")
    parser.add_argument("--project", type=Path, help="project folder to open (default: the last one, else the demo)")
    parser.add_argument(
        "--screenshots", type=Path, metavar="DIR",
        help="render every main view of the project (default: the demo project) to PNG files in DIR and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.screenshots is not None:
        # Screenshots need no screen; respect an explicit platform choice such as xcb under Xvfb.
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from glass_engine.logsetup import configure_logging

    log_path = configure_logging("glass-studio")
    logger.info("GLASS Studio starting; log file %s", log_path)

    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    from glass_gui.compat import binding_problem

    problem = binding_problem()
    if problem is not None:
        logger.critical(problem)
        return 2

    from glass_gui.errors import install_exception_hook
    from glass_gui.main_window import MainWindow
    from glass_gui.settings import APPLICATION, ORGANIZATION

    pg.setConfigOptions(imageAxisOrder="row-major")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    _install_translations(app)
    install_exception_hook()
    # Load torch.fx's lazy imports now, not in the first training worker where they stall the GUI thread.
    from glass_engine.features import warm_up_tracing

    warm_up_tracing()

    window = MainWindow()
    if args.screenshots is not None:
        written = render_screenshots(window, args.screenshots, args.project)
        logger.info("Wrote %d screenshots to %s", len(written), args.screenshots)
        window.close()
        return 0

    window.show()
    window.open_initial_project(args.project)
    return app.exec()


def _install_translations(app) -> None:  # type: ignore[no-untyped-def]
    """Load resources/translations/glass_studio_<locale>.qm when present."""
    from PySide6.QtCore import QLocale, QTranslator

    from glass_engine.paths import resource_dir

    translator = QTranslator(app)
    folder = resource_dir() / "translations"
    if translator.load(QLocale(), "glass_studio", "_", str(folder)):
        app.installTranslator(translator)
        logger.info("Loaded translation %s", translator.filePath())


def render_screenshots(window, out_dir: Path, project_folder: Path | None = None) -> list[Path]:  # type: ignore[no-untyped-def]
    """Open the project (the demo project by default), show each view and save it as NN_<key>.png."""
    from glass_engine.demo import create_demo_project
    from glass_engine.store import is_project
    from glass_gui.main_window import demo_folder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    folder = project_folder or demo_folder()
    if project_folder is None and not is_project(folder):
        create_demo_project(folder).close()
    if not window.open_project(folder):
        raise SystemExit(f"Cannot open project {folder} for screenshots; see the log.")

    window.resize(*SCREENSHOT_SIZE)
    window.show()
    _prepare_run_views(window)
    written = []
    for number, key in enumerate(window.views, start=1):
        if key == "annotate":
            _show_example_defect(window)
        window.show_view(key)
        _settle(window)
        written.append(_save_grab(window, out_dir / f"{number:02d}_{key}.png"))
        if key == "results":
            written.extend(_save_results_tabs(window, out_dir, number))
    return written


def _save_grab(window, path: Path) -> Path:  # type: ignore[no-untyped-def]
    if not window.grab().save(str(path)):
        raise SystemExit(f"Cannot write screenshot {path}.")
    return path


def _prepare_run_views(window) -> None:  # type: ignore[no-untyped-def]
    """Give Train, Results and Inspect a finished run of the current category (trained here if missing)."""
    from glass_gui.inspect_view import prepare_screenshot_state
    from glass_gui.train_view import prepare_screenshots

    run_id = prepare_screenshots(window.views, timeout_s=SCREENSHOT_TRAIN_TIMEOUT_S)
    if run_id is None:
        logger.warning("No finished run for the screenshots; Train, Results and Inspect stay empty.")
        return
    inspect = window.views.get("inspect")
    if inspect is not None:
        prepare_screenshot_state(inspect, run_dir=window.context.project.run(run_id).run_dir)


def _save_results_tabs(window, out_dir: Path, number: int) -> list[Path]:  # type: ignore[no-untyped-def]
    """Save the Results view's other tabs (curves, distribution, comparison) as NNx_results_<tab>.png."""
    results = window.views["results"]
    tabs = getattr(results, "tabs", None)
    if tabs is None:
        return []
    written = []
    for index in range(1, tabs.count()):
        tabs.setCurrentIndex(index)
        _settle(window)
        name = "".join(ch if ch.isalnum() else "_" for ch in tabs.tabText(index).lower()).strip("_")
        written.append(_save_grab(window, out_dir / f"{number:02d}{chr(ord('a') + index)}_results_{name}.png"))
    tabs.setCurrentIndex(0)
    return written


def _show_example_defect(window) -> None:  # type: ignore[no-untyped-def]
    project = window.context.project
    records = project.images(category=window.context.category)
    annotated = [record for record in records if record.annotated] or records
    if annotated:
        window.context.open_image(annotated[0].id, [record.id for record in records])


def _settle(window) -> None:  # type: ignore[no-untyped-def]
    """Process events until the thumbnails on screen are loaded (or SETTLE_TIMEOUT_S passes)."""
    from PySide6.QtCore import QCoreApplication

    images_view = window.views.get("images")
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        loader = getattr(images_view, "_loader", None)
        if loader is None or loader.is_idle():
            break
        time.sleep(0.02)
    for _ in range(5):
        QCoreApplication.processEvents()
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
