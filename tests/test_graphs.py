"""Neighbour search, graph construction and the on-disk graph cache."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgnn.config import GraphConfig
from crystalgnn.graphs.cache import GraphCache, build_graphs
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.graphs.neighbors import (
    IsolatedAtomError,
    all_neighbors,
    brute_force_neighbors,
    knn_neighbors,
    radius_neighbors,
)
from crystalgnn.structures.source import StructureSource, structure_key


def _edge_set(nl):
    return sorted(zip(nl.target.tolist(), nl.source.tolist(), map(tuple, nl.images.tolist())))


SMALL_CELLS = {
    # 1-atom cells: every neighbour is a periodic image; the cutoff spans several cells.
    "bcc_Fe": Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "fcc_primitive_Cu": Structure(Lattice.from_parameters(2.55, 2.55, 2.55, 60, 60, 60), ["Cu"], [[0, 0, 0]]),
    # Strongly skewed triclinic cell: the naive ±1-image search would miss neighbours.
    "triclinic": Structure(
        Lattice.from_parameters(3.1, 4.2, 5.3, 63, 75, 118), ["Si", "O", "O"], [[0, 0, 0], [0.3, 0.2, 0.1], [0.7, 0.6, 0.55]]
    ),
    "needle": Structure(Lattice.from_parameters(1.6, 9.0, 9.0, 90, 90, 40), ["C"], [[0, 0, 0]]),
}


@pytest.mark.parametrize("name", sorted(SMALL_CELLS))
@pytest.mark.parametrize("cutoff", [4.0, 8.0])
def test_neighbor_list_matches_brute_force(name, cutoff):
    s = SMALL_CELLS[name]
    fast, slow = all_neighbors(s, cutoff), brute_force_neighbors(s, cutoff)
    assert len(fast) > 0
    assert _edge_set(fast) == _edge_set(slow)
    # distances and bond vectors agree edge by edge
    key = {e: d for e, d in zip(_edge_set(slow), np.array(slow.distances)[np.lexsort((slow.images[:, 2], slow.images[:, 1], slow.images[:, 0], slow.source, slow.target))])}
    order = np.lexsort((fast.images[:, 2], fast.images[:, 1], fast.images[:, 0], fast.source, fast.target))
    for e, d in zip(_edge_set(fast), fast.distances[order]):
        assert d == pytest.approx(key[e], abs=1e-8)
    np.testing.assert_allclose(np.linalg.norm(fast.vectors, axis=1), fast.distances, atol=1e-8)


def test_radius_keeps_the_nearest_twelve():
    s = SMALL_CELLS["triclinic"]
    full = brute_force_neighbors(s, 8.0)
    nl = radius_neighbors(s, 8.0, 12)
    assert np.all(np.bincount(nl.target) == 12)
    for i in range(len(s)):
        expected = np.sort(full.distances[full.target == i])[:12]
        np.testing.assert_allclose(np.sort(nl.distances[nl.target == i]), expected, atol=1e-8)


def test_knn_includes_ties_and_grows_the_cutoff():
    # bcc: 8 nearest at a√3/2, then 6 at a. k=12 cuts inside the second shell -> all 14 kept.
    s = SMALL_CELLS["bcc_Fe"]
    nl = knn_neighbors(s, k=12, cutoff=1.0, cutoff_growth=1.0)  # 1 Å finds nothing: radius must grow
    assert np.all(np.bincount(nl.target) == 14)
    assert nl.distances.max() == pytest.approx(2.87, abs=1e-6)


def test_isolated_atom_is_reported():
    s = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(IsolatedAtomError, match="no neighbour within 8 Å"):
        radius_neighbors(s, 8.0, 12)


def test_graph_fields_are_consistent():
    s = SMALL_CELLS["triclinic"]
    g = build_graph(s, GraphConfig())
    assert g.edge_index.shape == (2, g.num_edges)
    src, dst = g.edge_index
    recon = g.positions[src] + g.edge_images @ g.lattice - g.positions[dst]
    np.testing.assert_allclose(recon, g.edge_vectors, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(g.edge_vectors, axis=1), g.edge_distances, atol=1e-4)


def shard_folders(root):
    """The graph cache's shards under ``root`` (one folder of ``.npy`` files each)."""
    return [p for p in root.rglob("shard-*") if p.is_dir()]


def _sources(structures):
    return [StructureSource(key=structure_key(s), structure=s) for s in structures]


