"""Bad input, gathered: every kind of unusable item is named with its reason before any work
(unparseable or partial structures, missing files, NaN or non-numeric targets, duplicate ids,
isolated atoms, unknown elements, whole-input mistakes), and the CLI says so without a traceback.
Reliability checks of the issue "Nothing wrong, nothing lost" live in test_reliability.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from test_readers import _cif_text, _make_cgcnn_folder, _problem_ids, _simple_structures, needs_data  # shared helpers
from test_training import tiny

from crystalgnn import cli
from crystalgnn.config import DataConfig
from crystalgnn.errors import CrystalGNNError, DatasetError
from crystalgnn.io import StructureParseError, load_dataset, parse_structure, validate_structure
from crystalgnn.training.run import train


def test_parse_structure_unparseable_cif(tmp_path):
    with pytest.raises(StructureParseError) as err:
        parse_structure(text="this is not a CIF\njust words\n", fmt="cif")
    assert err.value.reason.startswith("unparseable CIF") or "no structure found" in err.value.reason
    assert isinstance(err.value, CrystalGNNError)

    broken = _simple_structures()[0].to(fmt="cif").replace("_cell_length_a", "_cell_length_a  xx #")
    bad = tmp_path / "broken.cif"
    bad.write_text(broken)
    with pytest.raises(StructureParseError) as err:
        parse_structure(path=bad)
    assert "unparseable CIF" in err.value.reason
    assert "xx" in err.value.reason  # pymatgen's real cause is surfaced, not just "no structures"

    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(StructureParseError, match="file is empty"):
        parse_structure(path=empty)
    with pytest.raises(StructureParseError, match="not found"):
        parse_structure(path=tmp_path / "missing.cif")
    with pytest.raises(StructureParseError, match="POSCAR"):
        parse_structure(text="not\na\nposcar\n", fmt="poscar")


def test_validate_structure_ok_and_bad():
    good = _simple_structures()[0]
    assert validate_structure(good) is None

    partial = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    reason = validate_structure(partial)
    assert reason is not None and "partial occupancy at site 0" in reason
    assert "Fe0.5 Ni0.5" in reason and "OrderDisorderedStructureTransformation" in reason

    vacancy = Structure(Lattice.cubic(3.6), [{"Fe": 0.9}], [[0, 0, 0]])
    assert "occupancy 0.9 < 1" in validate_structure(vacancy)

    overlap = Structure(Lattice.cubic(5.0), ["Fe", "Fe", "O"], [[0, 0, 0], [0.02, 0, 0], [0.5, 0.5, 0.5]])
    reason = validate_structure(overlap)
    assert reason is not None and "overlapping" in reason and "atoms 0 (Fe) and 1 (Fe)" in reason

    from pymatgen.core.periodic_table import DummySpecies

    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert "non-element species" in validate_structure(dummy)

    empty = Structure(Lattice.cubic(4.0), [], [])
    assert "no atoms" in validate_structure(empty)


def test_validate_partial_occupancy_from_cif():
    cif = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).to(fmt="cif")
    s = parse_structure(text=cif, fmt="cif")
    assert "partial occupancy at site 0" in validate_structure(s)


@needs_data
def test_bad_items_become_problems(tmp_path):
    cif = _cif_text()
    folder = _make_cgcnn_folder(
        tmp_path / "set",
        "a,1.0\nb,nan\nc,abc\nd,2.0\na,5.0\nmissing_one,3.0\ne,inf\nf,\ng,4.0\n",
        {n: cif for n in ("a", "b", "c", "d", "e", "f")} | {"g": ""},
    )
    ds = load_dataset(folder)
    assert ds.ids == ["a", "d"]
    assert ds.targets[:, 0].tolist() == [1.0, 2.0]  # the first 'a' is kept
    probs = _problem_ids(ds)
    assert "NaN" in probs["b"][0]
    assert "target 'abc' is not a number" in probs["c"][0]
    assert any("duplicate id" in r for r in probs["a"])
    assert "structure file not found" in probs["missing_one"][0]
    assert "missing_one.cif" in probs["missing_one"][0] and "missing_one.vasp" in probs["missing_one"][0]
    assert "not finite" in probs["e"][0]
    assert "missing" in probs["f"][0]
    assert "empty" in probs["g"][0]
    # every input row is either kept or reported
    assert set(ds.ids) | set(probs) == {"a", "b", "c", "d", "e", "f", "g", "missing_one"}
    stages = {p.id: p.stage for p in ds.problems}
    assert stages["c"] == "targets" and stages["missing_one"] == "read"


def test_log10_of_non_positive(tmp_path):
    s = _simple_structures()[0].to(fmt="cif")
    folder = _make_cgcnn_folder(tmp_path / "k", "id,K_VRH\nx,100\ny,0\nz,-3\n", {"x": s, "y": s, "z": s})
    ds = load_dataset(folder, "K_VRH", transform="log10")
    assert ds.ids == ["x"] and ds.targets[0, 0] == pytest.approx(2.0)
    probs = _problem_ids(ds)
    assert probs["y"] == ["target K_VRH = 0 cannot take log10"]
    assert "cannot take log10" in probs["z"][0]
    with pytest.raises(ValueError, match="transform"):
        load_dataset(folder, transform="sqrt")


def test_whole_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="id_prop.csv"):
        load_dataset(tmp_path / "empty_dir")
    (tmp_path / "weird.json").write_text('{"a": 1}')
    with pytest.raises(ValueError, match="unrecognized JSON layout"):
        load_dataset(tmp_path / "weird.json")


def test_csv_table_bad_rows(tmp_path):
    import pandas as pd

    s = _simple_structures()[0]
    good = s.to(fmt="cif")
    df = pd.DataFrame(
        {
            "material_id": ["ok", "empty", "evil", "dup", "dup", "dict"],
            "structure": [good, "", "{__import__('os').system('echo pwned')}", good, good, repr(s.as_dict())],
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    path = tmp_path / "table.csv"
    with open(path, "w") as fh:
        fh.write("# ref: a test\n")
        df.to_csv(fh, index=False)
    ds = load_dataset(path, "y")
    assert ds.ids == ["ok", "dup", "dict"]
    assert ds.sources[2].structure is not None  # Python repr of a dict → in-memory structure
    probs = _problem_ids(ds)
    assert "empty structure text" in probs["empty"][0]
    assert "neither JSON nor a Python dict literal" in probs["evil"][0]
    assert "duplicate id" in probs["dup"][0]
    # a DataFrame works the same way
    assert load_dataset(df, "y").ids == ["ok", "dup", "dict"]


def _write_bad_folder(root: Path, good_source: Path) -> Path:
    """A CGCNN folder with one good crystal per kind of problem the brief lists."""
    root.mkdir()
    rows = []
    for k in range(6):  # usable items
        (root / f"good{k}.cif").symlink_to(good_source / f"{k}.cif")
        rows.append(f"good{k},{100 + k}")
    (root / "broken.cif").write_text("data_broken\n_cell_length_a 3.0\nthis is not a CIF loop\n")
    rows.append("broken,1.0")
    rows.append("missing,2.0")  # no missing.cif
    (root / "nan_target.cif").symlink_to(good_source / "7.cif")
    rows.append("nan_target,nan")
    (root / "text_target.cif").symlink_to(good_source / "8.cif")
    rows.append("text_target,abc")
    partial = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    partial.to(filename=str(root / "partial.cif"))
    rows.append("partial,3.0")
    Structure(Lattice.cubic(25.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(root / "isolated.cif"))
    rows.append("isolated,4.0")
    Structure(Lattice.cubic(3.0), ["Md"], [[0, 0, 0]]).to(filename=str(root / "unknown_element.cif"))
    rows.append("unknown_element,5.0")
    rows.append("good0,7.0")  # duplicate id
    (root / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return root


BAD_IDS = {"broken", "missing", "nan_target", "text_target", "partial", "isolated", "unknown_element", "good0"}


def test_bad_inputs_raise_with_every_item_named(elasticity_slice, tmp_path):
    folder = _write_bad_folder(tmp_path / "bad", elasticity_slice)
    with pytest.raises(DatasetError) as info:
        train(folder, tmp_path / "run", tiny(), progress=False)
    named = {p.id for p in info.value.problems}
    assert named == BAD_IDS
    reasons = {p.id: p.reason.lower() for p in info.value.problems}
    assert "partial occupancy" in reasons["partial"]
    assert "no neighbour" in reasons["isolated"]
    assert "md" in reasons["unknown_element"] and "not covered" in reasons["unknown_element"]
    assert "duplicate" in reasons["good0"]
    assert "on_error" in str(info.value) and not (tmp_path / "run" / "model.safetensors").exists()


def test_bad_inputs_skipped_and_reported(elasticity_slice, tmp_path):
    folder = _write_bad_folder(tmp_path / "bad", elasticity_slice)
    cfg = tiny(epochs=1)
    cfg = cfg.__class__(data=DataConfig(on_error="skip"), model=cfg.model, train=cfg.train)
    result = train(folder, tmp_path / "run", cfg, progress=False)
    skipped = pd.read_csv(tmp_path / "run" / "skipped.csv")
    assert set(skipped["id"]) == BAD_IDS and result.n_skipped == len(BAD_IDS)
    used = sum(len(pd.read_csv(tmp_path / "run" / f"predictions_{s}.csv")) for s in ("train", "val", "test"))
    assert used == 6  # every good item is used; nothing is lost silently


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert cli.main(["predict", str(tmp_path / "nope"), "x.cif"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
