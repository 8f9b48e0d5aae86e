"""CrysToGraph: the reference graph, positional encodings, eTGC against its equations, per-crystal
attention against a dense masked reference, the sum-broadcast reproduction, invariances, training
end to end (save, load, predict, CLI)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.core.operations import SymmOp
from torch_geometric.data import Data
from torch_geometric.transforms import AddRandomWalkPE

from crystalgnn import cli
from crystalgnn.config import DataConfig, GraphConfig, ModelConfig, RunConfig, TrainConfig, defaults_for
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.graphs.neighbors import nearest_neighbors
from crystalgnn.graphs.positional import laplacian_pe, random_walk_pe
from crystalgnn.io import load_dataset
from crystalgnn.models import build_model
from crystalgnn.models.crystograph import (
    CrysToGraphConfig,
    EdgeTransformerConv,
    GraphWiseTransformer,
    crystal_attention,
)
from crystalgnn.predict import load_model
from crystalgnn.structures.source import StructureSource, structure_key
from crystalgnn.training.run import train

SMALL = CrysToGraphConfig(hidden=16, edge_width=12, angle_width=6, heads=2, atom_head_dim=8, bond_head_dim=4, etgc_layers=2)

# Low symmetry: no ties among the 12 nearest neighbours and simple Laplacian eigenvalues.
BASE = Structure(
    Lattice.from_parameters(4.1, 4.9, 5.6, 81, 97, 104),
    ["Li", "Fe", "O", "O", "P"],
    [[0.02, 0.03, 0.01], [0.51, 0.47, 0.55], [0.26, 0.71, 0.33], [0.77, 0.19, 0.82], [0.38, 0.12, 0.64]],
)
# Ten atoms at random positions in a triclinic cell: no symmetry at all (BASE * 2 has a translation
# that maps some Laplacian eigenvectors to their negatives, which no sign convention can resolve).
RANDOM10 = Structure(Lattice.from_parameters(5.3, 6.1, 6.8, 78, 95, 107), ["Li", "Li", "Fe", "Fe", "O", "O", "O", "O", "P", "P"],
                     np.random.default_rng(7).uniform(size=(10, 3)))
NACL = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _config(**arch) -> RunConfig:
    cfg = defaults_for("crystograph")
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=dataclasses.replace(SMALL, **arch)))


def _batch(structures, cfg: RunConfig):
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    store, ok, problems = build_graphs([str(i) for i in range(len(structures))], sources, cfg.graph_inputs(), None, workers=1, progress=False)
    assert ok.all(), problems
    return store.collate(np.arange(len(structures)))


def _predict(structures, cfg: RunConfig, seed: int = 0) -> np.ndarray:
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        return model(_batch(structures, cfg)).prediction.numpy().ravel()


def _rotated(structure: Structure, seed: int) -> Structure:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # a proper rotation
    rotated = structure.copy()
    rotated.apply_operation(SymmOp.from_rotation_and_translation(q, [0, 0, 0]))
    return rotated


# ------------------------------------------------------------------------------- graph inputs
def test_nearest_strategy_is_the_reference_directed_knn_graph():
    """Exactly 12 bonds into every atom, the 12 shortest of pymatgen's get_all_neighbors (the
    reference's search), not symmetrized."""
    nl = nearest_neighbors(BASE, 12)
    assert np.bincount(nl.target, minlength=len(BASE)).tolist() == [12] * len(BASE)
    for i, found in enumerate(BASE.get_all_neighbors(8.0)):
        expected = sorted(n.nn_distance for n in found)[:12]
        assert np.allclose(np.sort(nl.distances[nl.target == i]), expected, atol=1e-6)
    pairs = {(int(j), int(i), *map(int, im)) for j, i, im in zip(nl.source, nl.target, nl.images)}
    reverses = {(i, j, -a, -b, -c) for j, i, a, b, c in pairs}
    assert pairs != reverses  # directed: some bond has no reverse
    # the radius grows for a sparse cell (1 atom in 9 Å: no 12 neighbours within 8 Å)
    sparse = Structure(Lattice.cubic(9.0), ["Cu"], [[0, 0, 0]])
    assert len(nearest_neighbors(sparse, 12)) == 12


