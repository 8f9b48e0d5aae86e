"""The Gong et al. descriptor bank: agreement with matminer, invariances, NaCl by hand, failures,
cache, workers and the ``featurize`` CLI."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from conftest import require_data
from pymatgen.core import Lattice, Structure

from crystalgnn.descriptors import (
    CATEGORICAL_DESCRIPTORS,
    CRYSTAL_SYSTEMS,
    DESCRIPTOR_NAMES,
    GLOBAL_DESCRIPTORS,
    LOCAL_DESCRIPTORS,
    DescriptorSettings,
    compute_descriptors,
    structure_descriptors,
    structure_voronoi,
)
from crystalgnn.descriptors.reference import matminer_descriptors
from crystalgnn.io import parse_structure
from crystalgnn.structures.source import StructureSource, structure_key

#: mp_elasticity3k ids: rocksalt SiC, zincblende InBi, hexagonal Hf2S, trigonal Al(CoSi)2,
#: monoclinic BaC2 and P2Ir, orthorhombic SiRu2, hcp Na (1-12 atoms: matminer stays quick).
ELASTICITY_IDS = ("8", "6", "0", "2", "72", "41", "9", "44")
INTEGER_DESCRIPTORS = ("natoms", "space_group_num", "crys_sys")
RTOL = 1e-6
#: Values that are zero by symmetry (a deviation of equal numbers) are round-off (~1e-16) in both.
ATOL = 1e-10


def _elasticity(item: str) -> Structure:
    folder = require_data("mp_elasticity3k")
    return parse_structure(path=folder / f"{item}.cif")


def _triclinic() -> Structure:
    """BaC2 strained and shaken into a generic P1 cell (no degenerate Voronoi vertices)."""
    s = _elasticity("72")
    rng = np.random.default_rng(7)
    strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
    frac = s.frac_coords + rng.normal(0, 0.01, size=s.frac_coords.shape)
    return Structure(Lattice(s.lattice.matrix @ strain), s.species, frac)


def _nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _matminer_reference(s: Structure) -> np.ndarray:
    """The reference featurizers with their default settings, as the descriptor bank defines them."""
    values, _, errors = matminer_descriptors(s)
    assert not errors, f"matminer failed: {errors}"
    return values


def _assert_same(ours: np.ndarray, ref: np.ndarray, label: str, names=DESCRIPTOR_NAMES) -> None:
    for k, name in enumerate(names):
        if name in INTEGER_DESCRIPTORS:
            assert ours[k] == ref[k], f"{label}: {name} {ours[k]} != {ref[k]}"
        else:
            np.testing.assert_allclose(ours[k], ref[k], rtol=RTOL, atol=ATOL, err_msg=f"{label}: {name}")


# ------------------------------------------------------------------------------ names
def test_names_and_groups() -> None:
    assert len(DESCRIPTOR_NAMES) == 29 and len(set(DESCRIPTOR_NAMES)) == 29
    assert LOCAL_DESCRIPTORS + GLOBAL_DESCRIPTORS == DESCRIPTOR_NAMES
    assert set(CATEGORICAL_DESCRIPTORS) <= set(GLOBAL_DESCRIPTORS)
    assert DESCRIPTOR_NAMES[-2:] == ("space_group_num", "crys_sys")
    assert CRYSTAL_SYSTEMS[0] == "triclinic" and CRYSTAL_SYSTEMS[-1] == "cubic"
    s = DescriptorSettings()
    assert s.key() == DescriptorSettings().key() and s.key() != DescriptorSettings(voronoi_tol=0.1).key()
    assert s.voronoi_tol == 0 and s.complexity_symprec == 0.1 and s.symmetry_symprec == 0.01


# ------------------------------------------------------------------------------ matminer
def test_agrees_with_matminer() -> None:
    pytest.importorskip("matminer")
    structures = [(item, _elasticity(item)) for item in ELASTICITY_IDS] + [("triclinic", _triclinic())]
    systems = set()
    for label, s in structures:
        ours, reasons = structure_descriptors(s)
        assert not reasons, f"{label}: {reasons}"
        ref = _matminer_reference(s)
        _assert_same(ours, ref, label)
        systems.add(int(ours[DESCRIPTOR_NAMES.index("crys_sys")]))
    assert len(systems) >= 6  # diverse: all crystal systems but one


def test_voronoi_facets_match_pymatgen() -> None:
    """Per site: the facets with a positive solid angle, their solid angle, area and volume."""
    from pymatgen.analysis.local_env import VoronoiNN

    s = _triclinic()
    vf = structure_voronoi(s)
    nn = VoronoiNN(compute_adj_neighbors=False)
    for i in range(len(s)):
        ref = sorted((v["face_dist"], v["solid_angle"], v["area"], v["volume"]) for v in nn.get_voronoi_polyhedra(s, i).values())
        rows = range(vf.ptr[i], vf.ptr[i + 1])
        ours = sorted((vf.face_dist[k], vf.solid_angle[k], vf.area[k], vf.volume[k]) for k in rows)
        np.testing.assert_allclose(np.array(ours), np.array(ref), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ invariances
def test_invariances() -> None:
    s = _triclinic()
    base, reasons = structure_descriptors(s)
    assert not reasons

    perm = np.random.default_rng(0).permutation(len(s))
    permuted = Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])
    _assert_same(structure_descriptors(permuted)[0], base, "permuted")

    # A site moved by a lattice vector (fractional coordinates outside [0, 1)) is the same crystal;
    # pymatgen's get_all_voronoi_polyhedra, hence matminer's StructuralHeterogeneity, can differ there.
    frac = s.frac_coords.copy()
    frac[0] += [1, -1, 0]
    frac[3, 2] -= 1
    _assert_same(structure_descriptors(Structure(s.lattice, s.species, frac))[0], base, "unwrapped")

    theta = 0.7
    axis = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * k @ k
    rotated = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    _assert_same(structure_descriptors(rotated)[0], base, "rotated")

    supercell = s * (2, 2, 2)
    sup = structure_descriptors(supercell)[0]
    intensive = LOCAL_DESCRIPTORS + ("density", "vpa", "packing_frac", "struct_comp_atom", "space_group_num", "crys_sys")
    idx = [DESCRIPTOR_NAMES.index(n) for n in intensive]
    _assert_same(sup[idx], base[idx], "2x2x2 supercell", names=intensive)
    assert sup[DESCRIPTOR_NAMES.index("natoms")] == 8 * len(s)


# ------------------------------------------------------------------------------ NaCl by hand
def test_nacl_by_hand() -> None:
    a = 5.64
    s = _nacl(a)
    v, reasons = structure_descriptors(s)
    assert not reasons
    d = dict(zip(DESCRIPTOR_NAMES, v))
    assert d["mean_CN_Voronoi"] == 6 and d["std_CN_Voronoi"] == 0
    assert d["vpa"] == pytest.approx(a**3 / 8, rel=1e-12)
    mass_g = 4 * (22.98976928 + 35.453) * 1.66053906660e-24
    assert d["density"] == pytest.approx(mass_g / (a * 1e-8) ** 3, rel=1e-5)
    assert d["mean_avg_bond_len"] == pytest.approx(a / 2, rel=1e-12)
    assert d["mean_avg_bond_ang"] == pytest.approx(math.pi / 2, rel=1e-12)
    for name in ("MAD_in_rela_bond_len", "max_neighb_dist_var", "MAD_in_rela_atom_vol", "std_avg_bond_len", "std_avg_bond_ang"):
        assert abs(d[name]) < 1e-12, name
    assert d["max_rela_bond_len"] == pytest.approx(1.0) and d["min_rela_bond_len"] == pytest.approx(1.0)
    # Two classes of 4 equivalent sites: 1 bit per atom.
    assert d["struct_comp_atom"] == pytest.approx(1.0) and d["struct_comp_cell"] == pytest.approx(8.0)
    assert d["space_group_num"] == 225 and CRYSTAL_SYSTEMS[int(d["crys_sys"])] == "cubic"
    # The Niggli reduction of the cubic *lattice* (not of the primitive cell) is the cube itself.
    assert (d["natoms"], d["a"], d["c"], d["alpha"], d["gamma"]) == pytest.approx((8, a, a, 90, 90))
    r_na, r_cl = 1.8, 1.0  # pymatgen's empirical atomic radii
    assert d["packing_frac"] == pytest.approx(4 * math.pi * 4 * (r_na**3 + r_cl**3) / (3 * a**3), rel=1e-9)


def test_voronoi_tol_on_perturbed_nacl() -> None:
    """tol = 0 (pymatgen's default) counts the sliver facets a 1e-4 Å perturbation creates."""
    from pymatgen.analysis.local_env import VoronoiNN

    s = _nacl()
    s.perturb(1e-4, min_distance=1e-4)
    cn = DESCRIPTOR_NAMES.index("mean_CN_Voronoi")
    loose = structure_descriptors(s)[0][cn]
    assert loose == np.mean([VoronoiNN().get_cn(s, i) for i in range(len(s))]) and loose > 6
    assert structure_descriptors(s, DescriptorSettings(voronoi_tol=0.1))[0][cn] == 6
    assert np.mean([VoronoiNN(tol=0.1).get_cn(s, i) for i in range(len(s))]) == 6
    with pytest.raises(ValueError):
        DescriptorSettings(bond_weight="mass")


# ------------------------------------------------------------------------------ failures
def _overlapping() -> Structure:
    return Structure(Lattice.cubic(5.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0.0001]])


