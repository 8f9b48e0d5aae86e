"""``crystalgnn check``: extensive targets of the hybrid table are flagged, intensive ones are not,
and duplicates, heavy tails and cell sizes are reported (real data slices)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import require_data
from pymatgen.core import Structure

from crystalgnn.cli import main as cli_main
from crystalgnn.io import load_dataset
from crystalgnn.reports.datacheck import check_dataset, check_prepared, scaling_exponent


def _elasticity(n: int = 500):
    folder = require_data("mp_elasticity3k")
    rows = pd.read_csv(folder / "id_prop.csv", header=None).iloc[:n]
    structures = [Structure.from_file(folder / f"{i}.cif") for i in rows[0]]
    return structures, rows


def test_cell_volume_is_extensive_and_moduli_are_intensive():
    structures, rows = _elasticity()
    # mp37k's "cell volume" column is exactly this per-cell quantity of the structure
    values = {"volume": [s.volume for s in structures], "K": rows[1].tolist(), "G": rows[2].tolist()}
    data = load_dataset(structures, ids=[str(i) for i in rows[0]], target_values=values)
    report, _ = check_dataset(data, duplicates=False, progress=False)
    verdict = {t.name: t for t in report.targets}
    assert verdict["volume"].scaling == "extensive" and verdict["volume"].scaling_exponent == pytest.approx(1.0, abs=0.15)
    # 500 elastic crystals hold few polymorphs: the verdicts come from the correlation with size
    assert verdict["volume"].scaling_pairs < 10 and "Spearman" in verdict["volume"].scaling_reason
    assert verdict["K"].scaling == "intensive" and verdict["G"].scaling == "intensive"
    assert report.flagged_extensive() == ["volume"]
    assert any("--per-atom" in a for a in verdict["volume"].advice)
    assert not any("--per-atom" in a for a in verdict["K"].advice)
    # G spans more than a decade (13 … 153 GPa between 5 % and 95 %): the papers' log10 is advised
    assert verdict["G"].heavy_tailed and any("--transform log10" in a for a in verdict["G"].advice)
    assert verdict["volume"].corr_natoms["spearman"] > 0.8


def test_carbon_energy_per_cell_is_extensive_per_atom_is_not():
    path = require_data("carbon24_partial", "val.csv.gz")
    per_atom = load_dataset(path, max_rows=400)
    report, prepared = check_dataset(per_atom, duplicates=False, progress=False)
    assert report.targets[0].scaling == "intensive"
    per_cell = prepared.targets[:, 0] * prepared.store.num_atoms
    prepared.targets = per_cell[:, None]
    prepared.target_names = ["energy_per_cell"]
    flagged = check_prepared(prepared, cutoff=8.0, duplicates=False)
    assert flagged.targets[0].scaling == "extensive"


def test_refractive_index_and_band_gap_are_not_flagged():
    path = require_data("matminer2018", "dielectric_constant.csv.gz")
    report, _ = check_dataset(path, ("n", "band_gap"), duplicates=False, progress=False)
    assert report.flagged_extensive() == []
    assert {t.name: t.scaling for t in report.targets} == {"n": "intensive", "band_gap": "intensive"}


def test_same_size_cells_are_undecided_with_the_reason():
    path = require_data("perov5_partial", "val.csv.gz")
    report, _ = check_dataset(path, ("heat_ref",), duplicates=False, progress=False)
    (target,) = report.targets
    assert target.scaling == "undecided" and "every cell has 5 atoms" in target.scaling_reason


def test_scaling_exponent_rule():
    natoms = np.array([2, 4, 8, 3, 6, 12] * 4)
    formulas = [f"f{i // 3}" for i in range(len(natoms))]
    size = natoms * 1.7
    pairs, exponent, verdict, _ = scaling_exponent(size, natoms, formulas)
    assert pairs == 16 and exponent == pytest.approx(1.0) and verdict == "extensive"
    assert scaling_exponent(np.full(len(natoms), 3.0), natoms, formulas)[2] == "intensive"
    few = scaling_exponent(size[:6], natoms[:6], formulas[:6])  # 4 pairs: the correlation with size decides
    assert few[2] == "extensive" and "Spearman" in few[3]
    assert scaling_exponent(np.full(6, 3.0), natoms[:6], formulas[:6])[2] == "intensive"


def test_numerical_zeros_do_not_make_scaling_pairs():
    # mp37k's magnetization: most cells carry 1e-5-scale noise, a few a real moment. The noise
    # ratios must not decide; the real moments (here intensive: the same per cell) must.
    rng = np.random.default_rng(0)
    natoms = np.array([2, 4, 8, 3, 6, 12] * 20)
    formulas = [f"f{i // 3}" for i in range(len(natoms))]
    noise = 10 ** rng.uniform(-6, -4, len(natoms)) * natoms**3  # grows with size, but is noise
    moment = np.where(np.arange(len(natoms)) % 6 < 3, 2.0, noise)
    pairs, exponent, verdict, _ = scaling_exponent(moment, natoms, formulas)
    assert verdict == "intensive" and pairs == 40 and exponent == pytest.approx(0.0)


def test_duplicates_with_different_labels_are_named():
    structures, rows = _elasticity(12)
    copy = structures[3].copy()
    copy.make_supercell([1, 1, 2])  # the same crystal in a doubled cell
    copy.translate_sites(list(range(len(copy))), [0.01, 0.0, 0.0])
    ids = [str(i) for i in rows[0]] + ["copy-of-3"]
    labels = rows[1].tolist() + [rows[1].iloc[3] + 100.0]
    data = load_dataset(structures + [copy], ids=ids, target_values={"K": labels})
    report, _ = check_dataset(data, progress=False)
    (target,) = report.targets
    assert report.duplicate_pairs >= 1
    assert any({a, b} == {ids[3], "copy-of-3"} for a, b, _, _ in target.conflicting_duplicates)
    assert any("identical structures" in a for a in target.advice)


def test_cells_longer_than_the_cutoff():
    structures, rows = _elasticity(60)
    data = load_dataset(structures, ids=[str(i) for i in rows[0]], target_values={"K": rows[1].tolist()})
    longest = np.array([max(s.lattice.abc) for s in structures])
    for cutoff in (4.0, 8.0):
        report, _ = check_dataset(data, cutoff=cutoff, duplicates=False, progress=False)
        assert report.beyond_cutoff_share == pytest.approx(np.mean(longest > cutoff), abs=1e-9)


def test_cli_writes_the_report(elasticity_slice, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli_main(["check", str(elasticity_slice), "-t", "0", "--out", str(out), "--quiet", "--no-cache"]) == 0
    printed = capsys.readouterr().out
    assert "scales with cell size" in printed and "cutoff" in printed
    saved = json.loads((out / "check.json").read_text())
    assert saved["n_items"] == 80 and saved["targets"][0]["name"] == "target0"
    assert (out / "check.png").stat().st_size > 10_000
    assert (out / "check.txt").read_text().startswith("data check: 80 usable")


def test_cli_refuses_a_transform(elasticity_slice, capsys):
    assert cli_main(["check", str(elasticity_slice), "--transform", "log10", "--quiet", "--no-cache"]) == 2
    assert "drop --transform" in capsys.readouterr().err


def test_train_prints_the_short_check_unless_told_not_to(elasticity_slice, tmp_path, capsys):
    common = ["train", str(elasticity_slice), "-t", "0", "--epochs", "1", "--batch-size", "32", "--quiet", "--no-cache",
              "--n-conv", "1", "--atom-fea-len", "8", "--h-fea-len", "8"]
    assert cli_main([*common, "--run-dir", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "data check: 80 usable" in err and "scales with cell size" in err
    assert cli_main([*common, "--run-dir", str(tmp_path / "b"), "--no-data-check"]) == 0
    assert "data check" not in capsys.readouterr().err


def test_cli_uses_the_graph_cache_as_train_does(elasticity_slice, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CRYSTALGNN_CACHE", str(cache))
    assert cli_main(["check", str(elasticity_slice), "-t", "0", "--out", "report", "--quiet", "--no-duplicates"]) == 0
    assert not (tmp_path / "default").exists() and any(cache.rglob("*"))
