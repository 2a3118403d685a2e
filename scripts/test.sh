#!/usr/bin/env bash
# Set up on first use, then run the whole test suite (Qt offscreen). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "$repo"
export QT_QPA_PLATFORM=offscreen
exec "$repo/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
