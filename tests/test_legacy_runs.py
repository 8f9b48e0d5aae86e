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
    # These runs learned log10 G: the commit that wrote them predicted log10 values under the target's
    # name; today that value is `log10_target1` and `target1` is in the units of the data (GPa).
    np.testing.assert_allclose(fresh["log10_target1"].to_numpy(), expected["target1"].to_numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(fresh["target1"].to_numpy(), 10.0 ** expected["target1"].to_numpy(), rtol=1e-5)


def test_legacy_config_reads_as_today_s_layout():
    from crystalgnn.config import CONFIG_LAYOUT, RunConfig
    from crystalgnn.models.alignn import ALIGNNConfig
    from crystalgnn.models.cgcnn import CGCNNConfig

    cgcnn = RunConfig.load(LEGACY / "cgcnn" / "config.json")
    assert cgcnn.config_layout == CONFIG_LAYOUT and cgcnn.model.arch == CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16)
    alignn = RunConfig.load(LEGACY / "alignn" / "config.json")
    assert alignn.model.arch == ALIGNNConfig(alignn_layers=2, gcn_layers=1, hidden_features=16, embedding_features=8)
    assert alignn.graph.line_graph and alignn.model.descriptors == ()
    assert RunConfig.load(LEGACY / "cgcnn_descriptors" / "config.json").model.descriptors == ("vpa", "density", "a")


def test_a_legacy_run_starts_a_new_one():
    """--init-from (and the frozen hybrid's stage 2) reads weights saved under the old names."""
    import dataclasses

    from crystalgnn.config import RunConfig
    from crystalgnn.training.hybrid import initialize_from
    from crystalgnn.training.module import build_module

    cfg = RunConfig.load(LEGACY / "cgcnn" / "config.json")
    module = build_module(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(LEGACY / "cgcnn"))))
    copied = initialize_from(module, LEGACY / "cgcnn")
    assert "model.atom_input.project.weight" in copied and not any(n.startswith("objective.") for n in copied)
