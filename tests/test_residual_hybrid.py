"""The residual hybrid: a descriptor forest, cross-fitted, plus a network that learns what it misses."""

from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import Data

from crystalgnn.baselines import ForestConfig
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.training.objectives import RegressionObjective, TargetNormalizer, fit_blend_weight
from crystalgnn.training.residual import FOREST_FILE, check_forest, fit_base_forest, load_forest
from crystalgnn.training.run import train

DESCRIPTORS = ("vpa", "density", "mean_avg_bond_len", "mean_CN_Voronoi", "a", "natoms")


def residual_cfg(per_atom: bool = False, epochs: int = 3) -> RunConfig:
    return RunConfig(
        data=DataConfig(transform="log10", per_atom=per_atom),
        model=ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16), descriptors=DESCRIPTORS, hybrid="residual"),
        train=TrainConfig(epochs=epochs, batch_size=16, threads=1),
    )


@pytest.fixture(scope="module")
def residual_run(elasticity_slice, tmp_path_factory):
    run = tmp_path_factory.mktemp("residual") / "run"
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    return data, run, train(data, run, residual_cfg(), progress=False)


def test_round_trip_gives_the_saved_predictions(residual_run, elasticity_slice):
    _, run, result = residual_run
    assert (run / FOREST_FILE).exists() and np.isfinite(result.metrics["test"]["target1"]["mae"])
    model = load_model(run)
    assert model.base_forest is not None
    for split in ("test", "train"):  # every split is written as a loaded model predicts it
        saved = pd.read_csv(run / f"predictions_{split}.csv")
        fresh = model.predict([elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)])
        np.testing.assert_allclose(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy(), rtol=0, atol=1e-6)


def test_prediction_is_forest_plus_network(residual_run, elasticity_slice):
    _, run, _ = residual_run
    model = load_model(run)
    prepared = model.prepare([elasticity_slice / f"{i}.cif" for i in range(5)])
    with_forest = model.predict_store(prepared).values
    forest = load_forest(run, len(DESCRIPTORS)).predict(prepared.extra.astype(np.float64))
    np.testing.assert_allclose(prepared.base[:, 0], forest, rtol=1e-6)
    assert not np.allclose(with_forest[:, 0], forest, atol=1e-4)  # the network adds its share
    # The head reads the descriptors and the forest's prediction.
    assert model.module.model.readout.head[0].in_features == 16 + len(DESCRIPTORS) + 1
    # Without its forest the model refuses to predict (it would be off by the forest's share).
    model.base_forest, prepared.base = None, None
    with pytest.raises(ValueError, match="predicts with its descriptor forest"):
        model.predict_store(prepared)


def test_training_rows_get_out_of_fold_forest_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, :1] * 2.0 + rng.normal(scale=0.5, size=(200, 1)))
    train_rows, held = np.arange(150), np.arange(150, 200)
    model, for_training, for_all = fit_base_forest(x, y, np.ones(200), train_rows, per_atom=False, seed=1,
                                                   forest=ForestConfig(n_estimators=50))
    np.testing.assert_array_equal(for_training[held], for_all[held])  # held-out rows: the whole-split forest
    np.testing.assert_allclose(for_all[:, 0], model.predict(x), rtol=1e-6)
    in_sample = np.abs(for_all[train_rows] - y[train_rows]).mean()
    out_of_fold = np.abs(for_training[train_rows] - y[train_rows]).mean()
    held_out = np.abs(for_all[held] - y[held]).mean()
    # A forest nearly memorizes its training rows; cross-fitted residuals look like held-out ones.
    assert in_sample < 0.6 * out_of_fold
    assert 0.7 < out_of_fold / held_out < 1.4


def test_per_atom_forest_learns_per_atom_and_reports_per_cell():
    rng = np.random.default_rng(0)
    atoms = rng.integers(1, 9, size=120).astype(np.float64)
    x = np.column_stack([atoms, rng.normal(size=120)])
    y = (3.0 * atoms)[:, None]  # exactly 3 per atom
    _, _, for_all = fit_base_forest(x, y, atoms, np.arange(120), per_atom=True, seed=0, forest=ForestConfig(n_estimators=20))
    np.testing.assert_allclose(for_all[:, 0], y[:, 0], rtol=1e-5)


def test_objective_learns_the_residual_and_adds_the_base():
    objective = RegressionObjective(TargetNormalizer(1, "intensive", np.array([0.5]), np.array([2.0])), adds_base=True)
    batch = Data(y=torch.tensor([[3.0], [1.0]]), base=torch.tensor([[2.0], [-1.0]]), ptr=torch.tensor([0, 2, 5]))
    out = torch.tensor([[0.25], [0.75]])  # normalized residual predictions
    np.testing.assert_allclose(objective.predict(out, batch).numpy(), [[0.25 * 2 + 0.5 + 2.0], [0.75 * 2 + 0.5 - 1.0]])
    # residuals (1, 2) normalized: (0.25, 0.75) — a perfect prediction has zero loss
    assert objective.loss(out, batch).item() == pytest.approx(0.0)


