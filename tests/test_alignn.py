"""ALIGNN: line graph, undirected kNN graph, the edge-gated convolution, invariances, training end to end."""

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
from crystalgnn.config import DataConfig, GraphConfig, ModelConfig, RunConfig, defaults_for
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.graphs.schema import graph_key
from crystalgnn.graphs.store import GraphStore
from crystalgnn.io import load_dataset
from crystalgnn.models import build_model
from crystalgnn.models.alignn import ALIGNNConfig
from crystalgnn.models.blocks import EdgeGatedConv, RBFExpansion
from crystalgnn.predict import load_model
from crystalgnn.structures.source import StructureSource, structure_key
from crystalgnn.training.run import train

GRAPH = GraphConfig(strategy="knn", line_graph=True)
SMALL = ALIGNNConfig(alignn_layers=2, gcn_layers=1, hidden_features=16, embedding_features=8)

# Low symmetry, so the 12 nearest neighbours have no ties and the graph is unique.
BASE = Structure(
    Lattice.from_parameters(4.1, 4.9, 5.6, 81, 97, 104),
    ["Li", "Fe", "O", "O", "P"],
    [[0.02, 0.03, 0.01], [0.51, 0.47, 0.55], [0.26, 0.71, 0.33], [0.77, 0.19, 0.82], [0.38, 0.12, 0.64]],
)
NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _batch(structures, cfg: GraphConfig = GRAPH):
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    store, ok, problems = build_graphs([str(i) for i in range(len(structures))], sources, cfg, None, workers=1, progress=False)
    assert ok.all(), problems
    return store.collate(np.arange(len(structures)))


def _model(pooling="mean", descriptors=0, norm="batch"):
    torch.manual_seed(0)
    cfg = RunConfig(graph=GRAPH, model=ModelConfig(name="alignn", pooling=pooling, arch=dataclasses.replace(SMALL, norm=norm),
                                                   descriptors=("vpa", "density")[:descriptors]))
    model = build_model(cfg)
    for m in model.modules():  # non-trivial running statistics, so eval mode is not an identity
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


# ---------------------------------------------------------------------------------------- graphs
def test_knn_graph_is_undirected_with_ties():
    graph = build_graph(NACL, GRAPH)
    source, target = graph.edge_index
    edges = {(int(t), int(s), *map(int, img)) for s, t, img in zip(source, target, graph.edge_images)}
    assert len(edges) == graph.num_edges  # no duplicates
    assert all((s, t, -a, -b, -c) in edges for t, s, a, b, c in edges)  # every bond both ways
    # 6 Cl at 2.82 Å then 12 Na at 3.99 Å: the 12th neighbour is in the second shell, ties kept.
    assert np.bincount(target).tolist() == [18] * 8


def test_line_graph_pairs_and_angles_match_the_geometry():
    graph = build_graph(BASE, GRAPH)
    source, target = graph.edge_index
    pairs = set(map(tuple, graph.line_index.T.tolist()))
    # Every pair of bonds (j → i, i → k), backtracking included (DGL's line_graph default).
    expected = {(a, b) for a in range(graph.num_edges) for b in np.flatnonzero(source == target[a]).tolist()}
    assert pairs == expected and len(pairs) == graph.num_line_edges
    assert graph.num_line_edges == int((np.bincount(target) ** 2).sum())
    # Angle at i between i→j and i→k, from pymatgen's coordinates and the stored images.
    lattice, frac = BASE.lattice.matrix, BASE.frac_coords
    a, b = graph.line_index.astype(int)
    i = target[a]
    to_j = (frac[source[a]] + graph.edge_images[a] - frac[i]) @ lattice
    to_k = (frac[target[b]] - graph.edge_images[b] - frac[i]) @ lattice
    cos = np.einsum("ij,ij->i", to_j, to_k) / np.linalg.norm(to_j, axis=1) / np.linalg.norm(to_k, axis=1)
    np.testing.assert_allclose(graph.angle_cosines, cos, atol=2e-6)
    assert np.allclose(graph.angle_cosines[b == np.array([_reverse(graph, e) for e in a])], 1.0, atol=1e-6)


def _reverse(graph, edge: int) -> int:
    s, t = graph.edge_index[:, edge]
    img = graph.edge_images[edge]
    matches = np.flatnonzero((graph.edge_index[0] == t) & (graph.edge_index[1] == s) & (graph.edge_images == -img).all(1))
    return int(matches[0])


