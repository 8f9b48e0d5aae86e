"""Tables with a structure column: a CSV(.gz), a MatBench-style or records JSON(.gz), a pandas
DataFrame. A CSV without a structure column is read as an id_prop.csv (:mod:`.id_prop`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.common import ID_COLUMNS, _open_text
from crystalgnn.io.id_prop import _load_id_prop
from crystalgnn.io.memory import _load_memory
from crystalgnn.io.targets import _Collector, _format_id, _select, _to_float
from crystalgnn.io.values import _structure_from_value
from crystalgnn.structures.parse import structure_from_dict

#: Column names taken as the structure column when ``structure_column`` is not given.
STRUCTURE_COLUMNS = ("structure", "cif", "structures", "atoms", "poscar")


def _find_column(columns: Sequence[str], given: str | None, defaults: Iterable[str], what: str, src: str) -> str | None:
    if given is not None:
        if given in columns:
            return given
        raise ValueError(f"{what} column {given!r} not found in {src}; columns: {list(columns)}")
    lower = {str(c).lower(): c for c in reversed(list(columns))}
    for name in defaults:
        if name in lower:
            return lower[name]
    return None


def _load_table(
    df: Any,
    src: str,
    layout: str,
    targets: Any,
    transform: str,
    id_column: str | None,
    structure_column: str | None,
    index_ids: Sequence[Any] | None = None,
) -> CrystalDataset:
    import pandas as pd

    columns = [str(c) for c in df.columns]
    df = df.copy()
    df.columns = columns
    struct_col = _find_column(columns, structure_column, STRUCTURE_COLUMNS, "structure", src)
    if struct_col is None:
        raise ValueError(
            f"{src} has no structure column (looked for {list(STRUCTURE_COLUMNS)}); columns: "
            f"{columns}. Pass structure_column=<name of the column holding CIF text or Structure dicts>"
        )
    id_col = _find_column(columns, id_column, ID_COLUMNS, "id", src)

    excluded = {struct_col, id_col}
    candidates = [
        c for c in columns if c not in excluded and not c.startswith("Unnamed:") and c.lower() not in ("index", "idx")
    ]
    numeric = [
        bool(pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])) for c in candidates
    ]
    chosen = _select(targets, candidates, numeric, src, auto="one")
    names = [candidates[i] for i in chosen]
    for i in chosen:
        if not numeric[i]:
            series = df[candidates[i]]
            ok = sum(_to_float(v)[1] is None for v in series.head(200))
            if len(series) and ok == 0:
                sample = series.iloc[0]
                raise ValueError(
                    f"target column {candidates[i]!r} of {src} is not numeric (values like "
                    f"{str(sample)[:40]!r}); numeric columns: "
                    f"{[c for c, is_num in zip(candidates, numeric) if is_num]}"
                )

    col = _Collector(names, transform)
    if id_col is not None:
        raw_ids: Sequence[Any] = df[id_col].tolist()
    elif index_ids is not None:
        raw_ids = list(index_ids)
    else:
        raw_ids = list(range(len(df)))
    struct_values = df[struct_col].tolist()
    target_values = [df[c].tolist() for c in names]
    for r in range(len(df)):
        item_id = _format_id(raw_ids[r])
        where = f"row {r}"
        if item_id is None:
            item_id = where
            col.problem(item_id, f"missing id (column {id_col!r} is empty)")
            continue
        if not col.claim(item_id, where):
            continue
        values = col.targets(item_id, [tv[r] for tv in target_values])
        source = _structure_from_value(struct_values[r], struct_col, item_id, col)
        if values is None or source is None:
            continue
        col.add(item_id, source, values)
    meta = {
        "source": src,
        "format": layout,
        "structure_column": struct_col,
        "id_column": id_col,
    }
    return col.dataset(meta)


def _leading_comment_lines(path: Path) -> tuple[int, list[str]]:
    """Number of leading '#' lines, and the header fields after them."""
    n = 0
    with _open_text(path) as fh:
        for line in fh:
            if line.lstrip().startswith("#") or not line.strip():
                n += 1
                continue
            header = next(csv.reader([line]))
            return n, [h.strip() for h in header]
    return n, []


def _load_csv(
    path: Path,
    targets: Any,
    transform: str,
    id_column: str | None,
    structure_column: str | None,
    structures_dir: str | os.PathLike | None,
    max_rows: int | None,
) -> CrystalDataset:
    import pandas as pd

    skip, header = _leading_comment_lines(path)
    if not header:
        raise ValueError(f"{path} is empty; expected an id_prop.csv or a CSV with a structure column")
    lower = {h.lower() for h in header}
    has_structure = (structure_column is not None and structure_column in header) or any(
        n in lower for n in STRUCTURE_COLUMNS
    )
    if structure_column is not None and structure_column not in header:
        raise ValueError(f"structure column {structure_column!r} not found in {path}; header: {header}")
    if not has_structure:
        return _load_id_prop(path, targets, transform, structures_dir, max_rows, "id_prop_csv", id_column)
    df = pd.read_csv(path, skiprows=skip, nrows=max_rows, low_memory=False)
    return _load_table(df, str(path), "csv", targets, transform, id_column, structure_column)


def _load_json(
    path: Path,
    targets: Any,
    transform: str,
    id_column: str | None,
    structure_column: str | None,
    max_rows: int | None,
) -> CrystalDataset:
    import pandas as pd

    try:
        with _open_text(path) as fh:
            obj = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    stop = None if max_rows is None else max(0, int(max_rows))
    if isinstance(obj, dict) and "columns" in obj and "data" in obj:
        data = obj["data"][:stop]
        df = pd.DataFrame(data, columns=obj["columns"])
        index = obj.get("index")
        index_ids = list(index[:stop]) if isinstance(index, list) and len(index) >= len(df) else None
        return _load_table(df, str(path), "matbench_json", targets, transform, id_column, structure_column, index_ids)
    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        df = pd.DataFrame.from_records(obj[:stop])
        return _load_table(df, str(path), "json_records", targets, transform, id_column, structure_column)
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        if "lattice" in obj and "sites" in obj:  # a single Structure dict
            s = structure_from_dict(obj)
            return _load_memory([s], targets, transform, [path.name.split(".")[0]], None, str(path), "json_structure")
        keys = list(obj)[:stop]
        df = pd.DataFrame.from_records([obj[k] for k in keys])
        return _load_table(df, str(path), "json_mapping", targets, transform, id_column, structure_column, keys)
    raise ValueError(
        f"unrecognized JSON layout in {path}: expected MatBench/pandas 'split' orient "
        '({"index": [...], "columns": ["structure", "<target>"], "data": [[{...}, value], ...]}) or a '
        'list of records [{"id": ..., "structure": {...}, "<target>": ...}]'
    )
