"""The engine must stay usable without a display: no module under glass_engine may import Qt."""

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "glass_engine"
FORBIDDEN = ("PySide6", "shiboken6", "pyqtgraph", "glass_gui")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_sources_import_no_qt():
    offenders = {
        path.name: sorted(imported_roots(path) & set(FORBIDDEN))
        for path in ENGINE.rglob("*.py")
        if imported_roots(path) & set(FORBIDDEN)
    }
    assert offenders == {}


def test_importing_every_engine_module_loads_no_qt():
    modules = [f"glass_engine.{path.stem}" for path in sorted(ENGINE.glob("*.py")) if path.stem != "__init__"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