def test_line_graphs_batch_cache_and_report_memory(tmp_path):
    structures = [BASE, NACL]
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    fresh, _, _ = build_graphs(["a", "b"], sources, GRAPH, tmp_path, workers=1, progress=False)
    cached, ok, _ = build_graphs(["a", "b"], sources, GRAPH, tmp_path, workers=1, progress=False)
    assert ok.all() and (tmp_path / f"graphs-{graph_key(GRAPH)}").exists()
    np.testing.assert_array_equal(fresh.line_index, cached.line_index)
    np.testing.assert_array_equal(fresh.angle_cosines, cached.angle_cosines)
    batch = fresh.collate([1, 0])
    first = fresh.graph(1)
    # Line-graph indices of the second crystal are shifted by the first crystal's edges.
    second = batch.line_index[:, first.num_line_edges :] - first.num_edges
    np.testing.assert_array_equal(second.numpy(), fresh.graph(0).line_index)
    memory = fresh.nbytes_per_graph()
    assert memory["line_graph"] == 12 * fresh.num_line_edges.mean()  # int32 pair + float32 cosine
    assert GraphStore.from_graphs(["c"], [build_graph(NACL, GraphConfig())]).has_line_graphs is False


# ----------------------------------------------------------------------------------------- model
def test_rbf_widths_follow_the_reference():
    """exp(−(u − μ)²/Δ) with Δ the spacing of the centres (not Δ²): 80 on 0–8 Å, 40 on −1…1."""
    rbf = RBFExpansion(0.0, 8.0, 80)
    assert rbf.gamma == pytest.approx(79 / 8)
    value = rbf(torch.tensor([1.0]))[0, 10]  # centre 10 · 8/79 Å
    assert float(value) == pytest.approx(np.exp(-(79 / 8) * (1.0 - 80 / 79) ** 2), rel=1e-6)
    assert RBFExpansion(-1.0, 1.0, 40).gamma == pytest.approx(39 / 2)


def test_edge_gated_convolution_follows_the_equations():
    torch.manual_seed(1)
    conv = EdgeGatedConv(4, norm="layer")
    x, e = torch.randn(3, 4), torch.randn(5, 4)
    edge_index = torch.tensor([[1, 2, 0, 2, 1], [0, 0, 1, 1, 2]])  # (source j, target i)
    with torch.no_grad():
        new_x, new_e = conv(x, edge_index, e)
        w = conv.node_maps.weight.chunk(4, 0)
        b = conv.node_maps.bias.chunk(4, 0)
        W_s, W_d, U_d, U_s = (lambda v, k=k: v @ w[k].T + b[k] for k in range(4))
        W_e = conv.edge_gate
        for i in range(3):
            into = [k for k in range(5) if edge_index[1, k] == i]
            m = {k: W_s(x[i]) + W_d(x[edge_index[0, k]]) + W_e(e[k]) for k in into}
            sig = {k: torch.sigmoid(m[k]) for k in into}
            h = sum(sig[k] * U_d(x[edge_index[0, k]]) for k in into) / (sum(sig.values()) + 1e-6)
            torch.testing.assert_close(new_x[i], x[i] + torch.nn.functional.silu(conv.norm_nodes(U_s(x[i]) + h)))
            for k in into:
                torch.testing.assert_close(new_e[k], e[k] + torch.nn.functional.silu(conv.norm_edges(m[k])))


def test_edge_gated_convolution_under_bf16_autocast():
    """The in-place product of the gate (not autocast by itself) casts as autocast's addmm would."""
    torch.manual_seed(2)
    conv = EdgeGatedConv(8, norm="batch")
    x, e = torch.randn(6, 8, requires_grad=True), torch.randn(10, 8, requires_grad=True)
    edge_index = torch.tensor([[1, 2, 3, 0, 4, 5, 0, 1, 2, 3], [0, 0, 1, 1, 2, 2, 3, 4, 5, 5]])
    reference = conv(x, edge_index, e)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        new_x, new_e = conv(x, edge_index, e)
    (new_x.float().sum() + new_e.float().sum()).backward()
    assert x.grad is not None and e.grad is not None and conv.edge_gate.weight.grad is not None
    for ours, ref in zip((new_x, new_e), reference):
        torch.testing.assert_close(ours.float(), ref.detach(), atol=0.1, rtol=0.05)


