"""Readers and the structure parser: every layout on real data, every bad input on small files."""

from __future__ import annotations

import builtins
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, STRICT_DATA
from pymatgen.core import Lattice, Structure

from crystalgnn.io import load_dataset, parse_structure, validate_structure
from crystalgnn.structures.parse import format_from_path
from crystalgnn.structures.source import bytes_key, file_key, structure_key

CGCNN_REG = DATA / "cgcnn_sample" / "sample-regression"

# Under CI=true a missing ../shared/data fails these tests (they run and find no files).
needs_data = pytest.mark.skipif(not DATA.is_dir() and not STRICT_DATA, reason=f"shared data not found at {DATA}")


def _problem_ids(ds) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in ds.problems:
        out.setdefault(p.id, []).append(p.reason)
    return out


def _cif_text(name: str = "1000041") -> str:
    return (CGCNN_REG / f"{name}.cif").read_text()


def _simple_structures() -> list[Structure]:
    return [
        Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]),
        Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]),
    ]


# ------------------------------------------------------------------------------------------
# parse.py
# ------------------------------------------------------------------------------------------


def test_format_from_path():
    assert format_from_path("a/b/1000041.cif") == "cif"
    assert format_from_path("POSCAR-JVASP-10.vasp") == "poscar"
    assert format_from_path("POSCAR") == "poscar"
    assert format_from_path("run/CONTCAR_relaxed") == "poscar"
    assert format_from_path("x.json") == "json"
    assert format_from_path("frames.extxyz") == "extxyz"
    assert format_from_path("frames.xyz") == "extxyz"
    assert format_from_path("thing.cif.gz") == "cif"
    assert format_from_path("thing.traj") == "ase"


@needs_data
def test_parse_structure_cif_poscar_json_roundtrip(tmp_path):
    s_file = parse_structure(path=CGCNN_REG / "1000041.cif")
    s_text = parse_structure(text=_cif_text(), fmt="cif")
    assert len(s_file) == len(s_text) > 0
    assert s_file.composition.reduced_formula == "NaCl"
    s_vasp = parse_structure(path=str(DATA / "alignn_sample" / "POSCAR-JVASP-10.vasp"), fmt="poscar")
    assert len(s_vasp) > 0
    s_json = parse_structure(text=json.dumps(s_file.as_dict()), fmt="json")
    assert np.allclose(s_json.lattice.matrix, s_file.lattice.matrix)
    # ASE route
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    ase.io.write(tmp_path / "one.extxyz", AseAtomsAdaptor.get_atoms(s_file), format="extxyz")
    s_ase = parse_structure(path=tmp_path / "one.extxyz", fmt="extxyz")
    assert s_ase.composition == s_file.composition


def test_parse_structure_cell_as_given():
    """CGCNN used the cell as given: no reduction to the primitive cell."""
    conv = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert len(conv) == 8
    assert len(parse_structure(text=conv.to(fmt="cif"), fmt="cif")) == 8


def test_parse_structure_silences_warnings():
    import warnings

    # fractional coordinates that pymatgen rounds (it warns about that when not silenced)
    cif = _simple_structures()[2].to(fmt="cif").replace("0.33333333", "0.3333").replace("0.66666667", "0.6667")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_structure(text=cif, fmt="cif")


# ------------------------------------------------------------------------------------------
# id_prop layouts on real data
# ------------------------------------------------------------------------------------------


@needs_data
def test_cgcnn_sample_regression():
    ds = load_dataset(CGCNN_REG)
    assert len(ds) == 10 and ds.problems == []
    assert ds.target_names == ["target"]
    assert ds.targets.shape == (10, 1)
    assert ds.targets[:, 0].tolist() == [float(i) for i in range(1, 11)]
    assert ds.meta["format"] == "cgcnn" and ds.meta["source"] == str(CGCNN_REG.absolute())
    src = ds.sources[0]
    assert src.structure is None and src.fmt == "cif" and Path(src.path).name == "1000041.cif"
    assert src.key == file_key(src.path)
    s = src.load()
    assert s.composition.reduced_formula == "NaCl"
    assert validate_structure(s) is None


