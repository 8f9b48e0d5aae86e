"""Descriptor hybridization (Eq. 14 and S5), per-atom targets, forests, probe and importance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Structure

from crystalgnn import cli
from crystalgnn.analysis.probe import ProbeSettings, low_symmetry_mask, run_probe
from crystalgnn.baselines import ForestConfig, train_forest
from crystalgnn.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from crystalgnn.descriptors import DESCRIPTOR_NAMES
from crystalgnn.io import load_dataset
from crystalgnn.models.cgcnn import CGCNNConfig
from crystalgnn.predict import load_model
from crystalgnn.training.checkpoint import load_weights
from crystalgnn.training.hybrid import default_hybrid_descriptors, descriptor_statistics, resolve_descriptor_names
from crystalgnn.training.run import train

DESCRIPTORS = ("vpa", "density", "mean_avg_bond_len", "mean_CN_Voronoi", "a", "crys_sys")


def cfg(epochs: int = 3, descriptors: tuple[str, ...] = (), **changes) -> RunConfig:
    data = changes.pop("data", DataConfig(transform="log10"))
    model = ModelConfig(arch=CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16), descriptors=descriptors, **changes)
    return RunConfig(data=data, model=model, train=TrainConfig(epochs=epochs, batch_size=16, threads=1))


@pytest.fixture(scope="module")
def hybrid_runs(elasticity_slice, tmp_path_factory):
    """A plain and a de-CGCNN run of the same 80 crystals and split (log10 G)."""
    root = tmp_path_factory.mktemp("hybrid")
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    plain = train(data, root / "plain", cfg(), progress=False)
    hybrid = train(data, root / "hybrid", cfg(descriptors=DESCRIPTORS), progress=False)
    return data, root / "plain", root / "hybrid", plain, hybrid


def test_descriptor_names_are_checked():
    assert "space_group_num" not in default_hybrid_descriptors()
    assert set(default_hybrid_descriptors()) | {"space_group_num"} == set(DESCRIPTOR_NAMES)
    assert resolve_descriptor_names("vpa, a") == ("vpa", "a")
    with pytest.raises(ValueError, match="unknown descriptor.*available"):
        resolve_descriptor_names("vpa,volume")


def test_descriptor_statistics_ignore_nan():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, 4.0]])
    mean, std = descriptor_statistics(values)
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(std, [1.0, 1.0])


def test_de_cgcnn_round_trip_and_uses_the_descriptors(hybrid_runs, elasticity_slice):
    data, _, run, _, result = hybrid_runs
    model = load_model(run)
    assert model.cfg.model.descriptors == DESCRIPTORS
    head = model.module.model.readout.head[0]
    assert head.in_features == 16 + len(DESCRIPTORS)
    # train → save → load → predict: identical numbers, descriptors recomputed from the files.
    saved = pd.read_csv(run / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)])
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy().astype(np.float32))
    # The descriptors matter: shifting one of them changes the prediction.
    prepared = model.prepare([elasticity_slice / "0.cif"])
    before = model.predict_store(prepared).values
    prepared.extra[:, 0] *= 1.5
    assert not np.allclose(model.predict_store(prepared).values, before)


def test_training_statistics_match_the_training_split(hybrid_runs):
    data, _, run, _, _ = hybrid_runs
    from crystalgnn.descriptors import compute_descriptors

    train_ids = pd.read_csv(run / "predictions_train.csv")["id"].astype(str).tolist()
    rows = [data.ids.index(i) for i in train_ids]
    table = compute_descriptors(train_ids, [data.sources[r] for r in rows], cache_dir=None, workers=1, progress=False).select(DESCRIPTORS)
    mean, std = descriptor_statistics(table.values)
    state, _ = load_weights(run / "model.safetensors")
    np.testing.assert_allclose(state["model.readout.extra_mean"].numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(state["model.readout.extra_std"].numpy(), np.where(std > 1e-12, std, 1), rtol=1e-5)


def test_frozen_hybrid_keeps_the_representation(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    train(data, tmp_path / "frozen", cfg(descriptors=("vpa", "a"), hybrid="frozen"), progress=False)
    stage1, _ = load_weights(tmp_path / "frozen" / "representation" / "model.safetensors")
    final, _ = load_weights(tmp_path / "frozen" / "model.safetensors")
    encoder = [k for k in stage1 if not k.startswith("model.readout.") and k.startswith("model.")]
    assert encoder and all(torch.equal(stage1[k], final[k]) for k in encoder)  # weights and batch-norm statistics
    assert final["model.readout.head.0.weight"].shape[1] == 16 + 2
    saved = RunConfig.load(tmp_path / "frozen" / "config.json")
    assert saved.train.freeze_encoder and saved.train.init_from.endswith("representation")


def test_per_atom_targets_are_extensive(elasticity_slice, tmp_path):
    """With per-atom normalization and mean pooling the per-cell prediction is N × a size-invariant
    per-atom value, so a 2×2×2 supercell is predicted 8× the cell."""
    data = load_dataset(elasticity_slice, targets=[0])
    result = train(data, tmp_path / "pa", cfg(data=DataConfig(per_atom=True)), progress=False)
    model = load_model(tmp_path / "pa")
    state, _ = load_weights(tmp_path / "pa" / "model.safetensors")
    train_ids = pd.read_csv(tmp_path / "pa" / "predictions_train.csv")["id"].astype(str)
    per_atom = [data.targets[data.ids.index(i), 0] / len(data.sources[data.ids.index(i)].load()) for i in train_ids]
    assert float(state["objective.normalizer.mean"][0]) == pytest.approx(np.mean(per_atom), rel=1e-5)
    cell = Structure.from_file(elasticity_slice / "3.cif")
    supercell = cell * (2, 2, 2)
    values = model.predict([cell, supercell])["target0"].to_numpy()
    assert values[1] == pytest.approx(8 * values[0], rel=1e-4)
    assert result.metrics["test"]["target0"]["n"] > 0


def test_forest_uses_the_same_split_as_the_network(hybrid_runs, tmp_path):
    data, plain, _, _, _ = hybrid_runs
    result = train_forest(data, tmp_path / "rf", cfg(), ForestConfig(features=("descriptors", "composition"), n_estimators=20, n_jobs=1), progress=False)
    for split in ("train", "val", "test"):
        ours = pd.read_csv(tmp_path / "rf" / f"predictions_{split}.csv")["id"].tolist()
        assert ours == pd.read_csv(plain / f"predictions_{split}.csv")["id"].tolist()
    importance = pd.read_csv(tmp_path / "rf" / "feature_importance.csv")
    assert len(importance) == len(default_hybrid_descriptors()) + 132
    assert importance["importance"].sum() == pytest.approx(1.0)
    assert np.isfinite(result.metrics["test"]["target1"]["mae"])


def test_importance_analysis(hybrid_runs, tmp_path):
    from crystalgnn.analysis.importance import analyse_run

    _, plain, hybrid, _, _ = hybrid_runs
    summary = analyse_run(hybrid, tmp_path / "imp", plain_run_dir=plain, trees=20, progress=False)
    frame = pd.read_csv(tmp_path / "imp" / "importance.csv")
    assert len(frame) == 16 + len(DESCRIPTORS) and frame["importance"].sum() == pytest.approx(1.0)
    assert summary["descriptor_share"] == pytest.approx(frame.loc[frame.kind == "descriptor", "importance"].sum())
    r2 = pd.read_csv(tmp_path / "imp" / "representation_r2.csv")
    assert list(r2.columns) == ["descriptor", "r2_model", "r2_plain"] and len(r2) == len(DESCRIPTORS)
    assert (tmp_path / "imp" / "importance.png").exists() and (tmp_path / "imp" / "representation_r2.png").exists()


def test_low_symmetry_subset_follows_the_paper_probability():
    sg = np.repeat([1, 15, 225], 20000)
    keep = low_symmetry_mask(sg, seed=0)
    for group, expected in ((1, 15 / 16), (15, 0.5), (225, 15 / 240)):
        assert keep[sg == group].mean() == pytest.approx(expected, abs=0.01)
    assert np.array_equal(keep, low_symmetry_mask(sg, seed=0))


def test_probe_end_to_end(elasticity_slice, tmp_path):
    settings = ProbeSettings(low_symmetry=False, trees=10)
    table = run_probe(str(elasticity_slice), tmp_path / "probe", settings, cfg(epochs=2), workers=1, progress=False)
    assert set(table["descriptor"]) == set(DESCRIPTOR_NAMES) - {"crys_sys"}
    assert {"r2_cgcnn", "r2_composition", "group"} <= set(table.columns)
    assert set(table["group"]) == {"local", "global"}
    summary = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert 0 <= summary["crystal_system_accuracy_cgcnn"] <= 1 and 0 <= summary["crystal_system_accuracy_composition"] <= 1
    assert (tmp_path / "probe" / "probe_r2.png").exists()
    # Every crystal of the slice was probed or reported.
    skipped = pd.read_csv(tmp_path / "probe" / "probe_skipped.csv") if (tmp_path / "probe" / "probe_skipped.csv").exists() else pd.DataFrame()
    assert summary["n_structures"] + len(skipped) == 80


def test_cli_descriptors_and_baseline(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "cli"
    code = cli.main(["train", str(elasticity_slice), "--target", "0", "--transform", "log10", "--run-dir", str(run), "--epochs", "1",
                     "--batch-size", "16", "--atom-fea-len", "8", "--h-fea-len", "8", "--n-conv", "1", "--descriptors", "vpa,a", "--quiet"])
    assert code == 0 and RunConfig.load(run / "config.json").model.descriptors == ("vpa", "a")
    code = cli.main(["baseline", str(elasticity_slice), "--target", "0", "--transform", "log10", "--run-dir", str(tmp_path / "rf"),
                     "--trees", "10", "--quiet"])
    assert code == 0 and "MAE/MAD" in capsys.readouterr().out
    code = cli.main(["train", str(elasticity_slice), "--target", "0", "--run-dir", str(tmp_path / "x"), "--descriptors", "vpa,volume"])
    assert code == 2 and "unknown descriptor" in capsys.readouterr().err


def test_probe_low_symmetry_subset_describes_only_the_kept(elasticity_slice, monkeypatch):
    from crystalgnn.analysis import probe

    data = load_dataset(elasticity_slice, targets=[])
    groups = probe.space_group_numbers(data, workers=1, progress=False)
    assert np.all(np.isfinite(groups)) and set(groups) <= set(range(1, 231))
    described: list[int] = []
    from crystalgnn import descriptors

    original = descriptors.compute_descriptors

    def spy(ids, sources, **kwargs):
        described.append(len(ids))
        return original(ids, sources, **kwargs)

    monkeypatch.setattr(descriptors, "compute_descriptors", spy)
    probed, systems, problems = probe.probe_dataset(data, ProbeSettings(low_symmetry=True, seed=3), cache_dir=None, workers=1, progress=False)
    expected = probe.low_symmetry_mask(groups, seed=3)
    # The bank ran once, on the kept structures only; each kept structure is probed or reported.
    assert described == [int(expected.sum())] and 0 < expected.sum() < len(data)
    kept = [i for i, k in zip(data.ids, expected) if k]
    assert sorted(probed.ids + [p.id for p in problems]) == sorted(kept)
    assert set(systems) <= set(range(7))


def test_sum_pooling_with_descriptors_stays_extensive():
    """Eq. 13 + Eq. 14: each atom's head input is its vector ⊕ the crystal's descriptors, and the
    outputs are summed, so 8 copies of a crystal with the same descriptors give 8× the output."""
    from crystalgnn.models.readout import Readout

    torch.manual_seed(0)
    readout = Readout(8, 2, 16, pooling="sum", extra_features=3)
    readout.set_extra_statistics(np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0]))
    x = torch.randn(5, 8)
    extra = torch.tensor([[1.5, np.nan, 4.0]])
    one = readout(x, torch.zeros(5, dtype=torch.long), 1, extra).prediction
    eight = readout(x.repeat(8, 1), torch.zeros(40, dtype=torch.long), 1, extra).prediction
    torch.testing.assert_close(8 * one, eight, rtol=1e-5, atol=1e-5)
    assert readout.head[0].in_features == 8 + 3


def test_sum_pooling_run_predicts_supercells_extensively(elasticity_slice, tmp_path):
    """Trained with sum pooling, the whole prediction (head outputs and the per-atom target
    shift) is extensive: a 2×2×2 supercell is predicted 8× its cell."""
    data = load_dataset(elasticity_slice, targets=[0])
    train(data, tmp_path / "sum", cfg(data=DataConfig(), pooling="sum"), progress=False)
    model = load_model(tmp_path / "sum")
    cell = Structure.from_file(elasticity_slice / "5.cif")
    values = model.predict([cell, cell * (2, 2, 2)])["target0"].to_numpy()
    assert values[1] == pytest.approx(8 * values[0], rel=1e-4)
    state, _ = load_weights(tmp_path / "sum" / "model.safetensors")
    train_ids = pd.read_csv(tmp_path / "sum" / "predictions_train.csv")["id"].astype(str)
    per_atom = [data.targets[data.ids.index(i), 0] / len(data.sources[data.ids.index(i)].load()) for i in train_ids]
    assert float(state["objective.normalizer.mean"][0]) == pytest.approx(np.mean(per_atom), rel=1e-5)