def test_failures_give_nan_and_reason() -> None:
    v, reasons = structure_descriptors(_overlapping())
    assert np.isnan(v[[DESCRIPTOR_NAMES.index(n) for n in LOCAL_DESCRIPTORS]]).all()
    assert set(LOCAL_DESCRIPTORS) <= set(reasons) and "overlap" in reasons["mean_CN_Voronoi"]
    assert not np.isnan(v[DESCRIPTOR_NAMES.index("vpa")])
    assert set(reasons) == {n for n, x in zip(DESCRIPTOR_NAMES, v) if np.isnan(x)}

    lone = Structure(Lattice.cubic(200.0), ["Ar"], [[0, 0, 0]])  # cells far larger than the search radius
    v, reasons = structure_descriptors(lone)
    assert "isolated" in reasons["mean_avg_bond_len"]
    assert v[DESCRIPTOR_NAMES.index("natoms")] == 1


def test_table_cache_and_unreadable(tmp_path, monkeypatch) -> None:
    from crystalgnn.descriptors import compute

    good = [_nacl(), _triclinic()]
    structures = good + [_overlapping()]
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    sources.append(StructureSource(key="0" * 40, text="this is not a CIF", fmt="cif"))
    ids = ["nacl", "tri", "overlap", "garbage"]
    table = compute_descriptors(ids, sources, cache_dir=tmp_path, workers=1, progress=False)
    assert table.values.shape == (4, len(DESCRIPTOR_NAMES)) and table.names == DESCRIPTOR_NAMES
    assert not np.isnan(table.values[:2]).any() and np.isnan(table.values[3]).all()
    garbage = [p for p in table.problems if p.id == "garbage"]
    assert len(garbage) == 1 and garbage[0].stage == "descriptors"
    overlap = [p for p in table.problems if p.id == "overlap"]
    assert len(overlap) == int(np.isnan(table.values[2]).sum()) >= len(LOCAL_DESCRIPTORS)
    assert all("overlap" in p.reason for p in overlap if "CN" in p.reason)

    frame = table.to_frame()
    assert list(frame.columns) == ["id", *DESCRIPTOR_NAMES] and frame["id"].tolist() == ids
    picked = table.select(["vpa", "mean_CN_Voronoi"]).subset([2, 0])
    assert picked.ids == ["overlap", "nacl"] and picked.values.shape == (2, 2)
    assert [p.reason.split(":")[0] for p in picked.problems] == ["descriptor mean_CN_Voronoi"]

    def boom(*args, **kwargs):  # the second call must not compute anything that was cached
        raise AssertionError("recomputed a cached structure")

    monkeypatch.setattr(compute, "describe_one", boom)
    again = compute_descriptors(ids[:3], sources[:3], cache_dir=tmp_path, workers=1, progress=False)
    np.testing.assert_array_equal(again.values, table.values[:3])
    assert [str(p) for p in again.problems] == [str(p) for p in table.problems if p.id != "garbage"]
    assert list(tmp_path.glob(f"descriptors-{DescriptorSettings().key()}/shard-*.npz"))