@needs_data
def test_mp_elasticity_is_lazy(monkeypatch):
    """3191 CIFs are hashed, never parsed: any parse attempt during reading fails the test."""
    import pymatgen.io.cif

    def boom(*args, **kwargs):
        raise AssertionError("a reader parsed a structure")

    monkeypatch.setattr(pymatgen.io.cif.CifParser, "parse_structures", boom)
    monkeypatch.setattr(pymatgen.io.cif.CifParser, "__init__", boom)
    monkeypatch.setattr(Structure, "from_file", boom)

    ds = load_dataset(DATA / "mp_elasticity3k")
    assert len(ds) == 3191 and ds.problems == []
    assert ds.targets.shape == (3191, 3)
    assert ds.target_names == ["target0", "target1", "target2"]
    assert all(s.structure is None and s.path.endswith(".cif") for s in ds.sources)
    assert len({s.key for s in ds.sources}) > 3000
    first = ds.ids.index("0")
    assert ds.targets[first].tolist() == [131.0, 74.0, 0.26]

    logk = load_dataset(DATA / "mp_elasticity3k", targets=[0, "target1"], transform="log10", max_rows=5)
    assert logk.target_names == ["target0", "target1"]
    assert logk.targets[0] == pytest.approx([math.log10(131.0), math.log10(74.0)])
    assert logk.meta["transform"] == "log10"


@needs_data
def test_alignn_sample_uses_exact_file_names():
    ds = load_dataset(DATA / "alignn_sample")
    assert len(ds) == 50 and ds.problems == []
    assert ds.meta["format"] == "alignn"
    assert all(i.startswith("POSCAR-JVASP-") and i.endswith(".vasp") for i in ds.ids)
    assert all(s.fmt == "poscar" and Path(s.path).name == i for s, i in zip(ds.sources, ds.ids))
    assert len(ds.sources[0].load()) > 0


@needs_data
def test_id_prop_csv_path_directly():
    ds = load_dataset(CGCNN_REG / "id_prop.csv", max_rows=3)
    assert ds.ids == ["1000041", "1000050", "1101051"]
    assert ds.meta["format"] == "id_prop_csv"


# ------------------------------------------------------------------------------------------
# tables on real data
# ------------------------------------------------------------------------------------------


@needs_data
def test_matminer_dielectric_refractive_index():
    path = DATA / "matminer2018" / "dielectric_constant.csv.gz"
    ds = load_dataset(path, "n", max_rows=25)
    assert len(ds) == 25 and ds.problems == []
    assert ds.target_names == ["n"] and ds.meta["format"] == "csv"
    assert all(i.startswith("mp-") for i in ds.ids)
    assert np.all((ds.targets > 1.0) & (ds.targets < 10.0))  # refractive indices
    src = ds.sources[0]
    assert src.text and src.fmt == "cif" and src.structure is None
    assert src.key == bytes_key(src.text.encode())
    assert validate_structure(src.load()) is None
    with pytest.raises(ValueError, match="'n'"):
        load_dataset(path, max_rows=5)  # several numeric columns: must choose, and they are listed


@needs_data
def test_perov5_heat_ref():
    ds = load_dataset(DATA / "perov5_partial" / "val.csv.gz", "heat_ref", max_rows=40)
    assert len(ds) == 40 and ds.target_names == ["heat_ref"]
    assert ds.ids[0] == "18517"
    assert ds.targets[0, 0] == pytest.approx(2.709152583232041)
    assert len(ds.sources[0].load()) == 5
    with pytest.raises(ValueError, match="unknown target column 'nope'"):
        load_dataset(DATA / "perov5_partial" / "val.csv.gz", "nope", max_rows=3)


@needs_data
def test_flla_literal_eval_structures(monkeypatch):
    def no_eval(*args, **kwargs):
        raise AssertionError("eval must never be used on data")

    monkeypatch.setattr(builtins, "eval", no_eval)
    ds = load_dataset(DATA / "matminer2018" / "flla_2015.csv.gz", "formation_energy_per_atom", max_rows=6)
    assert len(ds) == 6 and ds.problems == []
    assert ds.ids[0] == "mp-10"
    src = ds.sources[0]
    assert src.structure is not None and src.structure.composition.reduced_formula == "As"
    assert src.load() is src.structure


