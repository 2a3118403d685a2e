#!/usr/bin/env bash
# Build the one-folder desktop bundle dist/glass-studio/ (programs glass-studio and glass-engine) with
# PyInstaller from glass.spec. Installs PyInstaller into the project's .venv first; intermediate files go to
# build/ and the bundle to dist/ (both git-ignored). Takes 10 minutes or more: torch and its CUDA libraries
# are several GB. See docs/bundle.md.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
bundle="$repo/dist/glass-studio"

if [ ! -x "$venv/bin/python" ]; then
    echo "No virtual environment at $venv; run scripts/setup.sh first." >&2
    exit 1
fi

"$venv/bin/python" -m pip install -q "pyinstaller>=6.5"

cd "$repo"
"$venv/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --workpath "$repo/build" --distpath "$repo/dist" "$repo/glass.spec"

# Smoke checks: the engine imports torch, torchvision and onnxruntime to list its commands, and the GUI
# opens its main window offscreen and saves screenshots, in a throw-away user-data folder.
"$bundle/glass-engine" --help >/dev/null
check_home="$(mktemp -d)"
trap 'rm -rf "$check_home"' EXIT
GLASS_STUDIO_HOME="$check_home" QT_QPA_PLATFORM=offscreen \
    "$bundle/glass-studio" --screenshots "$check_home/screenshots" >/dev/null
echo "Bundle ready: $bundle ($(du -sh "$bundle" | cut -f1))"
