#!/usr/bin/env bash
# Creates (or reuses) .venv with the pinned dependencies and crystalgnn installed in editable mode.
# Idempotent: a stamp holding the hash of the lock files skips the install when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
venv="$root/.venv"
stamp="$venv/.crystalgnn-stamp"
want="$(cat requirements.lock requirements-test.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import crystalgnn" 2>/dev/null; then
  exit 0
fi
echo "[setup] creating the virtual environment in $venv (first run only, ~1 minute)" >&2
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
# torch is pinned inside the lock file, so pip never resolves an unpinned (CUDA) torch.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-test.lock
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