@needs_data
def test_carbon24_single_numeric_column_is_automatic():
    ds = load_dataset(DATA / "carbon24_partial" / "val.csv.gz", max_rows=10)
    assert ds.target_names == ["energy_per_atom"] and len(ds) == 10


# ------------------------------------------------------------------------------------------
# JSON, extxyz, in-memory
# ------------------------------------------------------------------------------------------


@needs_data
def test_matbench_json_gz(tmp_path):
    structures = [parse_structure(path=CGCNN_REG / f"{n}.cif") for n in ("1000041", "1000050", "1101051")]
    doc = {
        "index": ["mb-0", "mb-1", "mb-2"],
        "columns": ["structure", "e_form"],
        "data": [[s.as_dict(), -1.0 - i] for i, s in enumerate(structures)],
    }
    path = tmp_path / "matbench_toy.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(doc, fh)
    ds = load_dataset(path)
    assert ds.ids == ["mb-0", "mb-1", "mb-2"]
    assert ds.target_names == ["e_form"] and ds.targets[:, 0].tolist() == [-1.0, -2.0, -3.0]
    assert ds.meta["format"] == "matbench_json"
    d = doc["data"][0][0]
    assert ds.sources[0].key == bytes_key(json.dumps(d, sort_keys=True, separators=(",", ":")).encode())
    assert ds.sources[0].structure is not None

    records = [{"id": f"r{i}", "structure": s.as_dict(), "gap": 0.5 * i} for i, s in enumerate(structures)]
    rpath = tmp_path / "records.json"
    rpath.write_text(json.dumps(records))
    ds2 = load_dataset(rpath, "gap")
    assert ds2.ids == ["r0", "r1", "r2"] and ds2.meta["format"] == "json_records"


def test_extxyz_targets_from_info(tmp_path):
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for i, s in enumerate(_simple_structures()):
        atoms = AseAtomsAdaptor.get_atoms(s)
        atoms.info["bandgap"] = 0.5 + i
        atoms.info["id"] = f"frame-{i}"
        atoms.calc = SinglePointCalculator(atoms, energy=-3.0 * (i + 1))
        frames.append(atoms)
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, frames, format="extxyz")

    ds = load_dataset(path, "bandgap")
    assert ds.ids == ["frame-0", "frame-1", "frame-2"]
    assert ds.targets[:, 0].tolist() == [0.5, 1.5, 2.5]
    assert ds.meta["format"] == "ase:extxyz"
    s = ds.sources[1].structure
    assert s is not None and ds.sources[1].key == structure_key(s)
    both = load_dataset(path, ["bandgap", "energy"])  # energy lives in the calculator results
    assert both.targets[:, 1].tolist() == [-3.0, -6.0, -9.0]
    with pytest.raises(ValueError, match="bandgap"):
        load_dataset(path)  # two numeric properties: ambiguous


def test_in_memory_structures_and_atoms():
    from pymatgen.io.ase import AseAtomsAdaptor

    structures = _simple_structures()
    ds = load_dataset(structures, target_values=np.array([1.0, 2.0, 3.0]))
    assert ds.ids == ["0", "1", "2"] and ds.targets.shape == (3, 1)
    assert ds.sources[0].key == structure_key(structures[0]) and ds.sources[0].structure is structures[0]
    assert ds.meta == {"source": "<in-memory>", "format": "in_memory", "transform": "none"}

    atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    ds2 = load_dataset(atoms, "gap", ids=["a", "b", "c"], target_values=[0.1, 0.2, 0.3])
    assert ds2.ids == ["a", "b", "c"] and ds2.target_names == ["gap"]
    assert ds2.sources[2].structure.composition == structures[2].composition

    multi = load_dataset(structures, target_values={"k": [1, 2, 3], "g": [4, 5, 6]})
    assert multi.target_names == ["k", "g"] and multi.targets[2].tolist() == [3.0, 6.0]

    predict = load_dataset(structures, targets=[])
    assert predict.targets.shape == (3, 0) and predict.target_names == []

    bad = load_dataset(structures, target_values=[1.0, float("nan"), 3.0])
    assert bad.ids == ["0", "2"]
    assert "NaN" in _problem_ids(bad)["1"][0]


