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

import ast
import csv
import gzip
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pymatgen.core import Structure

from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import Problem
from crystalgnn.structures.parse import (
    StructureParseError,
    format_from_path,
    structure_from_atoms,
    structure_from_dict,
)
from crystalgnn.structures.source import StructureSource, bytes_key, structure_key

__all__ = ["load_dataset"]

#: Column / key names taken as the item id when ``id_column`` is not given (first match wins).
ID_COLUMNS = ("id", "material_id", "mpid", "mp_id", "idx")
#: Column names taken as the structure column when ``structure_column`` is not given.
STRUCTURE_COLUMNS = ("structure", "cif", "structures", "atoms", "poscar")
#: Sub-folders searched (after the folder itself) for ``<id>.cif`` in id_prop layouts, when they
#: exist: ``data/`` is the extracted mp37k archive, ``structures/`` QMOF, ``data/cif_files`` mp_api3k.
STRUCTURE_SUBDIRS = ("data", "structures", "cifs", "cif_files", "data/cif_files")
#: Extensions that mark an id as a complete file name (ALIGNN's ``POSCAR-JVASP-10.vasp``).
_STRUCTURE_EXTS = {".cif", ".mcif", ".vasp", ".poscar", ".json", ".xyz", ".extxyz", ".gz"}
_ID_HEADER_NAMES = {"id", "ids", "name", "file", "filename", "file_name", "jid", "material_id", "mpid"}
_TRANSFORMS = ("none", "log10")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip", ".7z")

_EXPECTED_LAYOUTS = (
    "a CGCNN/ALIGNN folder (id_prop.csv + <id>.cif / .vasp files), an id_prop.csv-like CSV, a CSV "
    "with a CIF-text 'structure'/'cif' column, a MatBench-style JSON(.gz), an ASE-readable file "
    "(e.g. extxyz), or a list of pymatgen Structures / ASE Atoms"
)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def _format_id(value: Any) -> str | None:
    """Item id as a string (``3.0`` → ``"3"``); ``None`` for missing ids."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    text = str(value).strip()
    return text or None


_MISSING_WORDS = {"none", "null", "na", "n/a", "nan", "missing", "-"}


def _to_float(value: Any) -> tuple[float | None, str | None]:
    """(number, None) or (None, kind) where kind is 'missing' | 'not_number' | 'nan' | 'inf'."""
    if value is None:
        return None, "missing"
    if isinstance(value, (bool, np.bool_)):
        return float(value), None
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    else:
        text = str(value).strip()
        try:
            v = float(text)
        except ValueError:
            if not text or text.lower() in _MISSING_WORDS:
                return None, "missing"
            return None, "not_number"
    if math.isnan(v):
        return None, "nan"
    if math.isinf(v):
        return None, "inf"
    return v, None


def _canonical_json(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


@dataclass
class _Collector:
    """Accumulates kept items and problems, enforcing unique ids and valid targets."""

    target_names: list[str]
    transform: str
    ids: list[str] = field(default_factory=list)
    sources: list[StructureSource] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    first_seen: dict[str, str] = field(default_factory=dict)

    def problem(self, item_id: str, reason: str, stage: str = "read") -> None:
        self.problems.append(Problem(item_id, reason, stage))

    def claim(self, item_id: str, where: str) -> bool:
        """Reserve ``item_id``; report a duplicate (the first occurrence wins)."""
        if item_id in self.first_seen:
            self.problem(
                item_id,
                f"duplicate id (also at {self.first_seen[item_id]}); the first occurrence is kept, "
                f"this one ({where}) is left out",
            )
            return False
        self.first_seen[item_id] = where
        return True

    def targets(self, item_id: str, values: Sequence[Any]) -> list[float] | None:
        """Check/convert one item's target values; report every bad one. None if any is bad."""
        out: list[float] = []
        ok = True
        for name, raw in zip(self.target_names, values):
            v, kind = _to_float(raw)
            if kind == "missing":
                shown = "empty value" if raw is None or not str(raw).strip() else repr(str(raw).strip())
                self.problem(item_id, f"target {name} is missing ({shown})", "targets")
            elif kind == "not_number":
                self.problem(item_id, f"target {str(raw).strip()!r} is not a number (column {name})", "targets")
            elif kind == "nan":
                self.problem(item_id, f"target {name} is NaN", "targets")
            elif kind == "inf":
                self.problem(item_id, f"target {name} is {raw} (not finite)", "targets")
            elif self.transform == "log10":
                if v <= 0:  # type: ignore[operator]
                    self.problem(item_id, f"target {name} = {v:g} cannot take log10", "targets")
                    kind = "log"
                else:
                    v = math.log10(v)  # type: ignore[arg-type]
            if kind is not None:
                ok = False
            else:
                out.append(float(v))  # type: ignore[arg-type]
        return out if ok else None

    def add(self, item_id: str, source: StructureSource, values: list[float]) -> None:
        self.ids.append(item_id)
        self.sources.append(source)
        self.rows.append(values)

    def dataset(self, meta: dict[str, Any]) -> CrystalDataset:
        k = len(self.target_names)
        targets = np.asarray(self.rows, dtype=np.float64).reshape(len(self.rows), k)
        meta = dict(meta)
        meta.setdefault("transform", self.transform)
        return CrystalDataset(
            ids=list(self.ids),
            sources=list(self.sources),
            targets=targets,
            target_names=list(self.target_names),
            problems=list(self.problems),
            meta=meta,
        )