def test_cache_round_trip_and_selective_rebuild(tmp_path, monkeypatch):
    structures = [SMALL_CELLS[n] for n in sorted(SMALL_CELLS)]
    ids = sorted(SMALL_CELLS)
    cfg = GraphConfig()
    store, ok, problems = build_graphs(ids, _sources(structures), cfg, tmp_path, workers=1, progress=False)
    assert ok.all() and not problems
    assert len(shard_folders(tmp_path)) == 1

    # Warm: nothing is built again (the builder would fail loudly if called).
    import crystalgnn.graphs.cache as cache_mod

    monkeypatch.setattr(cache_mod, "build_one", lambda *a: pytest.fail("cache miss on a warm cache"))
    warm, ok2, _ = build_graphs(ids, _sources(structures), cfg, tmp_path, workers=1, progress=False)
    assert ok2.all()
    for name in ("atomic_numbers", "edge_index", "edge_distances", "edge_vectors", "edge_images", "node_ptr", "edge_ptr"):
        np.testing.assert_array_equal(getattr(warm, name), getattr(store, name))
    monkeypatch.undo()

    # A changed structure is rebuilt, the others come from the cache.
    changed = structures[0].copy()
    changed.perturb(0.05, min_distance=0.05)
    built = []
    real_build_one = cache_mod.build_one
    monkeypatch.setattr(cache_mod, "build_one", lambda src, c: built.append(src.key) or real_build_one(src, c))
    build_graphs(ids, _sources([changed] + structures[1:]), cfg, tmp_path, workers=1, progress=False)
    assert built == [structure_key(changed)]

    # A changed setting gets its own cache folder.
    built.clear()
    build_graphs(ids, _sources(structures), GraphConfig(max_neighbors=8), tmp_path, workers=1, progress=False)
    assert len(built) == len(structures)
    assert len({p.parent for p in shard_folders(tmp_path)}) == 2


def test_cache_files_load_without_pickle(tmp_path):
    structures = [SMALL_CELLS[n] for n in sorted(SMALL_CELLS)]
    build_graphs(sorted(SMALL_CELLS), _sources(structures), GraphConfig(), tmp_path, workers=1, progress=False)
    files = list(tmp_path.rglob("*.npy"))
    assert files
    for f in files:
        assert np.load(f, allow_pickle=False).dtype != object  # raises if an array needed pickle
    store, hit = GraphCache(GraphConfig(), tmp_path).lookup([structure_key(structures[1]), "not-a-key"])
    assert hit.tolist() == [True, False] and len(store) == 1


def test_parallel_build_matches_serial(tmp_path):
    rng = np.random.default_rng(0)
    structures = []
    for _ in range(80):
        s = SMALL_CELLS["triclinic"].copy()
        s.perturb(0.1 * rng.random() + 0.01)
        structures.append(s)
    ids = [str(i) for i in range(80)]
    serial, _, _ = build_graphs(ids, _sources(structures), GraphConfig(), None, workers=1, progress=False)
    parallel, _, _ = build_graphs(ids, _sources(structures), GraphConfig(), None, workers=2, progress=False, chunk_size=8)
    np.testing.assert_array_equal(serial.edge_distances, parallel.edge_distances)
    np.testing.assert_array_equal(serial.edge_index, parallel.edge_index)


def test_store_collate_offsets():
    structures = [SMALL_CELLS[n] for n in sorted(SMALL_CELLS)]
    store, _, _ = build_graphs(sorted(SMALL_CELLS), _sources(structures), GraphConfig(), None, workers=1, progress=False)
    batch = store.collate([2, 0], np.array([[1.0], [2.0]]))
    n2, n0 = store.num_atoms[2], store.num_atoms[0]
    assert batch.num_nodes == n2 + n0
    assert batch.batch.tolist() == [0] * n2 + [1] * n0
    # edges of the second graph point at its own (offset) atoms
    second = batch.edge_index[:, store.num_edges[2] :]
    assert second.min() >= n2 and second.max() < n2 + n0
    np.testing.assert_array_equal(batch.edge_dist.numpy(), np.concatenate([store.graph(2).edge_distances, store.graph(0).edge_distances]))


def test_cache_split_into_shards_returns_graphs_in_request_order(tmp_path):
    names = sorted(SMALL_CELLS)
    structures = [SMALL_CELLS[n] for n in names]
    store, _, _ = build_graphs(names, _sources(structures), GraphConfig(), None, workers=1, progress=False)
    cache = GraphCache(GraphConfig(), tmp_path, shard_size=2)
    cache.add(store)
    assert len(shard_folders(tmp_path)) == 2
    keys = [structure_key(s) for s in structures]
    wanted = [keys[3], keys[0], keys[2]]  # across both shards, out of order
    found, hit = cache.lookup(wanted)
    assert hit.all()
    for got, want in zip(range(3), [3, 0, 2]):
        np.testing.assert_array_equal(found.graph(got).edge_distances, store.graph(want).edge_distances)