def test_workers_match_serial() -> None:
    structures = [_elasticity(i) for i in ELASTICITY_IDS[:5]] + [_triclinic(), _overlapping()]
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    ids = [str(i) for i in range(len(sources))]
    serial = compute_descriptors(ids, sources, cache_dir=None, workers=1, progress=False)
    parallel = compute_descriptors(ids, sources, cache_dir=None, workers=2, progress=False, chunk_size=2)
    np.testing.assert_array_equal(parallel.values, serial.values)
    assert [str(p) for p in parallel.problems] == [str(p) for p in serial.problems]


# ------------------------------------------------------------------------------ CLI
def test_featurize_cli(tmp_path) -> None:
    from crystalgnn.cli.featurize import add_parser, run

    source = require_data("mp_elasticity3k")
    folder = tmp_path / "cifs"
    folder.mkdir()
    for item in ELASTICITY_IDS[:3]:
        (folder / f"{item}.cif").symlink_to(source / f"{item}.cif")
    (folder / "broken.cif").write_text("data_broken\nnot a cif at all\n")

    parser = argparse.ArgumentParser(prog="crystalgnn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out" / "descriptors.csv"
    args = parser.parse_args(["featurize", str(folder), "-o", str(out), "--workers", "1", "--no-cache", "--quiet"])
    assert args.func(args) == 0 and run is args.func
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["id", *DESCRIPTOR_NAMES]
    assert sorted(frame["id"].astype(str)) == sorted([*ELASTICITY_IDS[:3], "broken"])
    good = frame[frame["id"].astype(str) != "broken"]
    assert not good[list(DESCRIPTOR_NAMES)].isna().any().any()
    problems = pd.read_csv(tmp_path / "out" / "descriptors_problems.csv")
    assert list(problems.columns) == ["id", "stage", "reason"] and "broken" in problems["id"].astype(str).tolist()

    args = parser.parse_args(["featurize", str(folder), "-o", str(out), "--descriptors", "vpa,crys_sys", "--quiet",
                              "--cache-dir", str(tmp_path / "cache"), "--workers", "1"])
    assert run(args) == 0
    assert list(pd.read_csv(out).columns) == ["id", "vpa", "crys_sys"]
    with pytest.raises(SystemExit):
        run(parser.parse_args(["featurize", str(folder), "-o", str(out), "--descriptors", "nope"]))