# ------------------------------------------------------------------------------------------
# bad inputs: each item is named in problems, never silently dropped
# ------------------------------------------------------------------------------------------


def _make_cgcnn_folder(root: Path, id_prop: str, cifs: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "id_prop.csv").write_text(id_prop)
    for name, text in cifs.items():
        (root / f"{name}.cif").write_text(text)
    return root


def test_header_detection_and_names(tmp_path):
    s = _simple_structures()[1].to(fmt="cif")
    qmof_like = _make_cgcnn_folder(
        tmp_path / "q", "id,target,split\nm1,0.5,train\nm2,1.5,test\n", {"m1": s, "m2": s}
    )
    ds = load_dataset(qmof_like)
    assert ds.target_names == ["target"] and ds.meta["header"] is True
    assert ds.meta["extra_columns"]["split"] == {"m1": "train", "m2": "test"}
    with pytest.raises(ValueError, match="not numeric"):
        load_dataset(qmof_like, "split")

    multi = _make_cgcnn_folder(tmp_path / "m", "m1,1,2,3\nm2,4,5,6\n", {"m1": s, "m2": s})
    ds = load_dataset(multi, [2, "target0"])
    assert ds.target_names == ["target2", "target0"] and ds.targets.tolist() == [[3.0, 1.0], [6.0, 4.0]]
    with pytest.raises(ValueError, match="out of range"):
        load_dataset(multi, 3)
    with pytest.raises(ValueError, match="unknown target column"):
        load_dataset(multi, "bandgap")
    assert load_dataset(multi, []).targets.shape == (2, 0)


def test_structures_dir_and_data_subfolder(tmp_path):
    s = _simple_structures()[0].to(fmt="cif")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "id_prop.csv").write_text("7,1.0\n8,2.0\n")
    (tmp_path / "extracted" / "data").mkdir(parents=True)
    for i in ("7", "8"):
        (tmp_path / "extracted" / "data" / f"{i}.cif").write_text(s)
    ds = load_dataset(tmp_path / "labels" / "id_prop.csv", structures_dir=tmp_path / "extracted")
    assert ds.ids == ["7", "8"] and all("/data/" in src.path for src in ds.sources)
    with pytest.raises(FileNotFoundError, match="none of the 2 structure files"):
        load_dataset(tmp_path / "labels" / "id_prop.csv")


def test_first_row_with_bad_target_is_not_a_header(tmp_path):
    s = _simple_structures()[1].to(fmt="cif")
    folder = _make_cgcnn_folder(tmp_path / "h", "x1,abc\nx2,2.5\n", {"x1": s, "x2": s})
    ds = load_dataset(folder)
    assert ds.ids == ["x2"] and ds.meta["header"] is False
    assert "target 'abc' is not a number" in _problem_ids(ds)["x1"][0]


def test_structure_folder_and_single_file_for_prediction(tmp_path):
    for i, s in enumerate(_simple_structures()):
        (tmp_path / f"s{i}.cif").write_text(s.to(fmt="cif"))
    (tmp_path / "POSCAR_extra").write_text(_simple_structures()[1].to(fmt="poscar"))
    ds = load_dataset(tmp_path)
    assert ds.meta["format"] == "structure_folder" and ds.targets.shape == (4, 0)
    assert sorted(ds.ids) == ["POSCAR_extra", "s0", "s1", "s2"]
    assert all(src.structure is None for src in ds.sources)
    assert ds.sources[ds.ids.index("POSCAR_extra")].load().composition.reduced_formula == "Cu"
    one = load_dataset(tmp_path / "s2.cif")
    assert one.ids == ["s2"] and one.meta["format"] == "structure_file"
    with pytest.raises(ValueError, match="no id_prop.csv"):
        load_dataset(tmp_path, "gap")


def test_dataframe_of_structure_objects():
    import pandas as pd

    structures = _simple_structures()
    df = pd.DataFrame({"mpid": ["m1", "m2", "m3"], "structure": structures, "e": [0.1, 0.2, None]})
    ds = load_dataset(df)
    assert ds.ids == ["m1", "m2"] and ds.target_names == ["e"]
    assert ds.sources[1].structure is structures[1]
    assert "NaN" in _problem_ids(ds)["m3"][0] or "missing" in _problem_ids(ds)["m3"][0]
