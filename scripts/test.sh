#!/usr/bin/env bash
# Lints (ruff, configured in pyproject.toml), then runs the test suite (slow tests excluded) in the
# project's pinned environment. Under CI=true a missing ../shared/data fails the tests instead of
# skipping them (tests/conftest.py).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
"$root/.venv/bin/ruff" check src tests benchmarks scripts
exec "$root/.venv/bin/python" -m pytest -m "not slow" -n 2 "$@"