def test_heap_threshold_is_opt_in(tmp_path):
    import os
    import subprocess
    import sys

    code = "from crystalgnn.training.trainer import fix_heap_threshold as f; print(f(), f())"
    for value, expected in (("", "0 0"), ("1048576", "1048576 1048576" if sys.platform.startswith("linux") else "0 0")):
        env = {**os.environ, "CRYSTALGNN_MMAP_THRESHOLD": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert out.split() == expected.split()


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_permutation_rotation_and_batching_invariance(norm):
    model = _model(norm=norm)
    order = [3, 0, 4, 1, 2]
    permuted = Structure(BASE.lattice, [BASE[i].species for i in order], [BASE[i].frac_coords for i in order])
    moved = BASE.copy()
    moved.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0, translation_vec=[0.3, -1.2, 2.0]))
    with torch.no_grad():
        reference = model(_batch([BASE])).prediction
        for other in (permuted, moved):
            torch.testing.assert_close(model(_batch([other])).prediction, reference, rtol=1e-5, atol=1e-5)
        together = model(_batch([NACL, BASE, NACL])).prediction
    torch.testing.assert_close(together[1], reference[0], rtol=1e-5, atol=1e-5)


def test_supercell_mean_same_sum_eightfold_site_contributions():
    supercell = BASE * (2, 2, 2)
    with torch.no_grad():
        mean = _model("mean")
        torch.testing.assert_close(mean(_batch([supercell])).prediction, mean(_batch([BASE])).prediction, rtol=1e-4, atol=1e-5)
        total = _model("sum")
        torch.testing.assert_close(total(_batch([supercell])).prediction, 8 * total(_batch([BASE])).prediction, rtol=1e-4, atol=1e-4)
        site = _model("site")
        batch = _batch([BASE, NACL])
        out = site(batch)
    per_crystal = torch.stack([out.site_contributions[batch.batch == g].mean(0) for g in range(2)])
    torch.testing.assert_close(per_crystal, out.prediction)


def test_descriptors_join_after_pooling():
    model = _model(descriptors=2)
    head = model.readout.head
    assert head[0].in_features == 16 + 2 and sum(isinstance(m, torch.nn.Linear) for m in head) == 3  # Gong's 2 layers
    plain_head = _model().readout.head
    assert len(plain_head) == 1 and plain_head[0].in_features == 16  # reference: pooled → Linear
    batch = _batch([BASE])
    with torch.no_grad():
        a = model(batch, torch.tensor([[10.0, 3.0]])).prediction
        b = model(batch, torch.tensor([[12.0, 3.0]])).prediction
    assert not torch.allclose(a, b)


def test_reference_defaults_and_a_clear_error_without_line_graphs():
    cfg = defaults_for("alignn")
    a = cfg.model.arch
    assert (a.alignn_layers, a.gcn_layers, a.hidden_features, a.embedding_features, a.edge_bins, a.angle_bins) == (4, 4, 256, 64, 80, 40)
    assert (cfg.graph.strategy, cfg.graph.max_neighbors, cfg.graph.cutoff, cfg.graph.line_graph) == ("knn", 12, 8.0, True)
    t = cfg.train
    assert (t.optimizer, t.scheduler, t.batch_size, t.lr, t.weight_decay, t.epochs) == ("adamw", "onecycle", 64, 1e-2, 1e-5, 300)
    assert a.norm == "layer"  # batch norm breaks down on degenerate inputs (README, Known limits)
    broken = dataclasses.replace(cfg, graph=GraphConfig(strategy="knn"))
    with pytest.raises(ValueError, match="line graphs"):
        broken.check()
    with pytest.raises(ValueError, match="line graphs"):
        _model()(_batch([BASE], GraphConfig(strategy="knn")))


# -------------------------------------------------------------------------------------- training
def _config(**model) -> RunConfig:
    base = defaults_for("alignn")
    return dataclasses.replace(
        base,
        data=DataConfig(transform="log10"),
        model=dataclasses.replace(base.model, arch=SMALL, **model),
        train=dataclasses.replace(base.train, epochs=2, batch_size=16, threads=1),
    )


