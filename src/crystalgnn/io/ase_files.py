"""ASE-readable files (e.g. extxyz): one item per frame, targets from ``atoms.info`` or the
calculator's results. Frames are converted to structures as they are read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.common import _EXPECTED_LAYOUTS, ID_COLUMNS
from crystalgnn.io.targets import _as_target_list, _Collector, _format_id, _select
from crystalgnn.structures.parse import StructureParseError, format_from_path, structure_from_atoms
from crystalgnn.structures.source import StructureSource, structure_key


def _scalar_number(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.number)


def _atoms_props(atoms: Any) -> dict[str, Any]:
    props: dict[str, Any] = {}
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    for k, v in results.items():
        props[k] = v
    props.update(atoms.info)
    return props


def _load_ase(
    path: Path,
    targets: Any,
    transform: str,
    id_column: str | None,
    max_rows: int | None,
) -> CrystalDataset:
    import ase.io

    fmt = format_from_path(path)
    ase_format = None if fmt in ("ase",) else fmt
    index = ":" if max_rows is None else f":{max(0, int(max_rows))}"
    try:
        frames = ase.io.read(str(path), index=index, format=ase_format)
    except Exception as exc:  # noqa: BLE001 - ASE raises anything
        raise ValueError(
            f"cannot read {path} with ASE ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            f"expected {_EXPECTED_LAYOUTS}"
        ) from None
    if not isinstance(frames, list):
        frames = [frames]
    props = [_atoms_props(a) for a in frames]
    id_key = id_column
    if id_key is None and props:
        id_key = next((k for k in ID_COLUMNS if k in props[0]), None)
    candidates: list[str] = []
    if props:
        candidates = [k for k, v in props[0].items() if k != id_key and _scalar_number(v)]
    requested = _as_target_list(targets)
    if requested is not None:
        # names not in the first frame may still be valid keys of other frames
        extra = [t for t in requested if isinstance(t, str) and t not in candidates and any(t in p for p in props)]
        candidates += extra
    chosen = _select(targets, candidates, [True] * len(candidates), str(path), auto="one")
    names = [candidates[i] for i in chosen]
    col = _Collector(names, transform)
    for i, (atoms, p) in enumerate(zip(frames, props)):
        item_id = _format_id(p.get(id_key)) if id_key is not None else None
        item_id = item_id or str(i)
        if not col.claim(item_id, f"frame {i}"):
            continue
        raw = [p.get(n) for n in names]
        raw = [v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v for v in raw]
        bad_shape = [n for n, v in zip(names, raw) if v is not None and not _scalar_number(v) and not isinstance(v, str)]
        if bad_shape:
            col.problem(item_id, f"target {bad_shape[0]} is not a single number in frame {i}", "targets")
            continue
        values = col.targets(item_id, raw)
        try:
            s = structure_from_atoms(atoms)
        except StructureParseError as exc:
            col.problem(item_id, exc.reason, "structure")
            continue
        if values is None:
            continue
        col.add(item_id, StructureSource(key=structure_key(s), structure=s), values)
    return col.dataset({"source": str(path), "format": f"ase:{fmt}", "id_key": id_key})
