"""One structure that has not necessarily been parsed yet, and its content key.

A :class:`StructureSource` knows how to produce a pymatgen ``Structure`` *lazily* and carries a
content key (a hash of the raw bytes it came from). The graph cache is looked up by that key, so a
warm cache never parses a CIF again, and a changed file gets a new key and is rebuilt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Structure


@dataclass(slots=True)  # slots: a dataset of millions of items keeps one small object per item
class StructureSource:
    """A structure that has not necessarily been parsed yet.

    Exactly one of ``structure``, ``path`` or ``text`` is set. ``fmt`` is the pymatgen/ASE format
    name for ``path``/``text`` ("cif", "poscar", "json", "extxyz", ...).
    """

    key: str
    structure: Structure | None = None
    path: str | None = None
    text: str | None = None
    fmt: str = "cif"

    def load(self) -> Structure:
        """Parse and return the structure (raises on unparseable input)."""
        from crystalgnn.structures.parse import (
            parse_structure,  # local: keeps source import-light
        )

        if self.structure is not None:
            return self.structure
        return parse_structure(path=self.path, text=self.text, fmt=self.fmt)

    def load_or_reason(self) -> Structure | str:
        """The structure, or the reason it cannot be read (never raises): one bad item in a
        batch of thousands is reported, not a crash. Reader warnings are silenced."""
        import warnings

        from crystalgnn.structures.parse import StructureParseError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = self.load()
        except StructureParseError as err:
            return str(err)
        except Exception as err:  # noqa: BLE001 - a reader library failing in an unforeseen way is still one bad item
            first_line = (str(err).strip().splitlines() or [""])[0][:200]
            return f"could not read structure: {type(err).__name__}: {first_line}".rstrip(": ")
        return structure


def bytes_key(data: bytes) -> str:
    """Content key of raw bytes (file contents, CIF text)."""
    return hashlib.sha1(data).hexdigest()


def structure_key(structure: Structure) -> str:
    """Content key of an in-memory structure: lattice, species and fractional coordinates."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(structure.frac_coords, dtype=np.float64).tobytes())
    h.update(repr([site.species.as_dict() for site in structure]).encode())
    return h.hexdigest()


def file_key(path: str | Path) -> str:
    return bytes_key(Path(path).read_bytes())


StructureFactory = Callable[[], Structure]
