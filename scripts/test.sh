#!/usr/bin/env bash
# Runs the test suite (slow tests excluded) in the project's pinned environment.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -m "not slow" -n 2 "$@"