def _normalize_transform(transform: str | None) -> str:
    t = "none" if transform is None else str(transform).lower()
    if t not in _TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {list(_TRANSFORMS)}")
    return t


def _as_target_list(targets: Any) -> list[Any] | None:
    if targets is None:
        return None
    if isinstance(targets, (str, int, np.integer)) and not isinstance(targets, bool):
        return [targets]
    if isinstance(targets, bool):
        raise TypeError("targets must be a column name, an int index or a list of them, not a bool")
    return list(targets)


def _select(
    targets: Any,
    names: Sequence[str],
    numeric: Sequence[bool],
    what: str,
    *,
    aliases: dict[str, int] | None = None,
    auto: str = "all",
) -> list[int]:
    """Indices into ``names`` for the requested targets.

    ``auto="all"``: ``targets=None`` takes every numeric column; ``auto="one"``: only when
    exactly one is numeric (several → ValueError asking to choose, none → no targets).
    """
    available = ", ".join(f"{i}: {n!r}" + ("" if numeric[i] else " (not numeric)") for i, n in enumerate(names))
    available = available or "none"
    requested = _as_target_list(targets)
    if requested is None:
        chosen = [i for i, is_num in enumerate(numeric) if is_num]
        if auto == "one" and len(chosen) > 1:
            numeric_names = [names[i] for i in chosen]
            raise ValueError(
                f"{what} has several numeric columns {numeric_names}: say which to learn, e.g. "
                f"targets={numeric_names[0]!r} or targets={numeric_names[:2]!r} (targets=[] for "
                "prediction-only data)"
            )
        if auto == "all" and not chosen and names:
            raise ValueError(
                f"{what} has no numeric target column (columns: {available}); pass targets=[] for "
                "prediction-only data"
            )
        return chosen
    out: list[int] = []
    for t in requested:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            i = int(t)
            if not 0 <= i < len(names):
                raise ValueError(
                    f"target index {i} is out of range: {what} has {len(names)} target column(s) "
                    f"({available}); indices are 0-based over these columns"
                )
        elif isinstance(t, str):
            if t in names:
                i = list(names).index(t)
            elif aliases and t in aliases:
                i = aliases[t]
            else:
                lower = [n.lower() for n in names]
                if t.lower() in lower and lower.count(t.lower()) == 1:
                    i = lower.index(t.lower())
                else:
                    raise ValueError(
                        f"unknown target column {t!r} in {what}; available: {available} (give a "
                        "name or a 0-based index)"
                    )
        else:
            raise TypeError(f"a target must be a column name or an int index, got {t!r}")
        if i in out:
            raise ValueError(f"target {names[i]!r} was requested twice")
        out.append(i)
    return out


# --------------------------------------------------------------------------------------------
# Structure-file resolution (id_prop layouts)
# --------------------------------------------------------------------------------------------