def test_damaged_forest_is_refused(residual_run):
    _, run, _ = residual_run
    forest = load_forest(run, len(DESCRIPTORS))
    with pytest.raises(ValueError, match="reads 6 descriptors, the run has 5"):
        check_forest(forest, 5)
    tree = forest.estimators_[0].tree_
    left = tree.children_left.copy()
    inner = np.flatnonzero(left != -1)
    left[inner[-1]] = tree.node_count + 7  # points outside the node arrays
    forest.estimators_[0] = types.SimpleNamespace(tree_=types.SimpleNamespace(
        node_count=tree.node_count, children_left=left, children_right=tree.children_right, feature=tree.feature, value=tree.value))
    with pytest.raises(ValueError, match="tree 0 has node indices out of range"):
        check_forest(forest, len(DESCRIPTORS))


def test_settings_that_cannot_work_are_refused():
    no_descriptors = RunConfig(model=ModelConfig(hybrid="residual"))
    with pytest.raises(ValueError, match="give it descriptors"):
        no_descriptors.check()
    classification = RunConfig(model=ModelConfig(hybrid="residual", descriptors=DESCRIPTORS, task="classification"))
    with pytest.raises(ValueError, match="for regression targets"):
        classification.check()


def test_config_round_trip_and_per_atom_run(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[0])
    result = train(data, tmp_path / "run", dataclasses.replace(residual_cfg(per_atom=True, epochs=2), data=DataConfig(per_atom=True)), progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["hybrid"] == "residual" and saved["data"]["per_atom"] is True
    assert np.isfinite(result.metrics["test"]["target0"]["mae"])
    assert load_model(tmp_path / "run").cfg == RunConfig.load(tmp_path / "run" / "config.json")


def test_stacked_hybrid_reads_the_forest_without_adding_it(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = residual_cfg(epochs=2)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hybrid="stacked"))
    train(data, tmp_path / "run", cfg, progress=False)
    model = load_model(tmp_path / "run")
    assert not model.module.objective.adds_base
    assert model.module.model.readout.head[0].in_features == 16 + len(DESCRIPTORS) + 1
    saved = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)])
    np.testing.assert_allclose(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy(), rtol=0, atol=1e-6)
    # The forest's prediction is an input: changing it changes the output, but not one for one.
    prepared = model.prepare([elasticity_slice / "0.cif"])
    before = model.predict_store(prepared).values
    model.base_forest, prepared.base = None, prepared.base + 1.0
    after = model.predict_store(prepared).values
    assert not np.allclose(after, before) and not np.allclose(after - before, 1.0)


def test_blend_weight_is_the_validation_optimum():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 2))
    network = y + rng.normal(scale=0.1, size=y.shape)
    forest = y + rng.normal(scale=1.0, size=y.shape)
    network[:, 1] = y[:, 1] + rng.normal(scale=1.0, size=200)  # target 1: the forest is the better part
    forest[:, 1] = y[:, 1] + rng.normal(scale=0.1, size=200)
    w = fit_blend_weight(network, forest, y)
    assert w[0] >= 0.85 and w[1] <= 0.15
    np.testing.assert_array_equal(fit_blend_weight(y, y + 1.0, y), [1.0, 1.0])  # a perfect network: w = 1
    np.testing.assert_array_equal(fit_blend_weight(y + 1.0, y, y), [0.0, 0.0])


def test_blend_hybrid_mixes_the_separate_parts_and_round_trips(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = residual_cfg(epochs=2)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, hybrid="blend"))
    train(data, tmp_path / "run", cfg, progress=False)
    model = load_model(tmp_path / "run")
    objective = model.module.objective
    assert objective.blends_base and not objective.adds_base
    assert model.module.model.readout.head[0].in_features == 16 + len(DESCRIPTORS)  # the network does not read the forest
    w = float(objective.blend_weight[0])
    assert 0.0 <= w <= 1.0
    saved = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)])
    np.testing.assert_allclose(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy(), rtol=0, atol=1e-6)
    # prediction = w · network + (1 − w) · forest, exactly
    prepared = model.prepare([elasticity_slice / f"{i}.cif" for i in range(4)])
    blended = model.predict_store(prepared).values[:, 0]
    forest = prepared.base[:, 0].copy()
    objective.blend_weight.fill_(1.0)
    network = model.predict_store(prepared).values[:, 0]
    np.testing.assert_allclose(blended, w * network + (1 - w) * forest, rtol=0, atol=1e-5)


def test_blend_plain_uses_the_plain_network_and_round_trips(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    base = residual_cfg(epochs=2)
    plain_cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, descriptors=(), hybrid="end-to-end"))
    blend_cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, hybrid="blend-plain"))
    train(data, tmp_path / "plain", plain_cfg, progress=False)
    train(data, tmp_path / "blend", blend_cfg, progress=False)
    blend = load_model(tmp_path / "blend")
    assert blend.module.model.readout.head[0].in_features == 16  # descriptors feed only the forest
    assert blend.module.objective.blends_base and (tmp_path / "blend" / FOREST_FILE).exists()
    saved = pd.read_csv(tmp_path / "blend" / "predictions_test.csv")
    cifs = [elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)]
    np.testing.assert_allclose(blend.predict(cifs)["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy(), rtol=0, atol=1e-6)
    # with w = 1 it is the plain run's network: same seed, same data order, same weights
    blend.module.objective.blend_weight.fill_(1.0)
    plain = load_model(tmp_path / "plain")
    np.testing.assert_allclose(blend.predict(cifs)["log10_target1"].to_numpy(), plain.predict(cifs)["log10_target1"].to_numpy(),
                               rtol=0, atol=1e-5)
