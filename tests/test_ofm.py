"""The orbital field matrix (OCrystalNet's atom input): one-hot vectors, per-site sums from one
Voronoi tessellation, the ``ofm`` graph add-on, and one tessellation per structure shared with
the descriptor bank."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import require_data
from pymatgen.core import Lattice, Structure

from crystalgnn.config import GraphConfig
from crystalgnn.descriptors import voronoi
from crystalgnn.descriptors.bank import DescriptorSettings
from crystalgnn.descriptors.compute import compute_descriptors
from crystalgnn.descriptors.ofm import orbital_field_sums
from crystalgnn.errors import StructureError
from crystalgnn.features.ofm import ANG_TO_BOHR, OFM_MAX_Z, expand_ofm, ofm_width, orbital_one_hot_table
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.graphs.crystal_graph import build_graph
from crystalgnn.structures.source import StructureSource, structure_key

#: mp_elasticity3k crystals (Materials Project), one per crystal system, ≤ 12 atoms, on which
#: matminer's OFM is finite (no Voronoi neighbour is an image of its own centre).
MATMINER_FINITE = {"triclinic": 609, "monoclinic": 41, "orthorhombic": 9, "tetragonal": 1, "trigonal": 85,
                   "hexagonal": 43, "cubic": 8}
#: Of these, crystals where every Voronoi neighbour image is also the nearest image of its site, so
#: matminer's minimum-image distance equals the facet distance (ours by default).
FACET_EQUALS_MATMINER = (8, 331)  # SiC (cubic), TlAsPd5 (tetragonal)


def _cif(i: int) -> Structure:
    path = require_data("mp_elasticity3k", f"{i}.cif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(path)


def _matminer(structure: Structure, period_tag: bool) -> np.ndarray:
    matrix = pytest.importorskip("matminer.featurizers.structure.matrix")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ofms = matrix.OrbitalFieldMatrix(period_tag=period_tag).get_atom_ofms(structure)
    return np.array([np.asarray(m) for m in ofms])


def _ours(structure: Structure, period_tag: bool, distance: str = "facet") -> np.ndarray:
    size = 39 if period_tag else 32
    flat = expand_ofm(orbital_field_sums(structure, distance=distance), structure.atomic_numbers, period_tag)
    return flat[:, : size * size].reshape(len(structure), size, size)


def _rocksalt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_one_hot_table_matches_matminer():
    matrix = pytest.importorskip("matminer.featurizers.structure.matrix")
    from pymatgen.core import Element

    table = orbital_one_hot_table()
    assert table.shape == (OFM_MAX_Z + 1, 39) and not table[0].any()
    assert ANG_TO_BOHR == matrix.ANG_TO_BOHR
    ref = matrix.OrbitalFieldMatrix(period_tag=True)
    for z in range(1, OFM_MAX_Z + 1):
        np.testing.assert_array_equal(table[z], ref.get_ohv(Element.from_Z(z), True), err_msg=f"Z={z}")


@pytest.mark.parametrize("period_tag", [False, True])
def test_matches_matminer_on_all_crystal_systems(period_tag):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    seen = set()
    for system, i in MATMINER_FINITE.items():
        s = _cif(i)
        assert len(s) <= 12
        assert SpacegroupAnalyzer(s).get_crystal_system() == system
        seen.add(system)
        ref = _matminer(s, period_tag)
        assert np.isfinite(ref).all()
        # matminer's r_k is the minimum-image distance of the neighbour's site (see orbital_field_sums)
        np.testing.assert_allclose(_ours(s, period_tag, "matminer"), ref, rtol=1e-6, atol=1e-12, err_msg=f"{system} ({i})")
    assert seen == {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
    for i in FACET_EQUALS_MATMINER:  # the default (facet distance) equals matminer where the images agree
        s = _cif(i)
        np.testing.assert_allclose(_ours(s, period_tag), _matminer(s, period_tag), rtol=1e-6, atol=1e-12)


def test_facet_and_matminer_distances_differ_in_small_cells():
    s = _cif(9)  # SiRu2, orthorhombic: some Voronoi neighbour image is not its site's nearest image
    facet, nearest = orbital_field_sums(s), orbital_field_sums(s, distance="matminer")
    assert np.all(nearest >= facet - 1e-12) and not np.allclose(facet, nearest)
    # a neighbour that is an image of its own centre: matminer divides by 0 (inf/NaN), the facet distance does not
    one = Structure(Lattice.cubic(3.0), ["Po"], [[0, 0, 0]])
    assert np.isfinite(orbital_field_sums(one)).all()
    assert np.isinf(orbital_field_sums(one, distance="matminer")).any()


def test_rocksalt_by_hand():
    s = _rocksalt()
    graph = build_graph(s, GraphConfig(addons=("ofm",)))
    sums = graph.arrays["ofm_sums"]
    assert sums.shape == (len(s), 39) and sums.dtype == np.float32
    flat = expand_ofm(sums, graph.arrays["atomic_numbers"])
    na = int(np.flatnonzero(np.asarray(s.atomic_numbers) == 11)[0])
    matrix = flat[na, :1024].reshape(32, 32)
    expected = 6 / (2.82 * 1.8897543773)
    rows, cols = np.nonzero(matrix)
    # neighbour Cl (3s2 3p5: s2 = index 1, p5 = index 6) × centre Na (3s1: s1 = index 0)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(1, 0), (6, 0)]
    np.testing.assert_allclose(matrix[rows, cols], expected, rtol=1e-6)
    np.testing.assert_array_equal(flat[na, 1024:], orbital_one_hot_table()[11, :32])
    np.testing.assert_allclose(orbital_field_sums(s)[na, [1, 6]], 6 / (2.82 * ANG_TO_BOHR), rtol=1e-12)


def test_expand_ofm_layout():
    rng = np.random.default_rng(0)
    z = np.array([1, 26, 57, 94])
    sums = rng.random((4, 39))
    for tag, size, width in ((False, 32, 1056), (True, 39, 1560)):
        out = expand_ofm(sums, z, period_tag=tag)
        assert out.shape == (4, width) and ofm_width(tag) == width
        o = orbital_one_hot_table()[z, :size]
        for c in range(4):
            np.testing.assert_array_equal(out[c, : size * size], np.outer(sums[c, :size], o[c]).ravel())
            np.testing.assert_array_equal(out[c, size * size :], o[c])
    with pytest.raises(ValueError):
        expand_ofm(sums[:, :30], z)
    with pytest.raises(ValueError):
        expand_ofm(sums, np.array([1, 2, 3, 95]))


def test_elements_beyond_94_are_the_items_problem():
    cm = Structure(Lattice.cubic(3.5), ["Cm", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureError, match=r"Cm \(Z=96\).*Z 1–94"):
        orbital_field_sums(cm)
    structures = [_rocksalt(), cm]
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    store, ok, problems = build_graphs(["nacl", "cm-oxide"], sources, GraphConfig(addons=("ofm",)), None, workers=1, progress=False)
    assert ok.tolist() == [True, False] and len(store) == 1
    assert [p.id for p in problems] == ["cm-oxide"]
    assert "Cm (Z=96)" in problems[0].reason


def test_one_tessellation_per_structure_for_graph_and_descriptors(tmp_path, monkeypatch):
    structures = [_cif(i) for i in (8, 43, 85)] + [_rocksalt()]
    ids = [f"s{i}" for i in range(len(structures))]
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    settings = DescriptorSettings()
    calls = []
    real = voronoi.periodic_voronoi

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(voronoi, "periodic_voronoi", counting)
    voronoi.clear_voronoi_memo()
    store, ok, problems = build_graphs(ids, sources, GraphConfig(addons=("ofm",)), tmp_path, workers=1, progress=False,
                                       describe=settings)
    assert ok.all() and not problems
    assert len(calls) == len(structures)  # one tessellation each, for the OFM add-on and the descriptors
    table = compute_descriptors(ids, sources, settings, cache_dir=tmp_path, workers=1, progress=False)
    assert len(calls) == len(structures)  # all found in the descriptor cache
    voronoi.clear_voronoi_memo()
    fresh = compute_descriptors(ids, sources, settings, cache_dir=None, workers=1, progress=False)
    assert len(calls) == 2 * len(structures)
    np.testing.assert_array_equal(table.values, fresh.values)
    # and the sums in the graphs are those of the memoised tessellation
    for g, s in enumerate(structures):
        rows = slice(int(store.node_ptr[g]), int(store.node_ptr[g + 1]))
        np.testing.assert_allclose(store.ofm_sums[rows], orbital_field_sums(s), rtol=1e-6)