def _search_dirs(base: Path, structures_dir: str | os.PathLike | None) -> list[Path]:
    roots = [Path(structures_dir).absolute()] if structures_dir is not None else [base]
    dirs: list[Path] = []
    for root in roots:
        dirs.append(root)
        for sub in STRUCTURE_SUBDIRS:
            if (root / sub).is_dir():
                dirs.append(root / sub)
    return dirs


def _candidate_names(item_id: str) -> list[tuple[str, str]]:
    p = Path(item_id)
    if p.suffix.lower() in _STRUCTURE_EXTS:
        return [(item_id, format_from_path(item_id))]
    return [(item_id + ".cif", "cif"), (item_id + ".vasp", "poscar"), (item_id, "poscar")]


class _DirIndex:
    """Finds ``<id>`` structure files in a list of folders, listing each folder once.

    Checking a name against a cached ``os.listdir`` set is far cheaper than failing ``open`` calls
    (mp37k: 36k ids x several candidate names).
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [str(d) for d in dirs]
        self._listing: dict[str, set[str] | None] = {}

    def _names(self, d: str) -> set[str] | None:
        if d not in self._listing:
            try:
                self._listing[d] = set(os.listdir(d))
            except OSError:
                self._listing[d] = None
        return self._listing[d]

    def find(self, item_id: str) -> tuple[str, str, bytes] | list[str]:
        """(path, fmt, raw bytes) of the first existing candidate, or the list of paths tried."""
        tried: list[str] = []
        candidates = _candidate_names(item_id)
        for d in self.dirs:
            listing = self._names(d)
            for name, fmt in candidates:
                path = os.path.join(d, name)
                tried.append(path)
                if listing is not None and "/" not in name and os.sep not in name and name not in listing:
                    continue
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
                    continue
                return path, fmt, data
        return tried

    def exists(self, item_id: str) -> bool:
        return not isinstance(self.find(item_id), list)

    def find_many(self, item_ids: Iterable[str]) -> dict[str, tuple[str, str, bytes] | list[str]]:
        return {i: self.find(i) for i in dict.fromkeys(i for i in item_ids if i)}


def _file_source(item_id: str, found: Any, col: _Collector) -> StructureSource | None:
    if isinstance(found, list):
        shown = ", ".join(str(p) for p in found[:8]) + (f", ... ({len(found)} paths)" if len(found) > 8 else "")
        col.problem(item_id, f"structure file not found; tried {shown}")
        return None
    path, fmt, data = found
    if not data.strip():
        col.problem(item_id, f"structure file {path} is empty")
        return None
    return StructureSource(key=bytes_key(data), path=path, fmt=fmt)


# --------------------------------------------------------------------------------------------
# id_prop.csv layouts (CGCNN, ALIGNN)
# --------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, stripped fields) of the non-blank, non-comment rows of a small CSV."""
    with _open_text(path) as fh:
        text = fh.read()
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    delimiter = "\t" if ("\t" in first and "," not in first) else ","
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for fields in reader:
        fields = [f.strip() for f in fields]
        if not any(fields) or fields[0].startswith("#"):
            continue
        rows.append((reader.line_num, fields))
    return rows


