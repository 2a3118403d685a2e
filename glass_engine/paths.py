"""Locations of bundled resources and of the per-user data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "GLASS Studio"


def resource_dir() -> Path:
    """Return the `resources/` folder, inside a PyInstaller bundle or beside the source tree."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def user_data_dir() -> Path:
    """Return the per-user data folder (logs, settings, caches), creating it when missing.

    GLASS_STUDIO_HOME overrides the location, which tests use to stay inside a temporary folder.
    """
    override = os.environ.get("GLASS_STUDIO_HOME")
    if override:
        base = Path(override)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_NAME
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / APP_NAME
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "glass-studio"
    base.mkdir(parents=True, exist_ok=True)
    return base
