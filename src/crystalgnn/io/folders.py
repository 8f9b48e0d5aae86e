"""Structure files without an id_prop.csv: a folder of them, or a single file. Prediction-only
(no targets); ids are the file names without their extension; files are hashed, not parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.common import _EXPECTED_LAYOUTS, _strip_gz
from crystalgnn.io.targets import _as_target_list, _Collector
from crystalgnn.structures.parse import format_from_path
from crystalgnn.structures.source import StructureSource, bytes_key


def _is_structure_file(p: Path) -> bool:
    if not p.is_file() or p.name.startswith("."):
        return False
    name = _strip_gz(p.name).lower()
    return name.endswith((".cif", ".vasp", ".poscar")) or name.startswith(("poscar", "contcar"))


def _load_structure_folder(folder: Path, targets: Any, transform: str, max_rows: int | None) -> CrystalDataset:
    files = sorted(p for p in folder.iterdir() if _is_structure_file(p))
    if not files:
        raise ValueError(
            f"{folder} has no id_prop.csv and no structure files (.cif, .vasp, POSCAR*); expected "
            f"{_EXPECTED_LAYOUTS}"
        )
    if _as_target_list(targets):
        raise ValueError(
            f"{folder} has no id_prop.csv, so there are no targets to read; add an id_prop.csv "
            "(lines 'id,target') or pass targets=None/[] for prediction-only data"
        )
    if max_rows is not None:
        files = files[: max(0, int(max_rows))]
    col = _Collector([], transform)
    for p in files:
        name = _strip_gz(p.name)
        item_id = name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in (".cif", ".vasp", ".poscar") else name
        if not col.claim(item_id, p.name):
            continue
        data = p.read_bytes()
        if not data.strip():
            col.problem(item_id, f"structure file {p} is empty")
            continue
        col.add(item_id, StructureSource(key=bytes_key(data), path=str(p.absolute()), fmt=format_from_path(p)), [])
    return col.dataset({"source": str(folder), "format": "structure_folder"})


def _load_structure_file(path: Path, targets: Any, transform: str, fmt: str) -> CrystalDataset:
    """A single structure file: one prediction-only item, still lazy."""
    if _as_target_list(targets):
        raise ValueError(f"{path} is a single structure file and holds no targets; pass targets=None/[]")
    col = _Collector([], transform)
    data = path.read_bytes()
    item_id = _strip_gz(path.name)
    item_id = item_id[: -len(Path(item_id).suffix)] if Path(item_id).suffix else item_id
    if not data.strip():
        col.problem(item_id, f"structure file {path} is empty")
    else:
        col.add(item_id, StructureSource(key=bytes_key(data), path=str(path.absolute()), fmt=fmt), [])
    return col.dataset({"source": str(path), "format": "structure_file"})
