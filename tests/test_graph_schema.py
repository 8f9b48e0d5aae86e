"""The graph schema: an add-on defined here, outside the package, goes through build, cache, slicing,
concatenation, collation and the memory report with no edit of src; old shards still load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgnn.config import GraphConfig, stable_hash
from crystalgnn.graphs import schema
from crystalgnn.graphs.cache import GraphCache, build_graphs
from crystalgnn.graphs.crystal_graph import CrystalGraph, build_graph
from crystalgnn.graphs.schema import AddOn, Field, graph_key, register_addon, registered
from crystalgnn.graphs.store import GraphStore
from crystalgnn.structures.source import StructureSource, structure_key

STRUCTURES = [
    Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    Structure(Lattice.from_parameters(3.1, 4.2, 5.3, 63, 75, 118), ["Si", "O", "O"], [[0, 0, 0], [0.3, 0.2, 0.1], [0.7, 0.6, 0.55]]),
    Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    Structure(Lattice.from_parameters(2.55, 2.55, 2.55, 60, 60, 60), ["Cu"], [[0, 0, 0]]),
]
IDS = [str(i) for i in range(len(STRUCTURES))]


@dataclasses.dataclass(frozen=True)
class CoordinationGraphConfig(GraphConfig):
    """A config with the test add-on's setting (GraphConfig itself has none for it)."""

    coordination_shell: float = 0.0  # > 0: build the add-on, counting bonds up to this length (Å)


def _build_coordination(structure, arrays, cfg):
    """Coordination number, the local number of each atom's shortest bond, and the cell volume."""
    centre, length = arrays["edge_index"][1], arrays["edge_distances"]
    n = len(arrays["atomic_numbers"])
    coordination = np.bincount(centre[length <= cfg.coordination_shell], minlength=n)
    by_centre = np.lexsort((length, centre))  # every atom has a bond (radius graphs raise otherwise)
    nearest = by_centre[np.searchsorted(centre[by_centre], np.arange(n))]
    return {"coordination": coordination, "nearest_bond": nearest, "cell_volume": structure.volume}


COORDINATION = AddOn(
    name="coordination",
    version=1,
    fields=(
        Field("coordination", "node", np.int16, batch_name="coordination", batch_dtype=np.int64),
        Field("nearest_bond", "node", np.int32, batch_name="nearest_bond", batch_dtype=np.int64, index_of="edge"),
        Field("cell_volume", "graph", np.float32, batch_name="cell_volume"),
    ),
    build=_build_coordination,
    enabled=lambda cfg: getattr(cfg, "coordination_shell", 0.0) > 0,
    settings=lambda cfg: {"shell": cfg.coordination_shell},
)
CFG = CoordinationGraphConfig(coordination_shell=3.0)


def _sources(structures=STRUCTURES):
    return [StructureSource(key=structure_key(s), structure=s) for s in structures]


@pytest.fixture
def coordination():
    with registered(COORDINATION) as addon:
        yield addon
    assert "coordination" not in {a.name for a in schema.addons()}  # other tests never see it


def _check_coordination(graph, shell=CFG.coordination_shell):
    """The add-on's arrays of ``graph`` say what they should about its bonds."""
    centre, length = graph.edge_index[1], graph.edge_distances
    np.testing.assert_array_equal(graph.coordination, np.bincount(centre[length <= shell], minlength=graph.num_atoms))
    nearest = graph.nearest_bond
    assert (centre[nearest] == np.arange(graph.num_atoms)).all()  # a bond of that atom ...
    assert all(length[nearest[i]] == length[centre == i].min() for i in range(graph.num_atoms))  # ... its shortest


def _assert_same(a: GraphStore, b: GraphStore):
    assert a.parts == b.parts and a.ptrs.keys() == b.ptrs.keys() and a.arrays.keys() == b.arrays.keys()
    np.testing.assert_array_equal(a.keys, b.keys)
    for level in a.ptrs:
        np.testing.assert_array_equal(a.ptrs[level], b.ptrs[level])
    for name in a.arrays:
        assert a.arrays[name].dtype == b.arrays[name].dtype
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])


def test_addon_is_built_only_when_enabled(coordination):
    plain = GraphConfig()
    # as before add-ons and GraphConfig.addons: old caches stay valid (f6139fd0... is the key they were built under)
    before_addons = {k: v for k, v in dataclasses.asdict(plain).items() if k != "addons"}
    assert graph_key(plain) == plain.key() == stable_hash(before_addons)[:16] == "f6139fd075000fd0"
    assert schema.parts_for(plain) == ("atom_graph",) and schema.parts_for(CFG) == ("atom_graph", "coordination")
    graph = build_graph(STRUCTURES[1], CFG)
    base = build_graph(STRUCTURES[1], plain)
    assert graph.parts == ("atom_graph", "coordination")
    assert graph.coordination.dtype == np.int16 and graph.nearest_bond.dtype == np.int32
    _check_coordination(graph)
    assert graph.cell_volume.shape == () and graph.cell_volume == np.float32(STRUCTURES[1].volume)
    for name, array in base.arrays.items():  # the atom graph is untouched by the add-on
        np.testing.assert_array_equal(getattr(graph, name), array)
    assert graph.num_line_edges == 0 and graph.line_index.shape == (2, 0)  # no line graph: empty, as always
    with pytest.raises(AttributeError, match="no field 'coordination'"):
        _ = build_graph(STRUCTURES[1], plain).coordination