def test_defaults_give_the_paper_model_and_its_inputs():
    cfg = defaults_for("crystograph")
    assert cfg.graph.strategy == "nearest" and cfg.graph.line_graph
    assert cfg.graph_inputs().addons == ("positional_encodings",)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size, cfg.train.adam_beta2) == ("adamw", 1e-4, 32, 0.99)
    assert cfg.train.scheduler == "multistep" and cfg.train.milestones == ()
    arch = cfg.model.arch
    assert (arch.hidden, arch.edge_width, arch.heads, arch.etgc_layers, arch.gwt_layers, arch.gwt) == (256, 76, 8, 3, 1, "attention")
    no_pe = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=dataclasses.replace(arch, positional_encoding=False)))
    assert no_pe.graph_inputs().addons == ()
    model = build_model(cfg)
    assert model.bond_input.in_features == 42 and model.atom_input.project.in_features == 92
    reference = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=dataclasses.replace(arch, edge_features="reference")))
    assert build_model(reference).bond_input.in_features == 76  # 41 + 17 + 17 + 1


def test_positional_encodings_are_permutation_equivariant_and_padded():
    cfg = GraphConfig(strategy="nearest", addons=("positional_encodings",))
    graph = build_graph(RANDOM10, cfg)
    n = graph.num_atoms
    perm = np.random.default_rng(3).permutation(n)
    permuted = build_graph(_permuted(RANDOM10, perm), cfg)
    # eigenvalues of this graph are simple (checked), so the canonical signs make the vectors unique
    counts = np.zeros((n, n))
    np.add.at(counts, (graph.edge_index[0], graph.edge_index[1]), 1.0)
    sym = (counts + counts.T) / 2
    scale = 1 / np.sqrt(sym.sum(1))
    eigenvalues = np.linalg.eigvalsh(np.eye(n) - scale[:, None] * sym * scale[None, :])
    assert np.min(np.diff(eigenvalues)) > 1e-6
    np.testing.assert_allclose(permuted.laplacian_pe, graph.laplacian_pe[perm], atol=1e-5)
    np.testing.assert_allclose(permuted.random_walk_pe, graph.random_walk_pe[perm], atol=1e-6)
    # 10 atoms: 9 non-trivial eigenvectors, the rest zero; unit-norm columns
    assert np.allclose(graph.laplacian_pe[:, n - 1 :], 0) and np.allclose(np.linalg.norm(graph.laplacian_pe[:, : n - 1], axis=0), 1, atol=1e-5)


def _permuted(structure: Structure, perm: np.ndarray) -> Structure:
    return Structure(structure.lattice, [structure[int(i)].specie for i in perm], [structure[int(i)].frac_coords for i in perm])


def test_random_walk_encoding_agrees_with_pyg_on_a_simple_graph():
    """PyG's AddRandomWalkPE (on a graph without repeated bonds: it does not sum repeated entries,
    while a crystal graph repeats a pair through several images, which ours counts)."""
    rng = np.random.default_rng(5)
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, 9, size=(40, 2))}
    edge_index = np.array(sorted(pairs)).T
    ours = random_walk_pe(edge_index, 9, 20)
    data = AddRandomWalkPE(20, attr_name="pe")(Data(edge_index=torch.as_tensor(edge_index, dtype=torch.long), num_nodes=9))
    np.testing.assert_allclose(ours, data.pe.numpy(), atol=1e-5)
    # on a crystal graph: return probabilities, 0 after one step only without self-images
    graph = build_graph(NACL, GraphConfig(strategy="nearest"))
    walks = random_walk_pe(graph.edge_index, graph.num_atoms, 4)
    assert np.all((walks >= 0) & (walks <= 1)) and walks[:, 1].min() > 0


