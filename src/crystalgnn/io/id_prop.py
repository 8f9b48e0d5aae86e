"""CGCNN/ALIGNN layouts: an ``id_prop.csv`` (id, then one or more target columns; an optional
header row is detected) naming structure files ``<id>.cif`` / ``<id>.vasp`` / ``<id>`` that lie
next to it or in ``structures_dir``, or in their usual sub-folders.

Structure files are hashed, not parsed: each becomes ``StructureSource(key, path=..., fmt=...)``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.common import _ARCHIVE_SUFFIXES, _open_text
from crystalgnn.io.targets import _Collector, _select
from crystalgnn.structures.parse import format_from_path
from crystalgnn.structures.source import StructureSource, bytes_key

#: Sub-folders searched (after the folder itself) for ``<id>.cif`` in id_prop layouts, when they
#: exist: ``data/`` is the extracted mp37k archive, ``structures/`` QMOF, ``data/cif_files`` mp_api3k.
STRUCTURE_SUBDIRS = ("data", "structures", "cifs", "cif_files", "data/cif_files")
#: Extensions that mark an id as a complete file name (ALIGNN's ``POSCAR-JVASP-10.vasp``).
_STRUCTURE_EXTS = {".cif", ".mcif", ".vasp", ".poscar", ".json", ".xyz", ".extxyz", ".gz"}
_ID_HEADER_NAMES = {"id", "ids", "name", "file", "filename", "file_name", "jid", "material_id", "mpid"}


def _is_number(text: str) -> bool:
    if str(text).strip().lower() in ("true", "false"):  # class labels written as words
        return True
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


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

    Checking a name against a folder's listing is far cheaper than failing ``open`` calls (mp37k:
    36k ids x several candidate names). A listing is kept as one sorted array of encoded names
    (~15 bytes a file, not a set of strings at ~90), since a folder may hold millions of CIFs.
    """

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [str(d) for d in dirs]
        self._listing: dict[str, np.ndarray | None] = {}

    def _names(self, d: str) -> np.ndarray | None:
        if d not in self._listing:
            try:
                names = [os.fsencode(name) for name in os.listdir(d)]
            except OSError:
                self._listing[d] = None
            else:
                self._listing[d] = np.unique(np.array(names, dtype=bytes)) if names else np.array([], dtype="S1")
        return self._listing[d]

    @staticmethod
    def _listed(listing: np.ndarray, name: str) -> bool:
        encoded = os.fsencode(name)
        if len(encoded) > listing.dtype.itemsize or not listing.size:
            return False
        at = int(np.searchsorted(listing, encoded))
        return at < listing.size and listing[at] == encoded

    def find(self, item_id: str) -> tuple[str, str, bytes] | list[str]:
        """(path, fmt, raw bytes) of the first existing candidate, or the list of paths tried."""
        tried: list[str] = []
        candidates = _candidate_names(item_id)
        for d in self.dirs:
            listing = self._names(d)
            for name, fmt in candidates:
                path = os.path.join(d, name)
                tried.append(path)
                if listing is not None and "/" not in name and os.sep not in name and not self._listed(listing, name):
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

    def find_key(self, item_id: str) -> tuple[str, str, str, bool] | list[str]:
        """(path, fmt, content key, blank) of ``item_id``'s file, or the paths tried. The file is
        hashed as it is read and its bytes dropped, so a folder of millions of CIFs is never in
        memory at once."""
        hit = self.find(item_id)
        return hit if isinstance(hit, list) else (hit[0], hit[1], bytes_key(hit[2]), not hit[2].strip())


def _file_source(item_id: str, found: Any, col: _Collector) -> StructureSource | None:
    if isinstance(found, list):
        shown = ", ".join(str(p) for p in found[:8]) + (f", ... ({len(found)} paths)" if len(found) > 8 else "")
        col.problem(item_id, f"structure file not found; tried {shown}")
        return None
    path, fmt, key, blank = found
    if blank:
        col.problem(item_id, f"structure file {path} is empty")
        return None
    return StructureSource(key=key, path=path, fmt=fmt)


def _delimiter(path: Path) -> str:
    """Tab when the first row has tabs and no commas, else comma."""
    with _open_text(path) as fh:
        for line in fh:
            if line.strip() and not line.lstrip().startswith("#"):
                return "\t" if ("\t" in line and "," not in line) else ","
    return ","