def _load_id_prop(
    csv_path: Path,
    targets: Any,
    transform: str,
    structures_dir: str | os.PathLike | None,
    max_rows: int | None,
    layout: str,
) -> CrystalDataset:
    if structures_dir is not None and not Path(structures_dir).is_dir():
        raise FileNotFoundError(
            f"structures_dir {structures_dir} does not exist; pass the folder holding the <id>.cif "
            "files (for an archive, extract it first)"
        )
    base = csv_path.parent.absolute()
    dirs = _search_dirs(base, structures_dir)
    rows = _read_rows(csv_path)
    if not rows:
        raise ValueError(f"{csv_path} has no rows; expected lines 'id,target[,target...]'")

    first = list(rows[0][1])
    while len(first) > 1 and first[-1] == "":  # trailing commas do not make a column
        first.pop()
    header: list[str] | None = None
    tfields = first[1:]
    if tfields:
        looks_like_header = all(not _is_number(f) for f in tfields)
    else:
        looks_like_header = first[0].lower() in _ID_HEADER_NAMES
    index = _DirIndex(dirs)
    if looks_like_header and not index.exists(first[0]):
        header = first
        rows = rows[1:]
    if max_rows is not None:
        rows = rows[: max(0, int(max_rows))]

    if header is not None:
        names = [h or f"column{i + 1}" for i, h in enumerate(header[1:])]
    else:
        width = len(first) - 1
        names = ["target"] if width == 1 else [f"target{i}" for i in range(width)]
    aliases = {"target0": 0} if names == ["target"] else None
    ncols = len(names) + 1

    # numeric columns: at least half of the non-empty values parse as numbers
    numeric: list[bool] = []
    for j in range(1, ncols):
        values = [f[j] for _, f in rows if len(f) > j and f[j] != ""]
        numeric.append(bool(values) and sum(_is_number(v) for v in values) * 2 >= len(values))
    chosen = _select(targets, names, numeric, f"{csv_path.name}", aliases=aliases, auto="all")
    for j in chosen:
        if not numeric[j] and rows:
            sample = next((f[j + 1] for _, f in rows if len(f) > j + 1 and f[j + 1]), "")
            raise ValueError(
                f"target column {names[j]!r} of {csv_path} is not numeric (values like {sample!r}); "
                f"numeric columns: {[n for n, is_num in zip(names, numeric) if is_num]}"
            )

    col = _Collector([names[j] for j in chosen], transform)
    extra_cols = [j for j in range(len(names)) if j not in chosen and not numeric[j]]
    extra: dict[str, dict[str, str]] = {names[j]: {} for j in extra_cols}
    files_found = 0
    found = index.find_many(f[0] for _, f in rows)
    for lineno, fields in rows:
        item_id = fields[0]
        where = f"line {lineno}"
        if not item_id:
            col.problem(f"line {lineno}", "empty id")
            continue
        if not col.claim(item_id, where):
            continue
        while len(fields) > ncols and fields[-1] == "":  # trailing commas
            fields = fields[:-1]
        if len(fields) != ncols:
            col.problem(
                item_id,
                f"{where} has {len(fields)} field(s), expected {ncols} (id + {ncols - 1} target "
                f"column(s) {names})",
            )
            continue
        values = col.targets(item_id, [fields[j + 1] for j in chosen])
        source = _file_source(item_id, found[item_id], col)
        if source is not None or not col.problems[-1].reason.startswith("structure file not found"):
            files_found += 1
        if values is None or source is None:
            continue
        col.add(item_id, source, values)
        for j in extra_cols:
            extra[names[j]][item_id] = fields[j + 1]

    if rows and not col.ids and files_found == 0 and any(
        p.reason.startswith("structure file not found") for p in col.problems
    ):
        archives = sorted(
            str(p.name)
            for d in ([base] + ([Path(structures_dir)] if structures_dir is not None else []))
            for p in d.iterdir()
            if p.name.lower().endswith(_ARCHIVE_SUFFIXES)
        )
        hint = (
            f" The structures seem to be in an archive ({', '.join(archives)}): extract it (outside the "
            "data folder if it is read-only) and pass structures_dir=<extracted folder>."
            if archives
            else " Pass structures_dir=<folder holding the files> if they live elsewhere."
        )
        raise FileNotFoundError(
            f"none of the {len(rows)} structure files listed in {csv_path} was found (first tried: "
            f"{col.problems[0].reason.split('tried ', 1)[-1]}).{hint}"
        )
    if layout == "cgcnn" and col.ids and sum(Path(i).suffix.lower() in _STRUCTURE_EXTS for i in col.ids) * 2 > len(col.ids):
        layout = "alignn"
    meta: dict[str, Any] = {
        "source": str(csv_path.parent if layout in ("cgcnn", "alignn") else csv_path),
        "format": layout,
        "id_prop": str(csv_path),
        "header": header is not None,
        "structures_dir": str(structures_dir) if structures_dir is not None else None,
    }
    if extra:
        meta["extra_columns"] = extra  # non-numeric columns (e.g. QMOF's split), keyed by id
    return col.dataset(meta)


# --------------------------------------------------------------------------------------------
# Tables: CSV with a structure column, MatBench JSON, records, DataFrames
# --------------------------------------------------------------------------------------------


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
        return _load_id_prop(path, targets, transform, structures_dir, max_rows, "id_prop_csv")
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


# --------------------------------------------------------------------------------------------
# ASE files, structure folders, in-memory structures
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


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