def test_addon_enters_the_cache_key(coordination):
    keys = {graph_key(CFG), graph_key(dataclasses.replace(CFG, coordination_shell=2.0))}
    saved = schema.unregister_addon("coordination")
    try:
        keys.add(graph_key(CFG))  # same settings, add-on not registered: not built, so another folder
        register_addon(dataclasses.replace(COORDINATION, version=2))
        keys.add(graph_key(CFG))
    finally:
        schema.unregister_addon("coordination")
        register_addon(saved)
    assert len(keys) == 4


def test_addon_is_cached_sliced_concatenated_and_reported(coordination, tmp_path, monkeypatch):
    store, ok, problems = build_graphs(IDS, _sources(), CFG, tmp_path, workers=2, chunk_size=1, progress=False)  # forked workers
    assert ok.all() and not problems and store.parts == ("atom_graph", "coordination")
    for i in range(len(store)):
        _check_coordination(store.graph(i))
    np.testing.assert_allclose(store.cell_volume, [s.volume for s in STRUCTURES], rtol=1e-6)

    # Written and read back without pickle; the warm run builds nothing.
    shard = next(p for p in tmp_path.rglob("shard-*") if p.is_dir())
    stored = {f.stem for f in shard.glob("*.npy")}
    assert {"coordination", "nearest_bond", "cell_volume"} <= stored
    assert {"line_ptr", "line_index", "angle_cosines"}.isdisjoint(stored)  # parts not built are not stored
    import crystalgnn.graphs.cache as cache_mod

    monkeypatch.setattr(cache_mod, "build_one", lambda *a: pytest.fail("cache miss on a warm cache"))
    warm, ok, _ = build_graphs(IDS, _sources(), CFG, tmp_path, workers=1, progress=False)
    assert ok.all()
    _assert_same(warm, store)
    monkeypatch.undo()

    # take and concat
    part = store.take([2, 0])
    np.testing.assert_array_equal(part.coordination, np.concatenate([store.graph(2).coordination, store.graph(0).coordination]))
    np.testing.assert_array_equal(part.cell_volume, store.cell_volume[[2, 0]])
    _assert_same(GraphStore.concat([store.take([3]), store.take([1, 0, 2])]), store.take([3, 1, 0, 2]))
    with pytest.raises(ValueError, match="different parts"):
        GraphStore.concat([store, GraphStore.from_graphs(["x"], [build_graph(STRUCTURES[0], GraphConfig())])])

    # memory report: int16 + int32 per atom, one float32 per crystal
    memory = store.nbytes_per_graph()
    assert memory["coordination"] == 6 * store.num_atoms.mean() + 4
    assert memory["line_graph"] == 0.0 and memory["atom_graph"] > 0


def test_addon_is_collated_with_batch_offsets(coordination):
    store, _, _ = build_graphs(IDS, _sources(), CFG, None, workers=1, progress=False)
    batch = store.collate([2, 0, 3], np.array([[1.0], [2.0], [3.0]]))
    assert list(batch.to_dict())[-6:] == ["coordination", "nearest_bond", "cell_volume", "num_graphs", "graph_index", "y"]
    assert str(batch.coordination.dtype) == str(batch.nearest_bond.dtype) == "torch.int64"
    np.testing.assert_array_equal(batch.cell_volume.numpy(), store.cell_volume[[2, 0, 3]])
    edges = np.concatenate([[0], np.cumsum(store.num_edges[[2, 0, 3]])])
    atoms = np.concatenate([[0], np.cumsum(store.num_atoms[[2, 0, 3]])])
    for k, i in enumerate([2, 0, 3]):
        nodes = slice(atoms[k], atoms[k + 1])
        np.testing.assert_array_equal(batch.coordination[nodes].numpy(), store.graph(i).coordination)
        np.testing.assert_array_equal(batch.nearest_bond[nodes].numpy() - edges[k], store.graph(i).nearest_bond)
        # the offset index points at the same bond in the batch as in its graph
        np.testing.assert_array_equal(batch.edge_dist[batch.nearest_bond[nodes]].numpy(),
                                      store.graph(i).edge_distances[store.graph(i).nearest_bond])

    # The atom-graph part of the batch is the one a plain store gives.
    plain, _, _ = build_graphs(IDS, _sources(), GraphConfig(cutoff=CFG.cutoff), None, workers=1, progress=False)
    base = plain.collate([2, 0, 3], np.array([[1.0], [2.0], [3.0]]))
    assert list(base.to_dict()) == [k for k in batch.to_dict() if k not in ("coordination", "nearest_bond", "cell_volume")]
    for k in base.keys():
        value = base[k]
        assert (value == batch[k]).all() if hasattr(value, "shape") else value == batch[k]


