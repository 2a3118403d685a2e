"""Checks of the Qt binding that the application needs before it starts."""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QRect

PROBE_CALLS = 200


def binding_leaks_none() -> bool:
    """Return whether calling a void Qt method drops a reference to None.

    PySide6 6.12.0 does so on CPython 3.11, where None is not yet immortal, and the interpreter aborts with
    "none_dealloc" once the count reaches zero. Scrolling a grid of 10,000 images reached that within a
    minute (scripts/bench_import.py). CPython 3.12 and later make None immortal, so the probe finds nothing.
    """
    rect = QRect(0, 0, 1, 1)
    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        rect.setX(0)
    return sys.getrefcount(None) < before - PROBE_CALLS // 2


def binding_problem() -> str | None:
    """Return a message for the user when the installed PySide6 cannot run the application, else None."""
    if binding_leaks_none():
        return (
            f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} loses a reference to None on "
            "every call of a Qt method without a return value, and Python aborts once that count reaches zero. "
            "Install another PySide6 release, for example: pip install 'PySide6-Essentials<6.12'."
        )
    return None
