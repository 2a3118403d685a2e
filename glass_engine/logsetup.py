"""One logging set-up per entry point: console output plus a rotating log file in the user data folder."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from glass_engine.paths import user_data_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(program: str, level: int = logging.INFO, console: bool = True) -> Path:
    """Attach a rotating file handler (and optionally stderr) to the root logger; return the log path."""
    log_dir = user_data_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{program}.log"

    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_glass_handler", False):
            root.removeHandler(handler)

    file_handler = logging.handlers.RotatingFileHandler(log_path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler._glass_handler = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)

    if console:
        console_handler = logging.StreamHandler()
        console_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        console_handler._glass_handler = True  # type: ignore[attr-defined]
        root.addHandler(console_handler)
    return log_path