def test_laplacian_encoding_solves_the_normalized_laplacian():
    graph = build_graph(NACL * 2, GraphConfig(strategy="nearest"))
    n = graph.num_atoms
    pe = laplacian_pe(graph.edge_index, n, 20)
    counts = np.zeros((n, n))
    np.add.at(counts, (graph.edge_index[0], graph.edge_index[1]), 1.0)
    sym = (counts + counts.T) / 2
    scale = 1 / np.sqrt(sym.sum(1))
    lap = np.eye(n) - scale[:, None] * sym * scale[None, :]
    eigenvalues = np.linalg.eigvalsh(lap)
    rayleigh = np.einsum("ik,ij,jk->k", pe, lap, pe)
    np.testing.assert_allclose(rayleigh, eigenvalues[1:21], atol=1e-8)  # the 20 after the trivial one, in order
    np.testing.assert_allclose(pe.T @ pe, np.eye(20), atol=1e-8)
    # canonical sign: the largest-magnitude entry of each column is positive
    assert np.all(pe[np.argmax(np.abs(pe), axis=0), np.arange(20)] > 0)


# ------------------------------------------------------------------------------- the layers
def _etgc_by_the_equations(conv: EdgeTransformerConv, x: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor):
    """eTGC written term by term: loops over atoms, their incoming edges and heads."""
    heads, d = conv.heads, conv.head_dim
    q = conv.query(x).view(-1, heads, d)
    k = conv.key(x).view(-1, heads, d)
    v = conv.value(x).view(-1, heads, d)
    eps = conv.edge_project(e).view(-1, heads, d)
    new_x = torch.zeros(x.shape[0], heads * d)
    new_e = torch.zeros(e.shape[0], heads * d)
    for i in range(x.shape[0]):
        incoming = [m for m in range(edge_index.shape[1]) if int(edge_index[1, m]) == i]
        for head in range(heads):
            scores, values = [], []
            for m in incoming:
                j = int(edge_index[0, m])
                k_ij = conv.edge_key(torch.cat([k[i, head], k[j, head], eps[m, head]]))
                scores.append(torch.dot(q[i, head], k_ij) / math.sqrt(d))
                values.append(conv.edge_value(torch.cat([v[i, head], v[j, head], eps[m, head]])))
            alpha = torch.softmax(torch.stack(scores), 0)
            new_x[i, head * d : (head + 1) * d] = sum(a * val for a, val in zip(alpha, values))
            for a, m in zip(alpha, incoming):
                new_e[m, head * d : (head + 1) * d] = a * eps[m, head]
    x1 = x + conv.node_norm(conv.node_out(new_x))
    e1 = e + conv.edge_norm(conv.edge_out(new_e))
    return torch.nn.functional.softplus(x1 + conv.node_ffn(x1)), torch.nn.functional.softplus(e1 + conv.edge_ffn(e1))


def test_etgc_equals_its_equations_term_by_term():
    torch.manual_seed(1)
    conv = EdgeTransformerConv(width=10, edge_width=6, heads=2, head_dim=4).eval()
    for bn in (conv.node_ffn[-1], conv.edge_ffn[-1]):  # non-trivial running statistics
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x, e = torch.randn(5, 10), torch.randn(14, 6)
    edge_index = torch.tensor([[1, 2, 3, 0, 4, 2, 0, 1, 3, 4, 4, 0, 2, 3], [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4]])
    with torch.no_grad():
        fast = conv(x, edge_index, e)
        slow = _etgc_by_the_equations(conv, x, edge_index, e)
    torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], atol=1e-5, rtol=1e-5)
    # the line graph's form: the same node update with K_e∘W_e, V_e∘W_e composed; edges unchanged
    fixed = EdgeTransformerConv(width=10, edge_width=6, heads=2, head_dim=4, update_edges=False).eval()
    fixed.load_state_dict(conv.state_dict(), strict=False)
    with torch.no_grad():
        nodes, edges = fixed(x, edge_index, e)
    torch.testing.assert_close(nodes, slow[0], atol=1e-5, rtol=1e-5)
    assert edges is e and not hasattr(fixed, "edge_ffn")


