"""Readers for the files users of the published benchmarks hold.

* JARVIS datasets (``dft_3d``, ``qmof``, ... as jarvis-tools distributes them, and ALIGNN trains
  on): a JSON list of records, each with an ``atoms`` dict (``lattice_mat`` 3×3 Å, ``coords``,
  ``elements``, ``cartesian``) beside its properties; missing values are the string ``"na"``.
* UnconvBench task files (``ub_<task>.json``): MatBench layout (``{"columns": [structure,
  target], "data": [[Structure dict, value], ...]}``) whose items the reference code names
  ``<task>-<row + 1>``, zero-padded to the width of the item count.

MatBench's own ``matbench_<task>.json.gz`` files are read by :func:`crystalgnn.load_dataset`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import Problem


def jarvis_structure(atoms: dict[str, Any]):
    """A pymatgen ``Structure`` from a JARVIS ``atoms`` dict."""
    from pymatgen.core import Lattice, Structure

    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in atoms]
    if missing:
        raise ValueError(f"JARVIS atoms dict without {missing}")
    return Structure(Lattice(atoms["lattice_mat"]), atoms["elements"], atoms["coords"],
                     coords_are_cartesian=bool(atoms.get("cartesian", False)))


def _open_json(path: Path) -> Any:
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt") as handle:  # type: ignore[operator]
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def load_jarvis(path: str | Path, target: str | int, transform: str = "none", id_key: str = "jid", max_rows: int | None = None) -> CrystalDataset:
    """A JARVIS JSON dataset (see module docstring) with ``target`` (a record key). Records
    whose ``atoms`` cannot make a structure, or whose target is ``"na"``/missing, are left out and
    listed in ``dataset.problems``."""
    from crystalgnn.io import load_dataset

    path = Path(path)
    records = _open_json(path)
    if not isinstance(records, list) or not records or not isinstance(records[0], dict) or "atoms" not in records[0]:
        raise ValueError(f"{path}: a JARVIS dataset is a JSON list of records with an 'atoms' dict; this is not one")
    if isinstance(target, int):
        raise ValueError(f"{path}: name a JARVIS target by its key (e.g. formation_energy_peratom), not by position")
    if target not in records[0]:
        numeric = [k for k, v in records[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        raise ValueError(f"{path}: no key {target!r} in its records; numeric keys of the first: {numeric}")
    structures, ids, values, problems = [], [], [], []
    for row, record in enumerate(records[: max_rows or None]):
        item_id = str(record.get(id_key, f"row {row}"))
        try:
            structure = jarvis_structure(record["atoms"])
        except (KeyError, TypeError, ValueError) as err:
            problems.append(Problem(item_id, f"unreadable JARVIS atoms: {err}", "structure"))
            continue
        structures.append(structure)
        ids.append(item_id)
        value = record.get(target)
        values.append(float("nan") if value in (None, "na", "") else value)
    dataset = load_dataset(structures, [target], transform=transform, ids=ids, target_values={target: values})
    dataset.problems = problems + dataset.problems
    dataset.meta.update(source=str(path), format="jarvis_json")
    return dataset


def unconvbench_ids(task_name: str, n: int) -> list[str]:
    width = len(str(n))
    return [f"{task_name}-{str(i + 1).rjust(width, '0')}" for i in range(n)]


def load_unconvbench(path: str | Path, task_name: str, transform: str = "none") -> CrystalDataset:
    """An UnconvBench task file; items named as its reference code names them."""
    from crystalgnn.io import load_dataset

    path = Path(path)
    data = _open_json(path)
    if not (isinstance(data, dict) and "columns" in data and "data" in data and len(data["columns"]) == 2):
        raise ValueError(f"{path}: an UnconvBench task file is MatBench layout with two columns (structure, target)")
    n = len(data["data"])
    ids = unconvbench_ids(task_name, n)
    from crystalgnn.structures.parse import structure_from_dict

    structures, kept, values, problems = [], [], [], []
    for item_id, (entry, value) in zip(ids, data["data"], strict=True):
        try:
            structures.append(structure_from_dict(entry))
        except Exception as err:  # noqa: BLE001 - one unreadable entry is one problem
            problems.append(Problem(item_id, f"unreadable structure dict: {type(err).__name__}: {err}"[:200], "structure"))
            continue
        kept.append(item_id)
        values.append(value)
    name = str(data["columns"][1])
    dataset = load_dataset(structures, [name], transform=transform, ids=kept, target_values={name: values})
    dataset.problems = problems + dataset.problems
    dataset.meta.update(source=str(path), format="unconvbench_json")
    return dataset
