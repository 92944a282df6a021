#!/usr/bin/env bash
# The MLflow UI over this project's store: scripts/ui.sh [--port N]. See pipeline/ui.py.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m pipeline.ui "$@"
