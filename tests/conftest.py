"""Shared fixtures: real data slices from ../shared/data, small fast model settings."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests run two processes side by side (pytest -n 2): one torch thread each.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Nothing of the tests lands in the user's cache, also not from fixtures wider than one test (the
# per-test fixture below gives each test its own folder on top of this one).
os.environ["CRYSTALGNN_CACHE"] = tempfile.mkdtemp(prefix="crystalgnn-test-cache-")


#: Under CI=true the shared data are part of the contract: their absence fails instead of skipping.
STRICT_DATA = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        if STRICT_DATA:
            pytest.fail(f"shared data {path} not available (CI=true: the tests need ../shared/data beside the checkout)")
        pytest.skip(f"shared data {path} not available")
    return path


@pytest.fixture(scope="session")
def elasticity_slice(tmp_path_factory) -> Path:
    """The first 80 crystals of mp_elasticity3k as a CGCNN folder (id_prop.csv + symlinked CIFs)."""
    source = require_data("mp_elasticity3k")
    folder = tmp_path_factory.mktemp("elasticity80")
    rows = (source / "id_prop.csv").read_text().splitlines()[:80]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    for row in rows:
        cif = row.split(",")[0] + ".cif"
        (folder / cif).symlink_to(source / cif)
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own graph cache, so no test depends on another's leftovers."""
    monkeypatch.setenv("CRYSTALGNN_CACHE", str(tmp_path / "graph-cache"))
