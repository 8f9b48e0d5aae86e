"""Dataset readers: every supported input layout becomes a :class:`CrystalDataset`.

Reading is lazy. Structure *files* (CIF, POSCAR) are never parsed here: a reader hashes their
bytes (the cache key) and hands out ``StructureSource(key, path=..., fmt=...)``; CIF text found in a
table becomes ``StructureSource(key, text=..., fmt="cif")``. Only inputs that cannot be read
without parsing (JSON of pymatgen dicts, ASE multi-frame files, Python reprs of dicts) become
in-memory structures.

Per-item trouble (missing file, bad target, duplicate id, empty text) never raises: the item is
left out and a :class:`~crystalgnn.errors.Problem` naming it goes to ``dataset.problems``.
Whole-input trouble (no such path, unknown layout, unknown target column) raises
``FileNotFoundError``/``ValueError`` saying what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.ase_files import _load_ase
from crystalgnn.io.common import _ARCHIVE_SUFFIXES, _EXPECTED_LAYOUTS, _strip_gz
from crystalgnn.io.folders import _load_structure_file, _load_structure_folder
from crystalgnn.io.id_prop import _load_id_prop
from crystalgnn.io.memory import _load_memory
from crystalgnn.io.tables import _load_csv, _load_json, _load_table
from crystalgnn.io.targets import _normalize_transform
from crystalgnn.io.values import _is_atoms
from crystalgnn.structures.parse import format_from_path
from crystalgnn.structures.source import StructureSource

__all__ = ["load_dataset"]


def load_dataset(
    source: Any,
    targets: Any = None,
    *,
    transform: str = "none",
    id_column: str | None = None,
    structure_column: str | None = None,
    structures_dir: str | os.PathLike | None = None,
    max_rows: int | None = None,
    ids: Sequence[Any] | None = None,
    target_values: Any = None,
) -> CrystalDataset:
    """Read a dataset lazily (structure files are hashed, not parsed).

    ``source`` may be:

    * a CGCNN/ALIGNN folder: ``id_prop.csv`` (id, then one or more target columns; an optional
      header row is detected) plus ``<id>.cif`` / ``<id>.vasp`` / ``<id>`` (POSCAR) files, or the
      file named exactly ``<id>`` when it carries an extension (``POSCAR-JVASP-10.vasp``). Files
      are looked for in the folder (or ``structures_dir``), then in its ``data/``,
      ``structures/``, ``cifs/``, ``cif_files/``, ``data/cif_files/`` sub-folders if present;
    * a folder of structure files without ``id_prop.csv`` (prediction-only, ids = file stems);
    * an ``id_prop.csv``-like CSV path (same rules, structures next to it or in ``structures_dir``);
    * a CSV(.gz) with a structure column (``structure``/``cif``/``structure_column``) holding CIF
      text, or a Structure dict (JSON or Python repr, read with ``ast.literal_eval``);
      leading ``#`` comment lines are skipped;
    * a JSON(.gz) in MatBench layout (``{"index", "columns", "data"}``) or a list of records;
    * an ASE-readable file (e.g. extxyz); targets come from ``atoms.info`` (or calculator results);
    * a pandas DataFrame with a structure column;
    * a list of pymatgen ``Structure`` / ASE ``Atoms`` with optional ``ids=`` and
      ``target_values=`` (array ``(n,)``/``(n, k)``, list, or dict name → values).

    ``targets``: a column name, a 0-based int index over the target columns, or a list of them;
    ``[]`` for prediction-only data (targets of shape ``(n, 0)``). ``None`` takes every numeric
    target column of an id_prop file, or the only numeric column of a table (several → ValueError
    listing them). ``transform="log10"`` takes log10 of every target (non-positive values become
    problems). ``max_rows`` reads only the first rows/frames (cheap previews and tests).

    Unusable items are left out and listed in ``dataset.problems``; ``dataset.meta`` records
    ``{"source": ..., "format": <layout>}``.
    """
    transform = _normalize_transform(transform)
    if max_rows is not None and int(max_rows) < 0:
        raise ValueError("max_rows must be >= 0")

    if isinstance(source, (str, os.PathLike)):
        if ids is not None or target_values is not None:
            raise TypeError("ids= and target_values= are only for in-memory structures (a list of Structure/Atoms)")
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist; expected {_EXPECTED_LAYOUTS}. Check the path (relative paths "
                f"are resolved from {Path.cwd()})"
            )
        if path.is_dir():
            id_prop = path / "id_prop.csv"
            if id_prop.is_file():
                return _load_id_prop(id_prop, targets, transform, structures_dir, max_rows, "cgcnn")
            return _load_structure_folder(path, targets, transform, max_rows)
        name = _strip_gz(path.name).lower()
        if path.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise ValueError(
                f"{path} is an archive; crystalgnn reads extracted data. Extract it (e.g. "
                f"`tar xf {path.name} -C <cache dir>`) and pass the id_prop.csv with "
                "structures_dir=<extracted folder>, or the extracted folder itself"
            )
        if name.endswith((".csv", ".tsv")):
            return _load_csv(path, targets, transform, id_column, structure_column, structures_dir, max_rows)
        if name.endswith(".json"):
            return _load_json(path, targets, transform, id_column, structure_column, max_rows)
        fmt = format_from_path(path)
        if fmt in ("cif", "poscar"):
            # a single structure file: one prediction-only item, still lazy
            return _load_structure_file(path, targets, transform, fmt)
        return _load_ase(path, targets, transform, id_column, max_rows)

    try:
        import pandas as pd

        if isinstance(source, pd.DataFrame):
            df = source if max_rows is None else source.iloc[: int(max_rows)]
            return _load_table(df, "<DataFrame>", "dataframe", targets, transform, id_column, structure_column)
    except ImportError:  # pragma: no cover
        pass

    if isinstance(source, Structure) or _is_atoms(source) or isinstance(source, StructureSource):
        source = [source]
    if isinstance(source, (list, tuple)):
        items = list(source)
        if max_rows is not None:
            n = max(0, int(max_rows))
            items = items[:n]
            ids = None if ids is None else list(ids)[:n]
            if target_values is not None and not isinstance(target_values, dict) and not hasattr(target_values, "columns"):
                target_values = np.asarray(target_values, dtype=object)[:n]
            elif isinstance(target_values, dict):
                target_values = {k: list(v)[:n] for k, v in target_values.items()}
        return _load_memory(items, targets, transform, ids, target_values)
    raise TypeError(f"cannot read a {type(source).__name__}; expected a path or {_EXPECTED_LAYOUTS}")