def test_crystal_attention_equals_dense_masked_attention_and_ignores_the_rest_of_the_batch():
    torch.manual_seed(2)
    sizes = torch.tensor([3, 5, 3, 1, 4])
    n = int(sizes.sum())
    q, k, v = (torch.randn(n, 2, 4) for _ in range(3))
    crystal = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    ours = crystal_attention(q, k, v, sizes)
    scores = torch.einsum("ihd,jhd->hij", q, k) / 2.0  # √4
    scores = scores.masked_fill(crystal[None, :, None] != crystal[None, None, :], float("-inf"))
    dense = torch.einsum("hij,jhd->ihd", torch.softmax(scores, -1), v)
    torch.testing.assert_close(ours, dense, atol=1e-6, rtol=1e-5)
    # crystal 1 alone gives the same rows as inside the batch
    rows = slice(3, 8)
    alone = crystal_attention(q[rows], k[rows], v[rows], torch.tensor([5]))
    torch.testing.assert_close(alone, ours[rows], atol=1e-6, rtol=1e-5)


def test_sum_broadcast_reproduction_gives_zero_gradient_to_query_and_key():
    torch.manual_seed(3)
    layer = GraphWiseTransformer(8, 6, heads=2, head_dim=4, mode="sum-broadcast")
    x, e = torch.randn(7, 8), torch.randn(10, 6)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    edge_index = torch.tensor([[1, 2, 0, 0, 4, 5, 6, 3, 3, 5], [0, 0, 1, 2, 3, 3, 4, 5, 6, 6]])
    layer(x, batch, torch.tensor([3, 4]), edge_index, e).square().sum().backward()
    assert torch.count_nonzero(layer.query.weight.grad) == 0 and torch.count_nonzero(layer.query.bias.grad) == 0
    assert torch.count_nonzero(layer.key.weight.grad) == 0
    assert torch.count_nonzero(layer.value.weight.grad) > 0
    # every atom of a crystal receives the same sum over that crystal (before the residual path)
    attention = GraphWiseTransformer(8, 6, heads=2, head_dim=4, mode="attention")
    attention.load_state_dict(layer.state_dict())
    attention(x, batch, torch.tensor([3, 4]), edge_index, e).square().sum().backward()
    assert torch.count_nonzero(attention.key.weight.grad) > 0


# ------------------------------------------------------------------------------- invariances
def test_invariant_edges_are_rotation_invariant_reference_edges_are_not():
    structures = [BASE, _rotated(BASE, 0), _rotated(BASE, 1)]
    invariant = _predict(structures, _config())
    np.testing.assert_allclose(invariant[1:], invariant[0], atol=1e-5)
    reference = _predict(structures, _config(edge_features="reference"))
    assert np.max(np.abs(reference[1:] - reference[0])) > 1e-3  # lab-frame angles: documented, not invariant


def test_permutation_invariance_with_positional_encodings():
    perm = np.random.default_rng(0).permutation(10)
    out = _predict([RANDOM10, _permuted(RANDOM10, perm)], _config())
    np.testing.assert_allclose(out[1], out[0], atol=1e-5)


def test_supercell_invariance_without_positional_encodings():
    """Mean pooling, per-crystal softmax attention and the edge mean over every bond make the model
    independent of the cell; the positional encodings (a supercell is another graph) and the
    reference's sum-broadcast GwT (the sum over the crystal grows with it) do not."""
    cells = [BASE, BASE * (2, 1, 1), BASE * (1, 2, 2)]
    invariant = _predict(cells, _config(positional_encoding=False))
    np.testing.assert_allclose(invariant[1:], invariant[0], atol=1e-5)
    broadcast = _predict(cells, _config(positional_encoding=False, gwt="sum-broadcast"))
    assert np.max(np.abs(broadcast[1:] - broadcast[0])) > 1e-4
    encoded = _predict(cells, _config())
    assert np.max(np.abs(encoded[1:] - encoded[0])) > 1e-4  # documented: a supercell is another graph to the encodings


