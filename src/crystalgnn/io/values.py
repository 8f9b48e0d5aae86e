"""One structure from one value: CIF text, a Structure dict (JSON or its Python repr), a pymatgen
``Structure`` or ASE ``Atoms``, as found in a table cell or a list of in-memory structures.

Text stays unparsed (``StructureSource(key, text=..., fmt="cif")``); dicts and Atoms cannot be
read lazily and are converted here. A value that is no usable structure becomes a problem.
"""

from __future__ import annotations

import ast
import json
import math
from typing import Any

from pymatgen.core import Structure

from crystalgnn.io.targets import _Collector
from crystalgnn.structures.parse import StructureParseError, structure_from_atoms, structure_from_dict
from crystalgnn.structures.source import StructureSource, bytes_key, structure_key


def _canonical_json(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


def _structure_from_value(value: Any, column: str, item_id: str, col: _Collector) -> StructureSource | None:
    """StructureSource for one table cell (CIF text, Structure dict / its repr, Structure, Atoms)."""
    if isinstance(value, StructureSource):
        return value
    if isinstance(value, Structure):
        return StructureSource(key=structure_key(value), structure=value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        col.problem(item_id, f"empty structure text (column {column!r} is empty)")
        return None
    if _is_atoms(value):
        try:
            s = structure_from_atoms(value)
        except StructureParseError as exc:
            col.problem(item_id, exc.reason, "structure")
            return None
        return StructureSource(key=structure_key(s), structure=s)
    if isinstance(value, dict):
        return _dict_source(value, item_id, col)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        col.problem(item_id, f"column {column!r} holds a {type(value).__name__}, not a structure")
        return None
    text = value
    stripped = text.strip()
    if not stripped:
        col.problem(item_id, f"empty structure text (column {column!r} is empty)")
        return None
    if stripped.startswith("{"):
        # a JSON dump or the Python repr of a Structure dict (matminer's flla): parse it SAFELY
        try:
            d = json.loads(stripped)
        except ValueError:
            try:
                d = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
                col.problem(
                    item_id,
                    f"column {column!r} starts with '{{' but is neither JSON nor a Python dict literal "
                    f"({type(exc).__name__})",
                    "structure",
                )
                return None
        return _dict_source(d, item_id, col)
    fmt = "poscar" if column.lower() == "poscar" else "cif"
    return StructureSource(key=bytes_key(text.encode("utf-8")), text=text, fmt=fmt)


def _dict_source(d: Any, item_id: str, col: _Collector) -> StructureSource | None:
    try:
        s = structure_from_dict(d)
    except StructureParseError as exc:
        col.problem(item_id, exc.reason, "structure")
        return None
    return StructureSource(key=bytes_key(_canonical_json(d).encode("utf-8")), structure=s)


def _is_atoms(obj: Any) -> bool:
    try:
        from ase import Atoms
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, Atoms)
