"""What several readers share: the default id column names, the archive suffixes that are refused,
the list of layouts that error messages name, and opening (gzipped) text files."""

from __future__ import annotations

import gzip
from pathlib import Path

#: Column / key names taken as the item id when ``id_column`` is not given (first match wins).
ID_COLUMNS = ("id", "material_id", "mpid", "mp_id", "idx")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".zip", ".7z")
_EXPECTED_LAYOUTS = (
    "a CGCNN/ALIGNN folder (id_prop.csv + <id>.cif / .vasp files), an id_prop.csv-like CSV, a CSV "
    "with a CIF-text 'structure'/'cif' column, a MatBench-style JSON(.gz), an ASE-readable file "
    "(e.g. extxyz), or a list of pymatgen Structures / ASE Atoms"
)


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name