def test_train_save_load_predict_identical_with_descriptors(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[0, 1], transform="log10")
    cfg = _config(descriptors=("vpa", "density", "mean_CN_Voronoi"))
    result = train(data, tmp_path / "run", cfg, progress=False)
    saved = RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.model.arch == SMALL and saved.graph.line_graph and saved.model.name == "alignn"
    assert set(result.metrics["test"]) == {"target0", "target1"}
    model = load_model(tmp_path / "run")
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in predictions["id"].astype(str)])
    for name in ("target0", "target1"):
        np.testing.assert_array_equal(fresh[f"log10_{name}"].to_numpy(), predictions[f"pred_log10_{name}"].to_numpy().astype(np.float32))


def test_cli_alignn_classification_and_site_contributions(elasticity_slice, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    rows = []
    for line in (elasticity_slice / "id_prop.csv").read_text().splitlines():
        cid, k, g, *_ = line.split(",")
        rows.append(f"{cid},{int(float(g) > 40)}")
        (labels / f"{cid}.cif").symlink_to(elasticity_slice / f"{cid}.cif")
    (labels / "id_prop.csv").write_text("\n".join(rows) + "\n")
    common = ["--model", "alignn", "--alignn-layers", "1", "--gcn-layers", "1", "--hidden", "8", "--embedding", "8",
              "--epochs", "1", "--batch-size", "16", "--threads", "1", "--workers", "1", "--quiet"]
    assert cli.main(["train", str(labels), "--run-dir", str(tmp_path / "cls"), "--task", "classification", *common]) == 0
    metrics = json.loads((tmp_path / "cls" / "metrics.json").read_text())
    assert "accuracy" in next(iter(metrics["test"].values()))
    assert cli.main(["train", str(elasticity_slice), "--target", "1", "--transform", "log10", "--pooling", "site",
                     "--run-dir", str(tmp_path / "site"), *common]) == 0
    out = tmp_path / "pred.csv"
    sites = tmp_path / "sites.csv"
    assert cli.main(["predict", str(tmp_path / "site"), str(elasticity_slice / "3.cif"), "-o", str(out), "--site-contributions", str(sites)]) == 0
    per_site = pd.read_csv(sites)
    assert len(per_site) == len(Structure.from_file(elasticity_slice / "3.cif"))
    assert per_site["log10_target1"].mean() == pytest.approx(pd.read_csv(out)["log10_target1"].iloc[0], rel=1e-4)
    capsys.readouterr()


def test_probe_and_periodicity_take_alignn(elasticity_slice, tmp_path, capsys):
    from crystalgnn.analysis.periodicity import PeriodicityStudy, cell_config

    with pytest.raises(ValueError, match="conv8"):
        PeriodicityStudy(model="alignn", variants=("default", "conv8"))
    cell = cell_config("nbr18", PeriodicityStudy(model="alignn", variants=("nbr18",)))
    assert cell.model.name == "alignn" and cell.graph.line_graph and cell.graph.max_neighbors == 18
    argv = ["probe", str(elasticity_slice), "--out", str(tmp_path / "probe"), "--model", "alignn", "--all-symmetries",
            "--no-composition", "--descriptors", "vpa,a,mean_CN_Voronoi", "--epochs", "1", "--batch-size", "16", "--threads", "1",
            "--workers", "1", "--hidden", "8", "--embedding", "8", "--alignn-layers", "1", "--gcn-layers", "1", "--quiet"]
    assert cli.main(argv) == 0
    table = pd.read_csv(tmp_path / "probe" / "probe.csv")
    assert set(table["descriptor"]) == {"vpa", "a", "mean_CN_Voronoi"} and "r2_alignn" in table.columns
    summary = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert summary["model"] == "alignn" and "crystal_system_accuracy_alignn" in summary
    capsys.readouterr()


def test_bf16_mixed_training_predicts_in_float32(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = _config()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, precision="bf16-mixed", epochs=1))
    train(data, tmp_path / "run", cfg, progress=False)
    model = load_model(tmp_path / "run")
    assert model.cfg.train.precision == "bf16-mixed"
    saved = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in saved["id"].astype(str)])
    assert fresh["log10_target1"].dtype == np.float32  # the model's own output: float32, not bfloat16
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy(), saved["pred_log10_target1"].to_numpy().astype(np.float32))
