#!/usr/bin/env bash
# Import a dataset category into a new project and record a GUI session on it under Xvfb (a real X11
# window): the app trains a small run if the project has none, then saves a PNG of every view.
# Usage: scripts/screenshot_session.sh DATASET_ROOT CATEGORY PROJECT_DIR OUT_DIR
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$1"; category="$2"; project="$3"; out="$4"
"$repo/scripts/setup.sh"
"$repo/.venv/bin/python" - "$data" "$category" "$project" <<'PY'
import logging
import sys
from pathlib import Path

from glass_engine.data import discover
from glass_engine.store import Project, is_project

logging.basicConfig(level=logging.INFO)
data, category, folder = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
project = Project.open(folder) if is_project(folder) else Project.create(folder, name=f"{category} session")
summary = project.import_index(discover(data, category))
logging.info("Imported %s", summary)
project.close()
PY
command -v xvfb-run >/dev/null || { echo "xvfb-run is missing: apt-get install xvfb" >&2; exit 1; }
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" "$repo/.venv/bin/glass-studio" --project "$project" --screenshots "$out"
