"""Nothing wrong without a word: target transforms have one source of truth, predictions come back
in the units of the data (issue "Nothing wrong, nothing lost", items 1-2)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from crystalgnn import cli
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.io.resolve import resolve_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.training.run import train

TINY = ModelConfig(arch=CGCNNConfig(atom_fea_len=8, n_conv=1, h_fea_len=8))


def _cfg(transform: str = "none") -> RunConfig:
    return RunConfig(data=DataConfig(transform=transform), model=TINY, train=TrainConfig(epochs=1, batch_size=16, threads=1))


# ----------------------------------------------------------------- 1. one source of truth for transforms
@pytest.mark.parametrize("read_with,config_says", [("log10", "none"), ("none", "log10")])
def test_a_dataset_read_with_another_transform_than_the_config_is_refused(elasticity_slice, tmp_path, read_with, config_says):
    data = load_dataset(elasticity_slice, targets=[1], transform=read_with)
    with pytest.raises(ValueError, match=f"read with transform='{read_with}'.*say transform='{config_says}'"):
        train(data, tmp_path / "run", _cfg(config_says), progress=False, workers=1)
    assert not (tmp_path / "run" / "config.json").exists()  # refused before anything claims what was learned


def test_generated_chains_take_the_run_s_transform():
    plain = resolve_dataset("chains:short:n=20", ["a"], "none")
    logged = resolve_dataset("chains:short:n=20", ["a"], "log10")
    np.testing.assert_allclose(logged.targets, np.log10(plain.targets))
    assert logged.meta["transform"] == "log10"


# -------------------------------------------------------------- 2. predictions in the units of the data
def test_a_log10_run_predicts_in_the_units_of_the_data(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_dataset(elasticity_slice, targets=[1], transform="log10"), run, _cfg("log10"), progress=False, workers=1)
    saved = pd.read_csv(run / "predictions_test.csv", dtype={"id": str})
    assert saved.columns.tolist() == ["id", "true_target1", "pred_target1", "true_log10_target1", "pred_log10_target1"]
    raw = {line.split(",")[0]: float(line.split(",")[2]) for line in (elasticity_slice / "id_prop.csv").read_text().splitlines()}
    np.testing.assert_allclose(saved["true_target1"], [raw[i] for i in saved["id"]], rtol=1e-12)  # GPa, as in the file
    np.testing.assert_allclose(saved["pred_target1"], 10.0 ** saved["pred_log10_target1"], rtol=1e-6)  # float32 as text
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["target_transform"] == "log10"  # the metrics are of log10 G, as learned
    mae_of_log10 = float(np.mean(np.abs(saved["true_log10_target1"] - saved["pred_log10_target1"])))
    assert math.isclose(metrics["test"]["target1"]["mae"], mae_of_log10, rel_tol=1e-6)  # float32 as text

    frame = load_model(run).predict([elasticity_slice / f"{i}.cif" for i in saved["id"]])
    assert frame.columns.tolist() == ["id", "target1", "log10_target1"]
    np.testing.assert_allclose(frame["target1"], saved["pred_target1"], rtol=1e-12)
    assert frame["target1"].min() > 1.0  # GPa, not log10 GPa

    out = tmp_path / "evaluated.csv"
    assert cli.main(["evaluate", str(run), str(elasticity_slice), "--target", "1", "-o", str(out)]) == 0
    evaluated = pd.read_csv(out, dtype={"id": str})
    assert evaluated.columns.tolist() == saved.columns.tolist()  # evaluate writes what train writes
    report = json.loads(capsys.readouterr().out)
    test = evaluated.set_index("id").loc[saved["id"]]
    np.testing.assert_allclose(test["true_target1"], saved["true_target1"], rtol=1e-12)  # labels in GPa, not log10'd twice
    assert report["metrics"]["target1"]["n"] == 80
