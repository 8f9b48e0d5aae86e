"""OCrystalNet: reverse-bond pairing, the message-passing equations, invariances, atom-feature
choices for any model, training end to end (CFID imputation report, save/load/predict, CLI)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp

from crystalgnn import cli
from crystalgnn.config import DataConfig, FeatureConfig, GraphConfig, ModelConfig, RunConfig, defaults_for
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.graphs.schema import reverse_edge_index
from crystalgnn.io import load_dataset
from crystalgnn.models import atom_inputs, build_model
from crystalgnn.models.blocks import AtomFeatures
from crystalgnn.models.ocrystalnet import OCrystalNetConfig, aggregate_incoming
from crystalgnn.predict import load_model
from crystalgnn.structures.source import StructureSource, structure_key
from crystalgnn.training.run import train

SMALL = OCrystalNetConfig(hidden=16, depth=2)
GRAPH = GraphConfig(strategy="knn")

# Low symmetry: no ties among the 12 nearest neighbours, so the graph is unique.
BASE = Structure(
    Lattice.from_parameters(4.1, 4.9, 5.6, 81, 97, 104),
    ["Li", "Fe", "O", "O", "P"],
    [[0.02, 0.03, 0.01], [0.51, 0.47, 0.55], [0.26, 0.71, 0.33], [0.77, 0.19, 0.82], [0.38, 0.12, 0.64]],
)
NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
EUO = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.14), ["Eu", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _config(features: str = "ofm+cfid", pooling: str = "mean", **arch) -> RunConfig:
    return RunConfig(graph=GRAPH, features=FeatureConfig(features),
                     model=ModelConfig(name="ocrystalnet", pooling=pooling, arch=dataclasses.replace(SMALL, **arch)))


def _batch(structures, cfg: RunConfig):
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    store, ok, problems = build_graphs([str(i) for i in range(len(structures))], sources, cfg.graph_inputs(), None, workers=1, progress=False)
    assert ok.all(), problems
    return store.collate(np.arange(len(structures)))


def _model(cfg: RunConfig):
    torch.manual_seed(0)
    model = build_model(cfg)
    for features in model.modules():
        if isinstance(features, AtomFeatures):
            counts = np.zeros(101)
            counts[[3, 8, 11, 15, 17, 26, 63]] = [4, 9, 2, 3, 2, 1, 1]
            features.fit(counts)
    return model.eval()


# -------------------------------------------------------------------------------- reverse bonds
@pytest.mark.parametrize("graph", [GraphConfig(strategy="knn"), GraphConfig(max_neighbors=0, cutoff=5.0)])
def test_every_bond_has_exactly_one_reverse(graph):
    for structure in (BASE, NACL, BASE * (2, 1, 1)):
        g = build_graph(structure, dataclasses.replace(graph, addons=("reverse_edges",)))
        reverse = g.reverse_edge.astype(np.int64)
        source, target = g.edge_index.astype(np.int64)
        assert len(np.unique(reverse)) == len(reverse)  # a permutation: one reverse each
        np.testing.assert_array_equal(reverse[reverse], np.arange(len(reverse)))
        np.testing.assert_array_equal(source[reverse], target)
        np.testing.assert_array_equal(target[reverse], source)
        np.testing.assert_array_equal(g.edge_images[reverse], -g.edge_images)
        np.testing.assert_allclose(g.edge_vectors[reverse], -g.edge_vectors, atol=1e-5)


def test_a_truncated_radius_graph_is_refused_with_advice():
    # CGCNN's 12 nearest within 8 Å: j may be among i's 12 nearest but not i among j's
    g = build_graph(BASE, GraphConfig())
    with pytest.raises(ValueError, match="no reverse.*--graph-strategy knn"):
        reverse_edge_index(g.edge_index, g.edge_images)
    with pytest.raises(ValueError, match="--max-neighbors 0"):
        dataclasses.replace(_config(), graph=GraphConfig()).check()
    _config().check()  # the knn graph is fine


# ------------------------------------------------------------------------------------ equations
def test_aggregate_is_sum_times_max_with_a_zero_floor():
    states = torch.tensor([[1.0, -2.0], [3.0, -1.0], [-0.5, -0.5]])
    target = torch.tensor([0, 0, 1])
    out = aggregate_incoming(states, target, 3)
    torch.testing.assert_close(out, torch.tensor([[4.0 * 3.0, -3.0 * 0.0], [-0.5 * 0.0, -0.5 * 0.0], [0.0, 0.0]]))
    mean = aggregate_incoming(states, target, 3, "mean*max")
    torch.testing.assert_close(mean[0], torch.tensor([2.0 * 3.0, 0.0]))


@pytest.mark.parametrize("norm", ["none", "layer", "message"])
def test_forward_follows_equations_5_to_9(norm):
    cfg = _config("cgcnn", depth=1, norm=norm)
    model = _model(cfg)
    batch = _batch([BASE], cfg)
    f = torch.nn.functional
    source, target = batch.edge_index
    first, last = model.norms[0], model.norms[-1]
    assert isinstance(first, torch.nn.Identity if norm == "none" else torch.nn.LayerNorm)

    def update(message, atoms, layer_norm):  # Eq. 7 with the norm where ``norm`` puts it
        return atoms + layer_norm(message) if norm == "message" else layer_norm(message + atoms)

    with torch.no_grad():
        h0 = f.mish(model.atom_input(batch.z, batch))
        b0 = f.mish(model.bond_input(torch.cat([h0[source], model.expansion(batch.edge_dist)], -1)))
        n = len(batch.z)
        agg = torch.stack([(b0[target == v].sum(0)) * torch.clamp(b0[target == v].max(0).values, min=0) for v in range(n)])
        h1 = update(agg, h0, first)
        b1 = f.mish(b0 + model.bond_maps[0](h1[source] - b0[batch.reverse_edge]))
        agg2 = torch.stack([(b1[target == v].sum(0)) * torch.clamp(b1[target == v].max(0).values, min=0) for v in range(n)])
        expected = model.readout(update(agg2, h1, last), batch.batch, 1).prediction
        torch.testing.assert_close(model(batch).prediction, expected, rtol=1e-5, atol=1e-6)
    assert model.atom_input.project.bias is None and model.bond_input.bias is None  # CMPNN's maps have no bias


def test_message_dropout_acts_in_training_only():
    cfg = _config("cgcnn", message_dropout=0.5)
    model, plain = _model(cfg), _model(_config("cgcnn"))
    plain.load_state_dict(model.state_dict())  # same weights: dropout has none
    batch = _batch([BASE], cfg)
    with torch.no_grad():
        torch.testing.assert_close(model(batch).prediction, plain(batch).prediction)  # eval: no dropout
        model.train()
        first, second = model(batch).prediction, model(batch).prediction
    assert not torch.allclose(first, second)  # two dropout masks, two predictions


def test_permutation_rotation_supercell_and_batching_invariance():
    cfg = _config()
    model = _model(cfg)
    order = [3, 0, 4, 1, 2]
    permuted = Structure(BASE.lattice, [BASE[i].species for i in order], [BASE[i].frac_coords for i in order])
    moved = BASE.copy()
    moved.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0, translation_vec=[0.3, -1.2, 2.0]))
    with torch.no_grad():
        reference = model(_batch([BASE], cfg)).prediction
        for other in (permuted, moved, BASE * (2, 2, 2)):
            torch.testing.assert_close(model(_batch([other], cfg)).prediction, reference, rtol=1e-4, atol=1e-5)
        together = model(_batch([NACL, BASE, EUO], cfg)).prediction
        torch.testing.assert_close(together[1], reference[0], rtol=1e-5, atol=1e-5)
        total = _model(_config(pooling="sum"))
        torch.testing.assert_close(total(_batch([BASE * (2, 2, 2)], cfg)).prediction, 8 * total(_batch([BASE], cfg)).prediction,
                                   rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------- atom features
@pytest.mark.parametrize("choice, width", [("cgcnn", 92), ("ofm", 1056), ("cfid", 438), ("ofm+cfid", 1494), ("cgcnn+ofm", 1148)])
def test_atom_feature_choices_widths(choice, width):
    table = atom_inputs(FeatureConfig(choice))
    assert (table.shape[1] if isinstance(table, torch.Tensor) else table.width) == width
    assert atom_inputs(FeatureConfig("ofm", ofm_period_tag=True)).width == 39 * 39 + 39
    assert atom_inputs(FeatureConfig("embedding")) is None


def test_unknown_atom_features_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match="unknown part.*'orbitals'.*ofm\\+cfid"):
        FeatureConfig("ofm+orbitals")
    assert RunConfig(features=FeatureConfig("cgcnn+ofm")).graph_inputs().addons == ("ofm",)
    assert defaults_for("ocrystalnet").graph_inputs().addons == ("ofm", "reverse_edges")


def test_cfid_columns_must_be_fit_before_use():
    cfg = _config("cfid")
    torch.manual_seed(0)
    model = build_model(cfg)
    with pytest.raises(RuntimeError, match="never fit"):
        model(_batch([NACL], cfg))


def test_cgcnn_takes_ofm_features():
    cfg = RunConfig(features=FeatureConfig("cgcnn+ofm"))
    model = _model(cfg)
    with torch.no_grad():
        a = model(_batch([NACL], cfg)).prediction
        b = model(_batch([NACL * (2, 2, 2)], cfg)).prediction
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert model.atom_input.features.width == 92 + 1056


# -------------------------------------------------------------------------------------- training
def _train_config() -> RunConfig:
    base = defaults_for("ocrystalnet")
    return dataclasses.replace(base, data=DataConfig(transform="log10"), model=dataclasses.replace(base.model, arch=SMALL),
                               train=dataclasses.replace(base.train, epochs=2, batch_size=16, threads=1))


def test_train_save_load_predict_identical_with_imputation_report(elasticity_slice, tmp_path):
    folder = tmp_path / "with_eu"
    folder.mkdir()
    rows = (elasticity_slice / "id_prop.csv").read_text().splitlines()[:40]
    for row in rows:
        (folder / f"{row.split(',')[0]}.cif").symlink_to(elasticity_slice / f"{row.split(',')[0]}.cif")
    EUO.to(filename=str(folder / "euo.cif"))
    (folder / "id_prop.csv").write_text("\n".join(rows + ["euo,150,60,0.3"]) + "\n")
    data = load_dataset(folder, targets=[0, 1], transform="log10")
    ids = [row.split(",")[0] for row in rows] + ["euo"]
    roles = ["val"] * 6 + ["test"] * 6 + ["train"] * (len(ids) - 12)  # EuO (Eu: CFID placeholders) trains
    (tmp_path / "split.csv").write_text("id,split\n" + "".join(f"{i},{r}\n" for i, r in zip(ids, roles)))
    base = _train_config()
    cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, split_file=str(tmp_path / "split.csv")))
    train(data, tmp_path / "run", cfg, progress=False)
    saved = RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.model.name == "ocrystalnet" and saved.features.atom_features == "ofm+cfid"
    imputed = pd.read_csv(tmp_path / "run" / "imputed_elements.csv")
    assert list(imputed["element"]) == ["Eu"] and imputed["imputed_columns"].iloc[0] == 434 and imputed["training_atoms"].iloc[0] == 4
    model = load_model(tmp_path / "run")
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([folder / f"{i}.cif" for i in predictions["id"].astype(str)])
    for name in ("target0", "target1"):
        np.testing.assert_array_equal(fresh[f"log10_{name}"].to_numpy(), predictions[f"pred_log10_{name}"].to_numpy().astype(np.float32))


def test_cli_ocrystalnet_end_to_end(elasticity_slice, tmp_path, capsys):
    run = tmp_path / "ocn"
    argv = ["train", str(elasticity_slice), "--model", "ocrystalnet", "--hidden", "16", "--depth", "2", "--target", "1",
            "--transform", "log10", "--epochs", "2", "--batch-size", "16", "--threads", "1", "--workers", "1", "--quiet", "--run-dir", str(run)]
    assert cli.main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(next(iter(metrics["test"].values()))["mae"])
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", str(run), str(elasticity_slice / "3.cif"), "-o", str(out)]) == 0
    assert np.isfinite(pd.read_csv(out)["log10_target1"].iloc[0])
    capsys.readouterr()


def test_ofm_atoms_and_descriptors_share_one_tessellation_per_crystal(elasticity_slice, tmp_path, monkeypatch):
    from crystalgnn.descriptors import voronoi

    calls = []
    original = voronoi.periodic_voronoi
    monkeypatch.setattr(voronoi, "periodic_voronoi", lambda *a, **k: calls.append(1) or original(*a, **k))
    voronoi.clear_voronoi_memo()
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = dataclasses.replace(defaults_for("cgcnn"), data=DataConfig(transform="log10"), features=FeatureConfig("cgcnn+ofm"),
                              model=ModelConfig(descriptors=("vpa", "mean_CN_Voronoi")),
                              train=dataclasses.replace(defaults_for("cgcnn").train, epochs=1, batch_size=32, threads=1))
    train(data, tmp_path / "run", cfg, workers=1, progress=False)
    assert len(calls) == len(data.ids) == 80


@pytest.mark.parametrize("period_tag", [False, True])
def test_ofm_expanded_per_batch_equals_the_numpy_expansion(period_tag):
    from crystalgnn.features.ofm import expand_ofm

    cfg = RunConfig(features=FeatureConfig("ofm", ofm_period_tag=period_tag))
    batch = _batch([NACL, BASE], cfg)
    features = atom_inputs(cfg.features)
    with torch.no_grad():
        ours = features(batch.z, batch).numpy()
    np.testing.assert_allclose(ours, expand_ofm(batch.ofm_sums.numpy(), batch.z.numpy(), period_tag), rtol=1e-6, atol=1e-7)
    na = int(np.flatnonzero(batch.z.numpy() == 11)[0])
    assert np.count_nonzero(ours[na, : (39 if period_tag else 32) ** 2]) == (6 if period_tag else 2)  # Na: s1 (+ period 3) times Cl: s2, p5 (+ period 3)


def test_defaults_are_the_documented_ones():
    cfg = defaults_for("ocrystalnet")
    a, t = cfg.model.arch, cfg.train
    assert (a.hidden, a.depth, a.head_layers, a.aggregate, a.norm, a.gaussian_stop, a.gaussian_step) == (300, 3, 1, "sum*max", "layer", 8.0, 0.2)
    assert (cfg.graph.strategy, cfg.graph.max_neighbors, cfg.features.atom_features) == ("knn", 12, "ofm+cfid")
    assert (t.optimizer, t.lr, t.scheduler, t.noam_initial_lr, t.noam_final_lr, t.noam_warmup_epochs, t.batch_size, t.epochs) == \
        ("adam", 3e-4, "noam", 1e-4, 1e-5, 2.0, 64, 100)
    assert atom_inputs(cfg.features).width == 1494
