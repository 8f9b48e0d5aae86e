"""In-memory structures: a list of pymatgen ``Structure`` / ASE ``Atoms`` (or ready
:class:`~crystalgnn.structures.source.StructureSource` objects), with optional ``ids=`` and
``target_values=``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.targets import _as_target_list, _Collector, _format_id, _select
from crystalgnn.io.values import _is_atoms, _structure_from_value
from crystalgnn.structures.source import StructureSource, structure_key


def _load_memory(
    items: Sequence[Any],
    targets: Any,
    transform: str,
    ids: Sequence[Any] | None,
    target_values: Any,
    src: str = "<in-memory>",
    layout: str = "in_memory",
) -> CrystalDataset:
    n = len(items)
    if ids is not None:
        ids = list(ids)
        if len(ids) != n:
            raise ValueError(f"ids has {len(ids)} entries but there are {n} structures")
    # ----- target matrix (object, so that bad entries become per-item problems)
    names: list[str]
    columns: list[list[Any]]
    if target_values is None:
        if _as_target_list(targets):
            raise ValueError(
                "targets names were given but no target_values=; pass target_values=<array (n,) or "
                "(n, k), or a dict name -> values>"
            )
        names, columns = [], []
    else:
        if hasattr(target_values, "columns") and hasattr(target_values, "to_dict"):  # DataFrame
            target_values = {str(c): list(target_values[c]) for c in target_values.columns}
        if isinstance(target_values, dict):
            all_names = [str(k) for k in target_values]
            all_cols = [list(np.asarray(v, dtype=object).reshape(-1)) for v in target_values.values()]
            chosen = _select(targets, all_names, [True] * len(all_names), "target_values", auto="all")
            names = [all_names[i] for i in chosen]
            columns = [all_cols[i] for i in chosen]
        else:
            arr = np.asarray(target_values, dtype=object)
            if arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if arr.ndim != 2:
                raise ValueError(f"target_values must be 1-D or 2-D, got shape {arr.shape}")
            k = arr.shape[1]
            requested = _as_target_list(targets)
            if requested is not None and all(isinstance(t, str) for t in requested) and len(requested) == k:
                names = [str(t) for t in requested]
            elif requested is not None and requested:
                default = ["target"] if k == 1 else [f"target{i}" for i in range(k)]
                chosen = _select(targets, default, [True] * k, "target_values", auto="all")
                names = [default[i] for i in chosen]
                arr = arr[:, chosen]
            elif requested is not None:  # targets=[]
                names, arr = [], arr[:, :0]
            else:
                names = ["target"] if k == 1 else [f"target{i}" for i in range(k)]
            columns = [list(arr[:, j]) for j in range(arr.shape[1])]
        for name, c in zip(names, columns):
            if len(c) != n:
                raise ValueError(f"target {name!r} has {len(c)} values but there are {n} structures")
    col = _Collector(names, transform)
    for i, item in enumerate(items):
        item_id = _format_id(ids[i]) if ids is not None else str(i)
        if item_id is None:
            item_id = f"item {i}"
            col.problem(item_id, "missing id")
            continue
        if not col.claim(item_id, f"item {i}"):
            continue
        values = col.targets(item_id, [c[i] for c in columns])
        if isinstance(item, StructureSource):
            source: StructureSource | None = item
        elif isinstance(item, Structure):
            source = StructureSource(key=structure_key(item), structure=item)
        elif _is_atoms(item):
            source = _structure_from_value(item, "structures", item_id, col)
        else:
            raise TypeError(
                f"item {i} is a {type(item).__name__}; expected pymatgen Structure or ASE Atoms"
            )
        if values is None or source is None:
            continue
        col.add(item_id, source, values)
    return col.dataset({"source": src, "format": layout})
