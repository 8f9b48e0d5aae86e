"""Run directories written before the model registry still load and predict the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require_data

from crystalgnn.predict import load_model

LEGACY = Path(__file__).parent / "fixtures" / "legacy_runs"
RUNS = sorted(p.name for p in LEGACY.iterdir() if p.is_dir())


@pytest.mark.parametrize("name", RUNS)
def test_legacy_run_predicts_identical_numbers(name):
    data = require_data("mp_elasticity3k")
    expected = pd.read_csv(LEGACY / name / "expected_predictions.csv", dtype={"id": str})
    model = load_model(LEGACY / name)
    fresh = model.predict([data / f"{i}.cif" for i in expected["id"]], cache_dir=None)
    assert fresh["id"].tolist() == expected["id"].tolist()
    np.testing.assert_allclose(fresh["target1"].to_numpy(), expected["target1"].to_numpy(), rtol=1e-6, atol=0)
