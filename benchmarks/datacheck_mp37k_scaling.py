"""The same-formula scaling test of ``crystalgnn check`` on the whole of ``mp37k`` (36,737 crystals),
for the three columns the hybrid table uses: is each one per cell (extensive) or not?

Cheap on purpose: the reduced formula and the atoms per cell are read from each CIF's
``_chemical_formula_sum`` (pymatgen writes the cell's composition there), not by building
structures, and only :func:`crystalgnn.reports.datacheck.scaling_exponent` is applied (no
duplicates, no graphs). ``crystalgnn check`` on the whole set gives the same verdicts with the
rest of the report, in about 10-20 minutes per column on 2 cores.

Usage::

    python benchmarks/datacheck_mp37k_scaling.py

Writes ``benchmarks/results/datacheck-mp37k-scaling.json``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import extracted_mp37k, machine_info, print_table, write_results  # noqa: E402

from crystalgnn.reports.datacheck import scaling_exponent  # noqa: E402

COLUMNS = {"band gap (eV)": 1, "cell volume (Å³)": 3, "total magnetization (μB)": 4}
FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+?)'?\s*$", re.MULTILINE)


def formula_and_atoms(cif: Path) -> tuple[str, int]:
    from pymatgen.core import Composition

    match = FORMULA_SUM.search(cif.read_text())
    if match is None:
        raise ValueError(f"{cif}: no _chemical_formula_sum line")
    composition = Composition(match.group(1))
    return composition.reduced_formula, int(round(composition.num_atoms))


def main() -> None:
    folder = extracted_mp37k(None)
    table = pd.read_csv(folder / "id_prop.csv", header=None, dtype={0: str})
    parsed = [formula_and_atoms(folder / "data" / f"{name}.cif") for name in table[0]]
    formulas = [f for f, _ in parsed]
    natoms = np.array([n for _, n in parsed])
    results = {"machine": machine_info(), "n_items": len(table), "columns": {}}
    rows = []
    for label, column in COLUMNS.items():
        y = table[column + 1].to_numpy(float)
        pairs, exponent, verdict, reason = scaling_exponent(y, natoms, formulas)
        results["columns"][label] = {"target_index": column, "pairs": pairs, "exponent": exponent, "verdict": verdict, "reason": reason}
        rows.append((label, verdict, "-" if exponent is None else f"{exponent:.3f}", str(pairs), reason[:70]))
    print_table(rows, ("column", "check says", "median exponent", "pairs", "reason"))
    write_results("datacheck-mp37k-scaling.json", results)


if __name__ == "__main__":
    main()