def test_ablations_change_the_model():
    cells = [BASE, NACL]
    full = _predict(cells, _config())
    for change in ({"gwt": "none"}, {"line_graph": False}, {"positional_encoding": False}):
        ablated = build_model(_config(**change))
        names = {name.split(".")[0] for name, _ in ablated.named_parameters()}
        if change.get("gwt") == "none":
            assert "gwts" not in names
        if change.get("line_graph") is False:
            assert "line_convs" not in names and "angle_input" not in names
        if change.get("positional_encoding") is False:
            assert "positional" not in names
        assert not np.allclose(_predict(cells, _config(**change)), full)


# ------------------------------------------------------------------------------- training end to end
def test_train_save_load_predict_round_trip(elasticity_slice, tmp_path):
    data = load_dataset(elasticity_slice, targets=[1], transform="log10")
    cfg = _config()
    cfg = dataclasses.replace(cfg, data=DataConfig(transform="log10"), train=dataclasses.replace(cfg.train, epochs=2, batch_size=16, threads=1))
    train(data, tmp_path / "run", cfg, workers=1, progress=False)
    saved = RunConfig.load(tmp_path / "run" / "config.json")
    assert saved.model.arch == cfg.model.arch and saved.graph == cfg.graph and saved.train.adam_beta2 == 0.99
    model = load_model(tmp_path / "run")
    predictions = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    fresh = model.predict([elasticity_slice / f"{i}.cif" for i in predictions["id"].astype(str)])
    np.testing.assert_array_equal(fresh["log10_target1"].to_numpy(), predictions["pred_log10_target1"].to_numpy().astype(np.float32))


def test_cli_trains_an_ablation_and_predicts(elasticity_slice, tmp_path):
    run = tmp_path / "cli"
    code = cli.main(["train", str(elasticity_slice), "--target", "1", "--transform", "log10", "--model", "crystograph", "--run-dir", str(run),
                     "--epochs", "1", "--batch-size", "16", "--quiet", "--threads", "1", "--workers", "1",
                     "--hidden", "16", "--edge-width", "8", "--angle-width", "4", "--heads", "2", "--atom-head-dim", "8",
                     "--bond-head-dim", "2", "--etgc-layers", "1", "--gwt", "sum-broadcast", "--no-positional-encoding"])
    assert code == 0
    saved = RunConfig.load(run / "config.json")
    assert saved.model.arch.gwt == "sum-broadcast" and not saved.model.arch.positional_encoding
    assert cli.main(["predict", str(run), str(elasticity_slice / "3.cif"), "-o", str(tmp_path / "p.csv")]) == 0
    assert np.isfinite(pd.read_csv(tmp_path / "p.csv")["log10_target1"].iloc[0])


def test_multistep_without_milestones_steps_at_a_third():
    from crystalgnn.training.module import CrystalModule

    cfg = _config()
    module = CrystalModule(build_model(cfg), None, TrainConfig(scheduler="multistep", milestones=(), epochs=9))  # type: ignore[arg-type]
    module.trainer = type("T", (), {"max_epochs": 9, "estimated_stepping_batches": 9})()  # type: ignore[assignment]
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert list(scheduler.milestones) == [3]
    assert ModelConfig(name="crystograph").arch == CrysToGraphConfig()


@pytest.mark.parametrize("mode", ["attention", "sum-broadcast"])
def test_gwt_runs_in_bf16_autocast(mode):
    cells = [BASE, NACL]
    cfg = _config(gwt=mode)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = _batch(cells, cfg)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch).prediction
    assert torch.isfinite(out.float()).all()
