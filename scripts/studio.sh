#!/usr/bin/env bash
# Set up on first use, then start GLASS Studio. Without arguments it opens the built-in demo project.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
exec "$repo/.venv/bin/glass-studio" "$@"
