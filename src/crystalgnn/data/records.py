"""In-memory description of a dataset before any graph is built.

Readers produce a :class:`CrystalDataset`: ids, targets and a :class:`StructureSource` per item.
A source knows how to produce a pymatgen ``Structure`` *lazily* and carries a content key (a hash
of the raw bytes it came from). The graph cache is looked up by that key, so a warm cache never
parses a CIF again, and a changed file gets a new key and is rebuilt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pymatgen.core import Structure

from crystalgnn.errors import Problem


@dataclass
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
        from crystalgnn.io.parse import (
            parse_structure,  # local: keeps records import-light
        )

        if self.structure is not None:
            return self.structure
        return parse_structure(path=self.path, text=self.text, fmt=self.fmt)

    def load_or_reason(self) -> Structure | str:
        """The structure, or the reason it cannot be read (never raises): one bad item in a
        batch of thousands is reported, not a crash. Reader warnings are silenced."""
        import warnings

        from crystalgnn.io.parse import StructureParseError

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


@dataclass
class CrystalDataset:
    """ids, structure sources and an (n_items, n_targets) float array of targets (NaN-free).

    ``problems`` lists the items the reader could not use (bad target, missing file, ...).
    ``targets`` may have zero columns for prediction-only data.
    """

    ids: list[str]
    sources: list[StructureSource]
    targets: np.ndarray
    target_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.sources) or len(self.ids) != len(self.targets):
            raise ValueError("ids, sources and targets must have the same length")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: np.ndarray | list[int]) -> "CrystalDataset":
        idx = list(int(i) for i in indices)
        return CrystalDataset(
            ids=[self.ids[i] for i in idx],
            sources=[self.sources[i] for i in idx],
            targets=self.targets[idx],
            target_names=list(self.target_names),
            problems=list(self.problems),
            meta=dict(self.meta),
        )


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