def test_addon_after_the_line_graph(coordination):
    cfg = CoordinationGraphConfig(strategy="knn", line_graph=True, coordination_shell=3.0)
    store, _, _ = build_graphs(IDS, _sources(), cfg, None, workers=1, progress=False)
    assert store.parts == ("atom_graph", "line_graph", "coordination") and store.has_line_graphs
    keys = list(store.collate([1, 0]).to_dict())
    assert keys.index("angle_cos") < keys.index("coordination") < keys.index("num_graphs")
    assert set(store.nbytes_per_graph()) == {"atom_graph", *(a.name for a in schema.addons())}
    assert store.nbytes_per_graph()["reverse_edges"] == 0.0 < store.nbytes_per_graph()["coordination"]


def test_store_of_an_unregistered_addon_does_not_load(tmp_path):
    with registered(COORDINATION):
        build_graphs(IDS[:1], _sources(STRUCTURES[:1]), CFG, tmp_path, workers=1, progress=False)
    with pytest.raises(ValueError, match=r"\['coordination'\] are not registered"):
        GraphStore.load(next(p for p in tmp_path.rglob("shard-*") if p.is_dir()))


def test_registration_refuses_clashes(coordination):
    clash = dataclasses.replace(COORDINATION, name="other")
    with pytest.raises(ValueError, match="field name 'coordination' is taken"):
        register_addon(clash)
    with pytest.raises(ValueError, match="already registered"):
        register_addon(COORDINATION)
    renamed = Field("coordination2", "node", np.int16, batch_name="z")
    with pytest.raises(ValueError, match="batch name 'z' is taken"):
        register_addon(dataclasses.replace(COORDINATION, name="other", fields=(renamed,)))
    with pytest.raises(ValueError, match="index field needs an integer dtype"):
        Field("bad", "node", np.float32, index_of="edge")
    assert [a.name for a in schema.addons()][-1] == "coordination" and "line_graph" in {a.name for a in schema.addons()}


def test_field_names_cannot_hide_behind_store_or_graph_attributes():
    taken = {n for cls in (GraphStore, CrystalGraph) for n in dir(cls) if not n.startswith("_")} | {"keys", "arrays", "ptrs"}
    for name in sorted(taken):
        addon = AddOn(name="hidden", version=1, fields=(Field(name, "node", np.int16),), build=_build_coordination, enabled=bool)
        with pytest.raises(ValueError, match=f"field name '{name}' is taken"):
            register_addon(addon)


def test_wrong_width_from_a_builder_is_reported():
    wide = AddOn(name="wide", version=1, fields=(Field("wide", "node", np.float32, (4,)),),
                 build=lambda s, arrays, cfg: {"wide": np.zeros((len(arrays["atomic_numbers"]), 3))}, enabled=lambda cfg: True)
    with registered(wide):
        with pytest.raises(ValueError, match=r"graph add-on 'wide': field 'wide' has shape \(2, 3\); expected width \(4,\)"):
            build_graph(STRUCTURES[0], GraphConfig())


@pytest.mark.parametrize("cfg", [GraphConfig(), GraphConfig(strategy="knn", line_graph=True)], ids=["radius", "line-graph"])
def test_shards_written_before_the_schema_still_load(tmp_path, cfg):
    """Old shards: no ``parts``; ``line_ptr``/``line_index``/``angle_cosines`` always there, empty without line graph."""
    store, _, _ = build_graphs(IDS, _sources(), cfg, None, workers=1, progress=False)
    old = {"keys": store.keys, "node_ptr": store.node_ptr, "edge_ptr": store.edge_ptr}
    for name in ("atomic_numbers", "positions", "lattices", "edge_index", "edge_distances", "edge_vectors", "edge_images",
                 "line_ptr", "line_index", "angle_cosines"):
        old[name] = getattr(store, name)
    path = GraphCache(cfg, tmp_path).folder
    path.mkdir(parents=True)
    np.savez(path / "shard-old.npz", **old)
    np.save(path / "shard-old.keys.npy", store.keys)
    found, hit = GraphCache(cfg, tmp_path).lookup([k.decode() for k in store.keys])
    assert hit.all()
    _assert_same(found, store)
    assert found.has_line_graphs is cfg.line_graph