def _iter_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped fields) of the non-blank, non-comment rows, read as a stream: a table
    of millions of rows is never in memory at once."""
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        for fields in reader:
            fields = [f.strip() for f in fields]
            if not any(fields) or fields[0].startswith("#"):
                continue
            yield reader.line_num, fields


def _load_id_prop(
    csv_path: Path,
    targets: Any,
    transform: str,
    structures_dir: str | os.PathLike | None,
    max_rows: int | None,
    layout: str,
    id_column: str | None = None,
) -> CrystalDataset:
    if structures_dir is not None and not Path(structures_dir).is_dir():
        raise FileNotFoundError(
            f"structures_dir {structures_dir} does not exist; pass the folder holding the <id>.cif "
            "files (for an archive, extract it first)"
        )
    base = csv_path.parent.absolute()
    dirs = _search_dirs(base, structures_dir)
    delimiter = _delimiter(csv_path)
    first_row = next(_iter_rows(csv_path, delimiter), None)
    if first_row is None:
        raise ValueError(f"{csv_path} has no rows; expected lines 'id,target[,target...]'")

    first = list(first_row[1])
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
    id_at: int | None = None
    if id_column is not None:  # ids in a named column (not the first): move it first
        if header is None or id_column not in header:
            raise ValueError(f"id column {id_column!r} not found in {csv_path}; header: {header or '(none)'}")
        id_at = header.index(id_column)
        header = [header[id_at], *header[:id_at], *header[id_at + 1:]]
    limit = None if max_rows is None else max(0, int(max_rows))

    def data_rows() -> Iterator[tuple[int, list[str]]]:
        """The rows after the header, ids first, at most ``max_rows``: one pass over the file."""
        stream = _iter_rows(csv_path, delimiter)
        if header is not None:
            next(stream, None)
        for k, (line, f) in enumerate(stream):
            if limit is not None and k >= limit:
                break
            if id_at is not None and len(f) > id_at:
                f = [f[id_at], *f[:id_at], *f[id_at + 1:]]
            yield line, f

    if header is not None:
        names = [h or f"column{i + 1}" for i, h in enumerate(header[1:])]
    else:
        width = len(first) - 1
        names = ["target"] if width == 1 else [f"target{i}" for i in range(width)]
    aliases = {"target0": 0} if names == ["target"] else None
    ncols = len(names) + 1

    # numeric columns: at least half of the non-empty values parse as numbers (a first pass)
    filled, numbers = [0] * (ncols - 1), [0] * (ncols - 1)
    any_rows = False
    for _, f in data_rows():
        any_rows = True
        for j in range(1, min(len(f), ncols)):
            if f[j] != "":
                filled[j - 1] += 1
                numbers[j - 1] += _is_number(f[j])
    numeric = [n > 0 and k * 2 >= n for n, k in zip(filled, numbers)]
    chosen = _select(targets, names, numeric, f"{csv_path.name}", aliases=aliases, auto="all")
    for j in chosen:
        if not numeric[j] and any_rows:
            sample = next((f[j + 1] for _, f in data_rows() if len(f) > j + 1 and f[j + 1]), "")
            raise ValueError(
                f"target column {names[j]!r} of {csv_path} is not numeric (values like {sample!r}); "
                f"numeric columns: {[n for n, is_num in zip(names, numeric) if is_num]}"
            )

    col = _Collector([names[j] for j in chosen], transform)
    extra_cols = [j for j in range(len(names)) if j not in chosen and not numeric[j]]
    extra: dict[str, dict[str, str]] = {names[j]: {} for j in extra_cols}
    files_found = n_rows = 0
    for lineno, fields in data_rows():  # the second pass: each file is found and hashed in turn
        n_rows += 1
        item_id = fields[0]
        if not item_id:
            col.problem(f"line {lineno}", "empty id")
            continue
        if not col.claim(item_id, lineno):
            continue
        while len(fields) > ncols and fields[-1] == "":  # trailing commas
            fields = fields[:-1]
        if len(fields) != ncols:
            col.problem(
                item_id,
                f"line {lineno} has {len(fields)} field(s), expected {ncols} (id + {ncols - 1} target "
                f"column(s) {names})",
            )
            continue
        values = col.targets(item_id, [fields[j + 1] for j in chosen])
        source = _file_source(item_id, index.find_key(item_id), col)
        if source is not None or not col.problems[-1].reason.startswith("structure file not found"):
            files_found += 1
        if values is None or source is None:
            continue
        col.add(item_id, source, values)
        for j in extra_cols:
            extra[names[j]][item_id] = fields[j + 1]

    if n_rows and not col.ids and files_found == 0 and any(
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
            f"none of the {n_rows} structure files listed in {csv_path} was found (first tried: "
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
