"""One structure that has not necessarily been parsed yet, and its content key.

A :class:`StructureSource` knows how to produce a pymatgen ``Structure`` *lazily* and carries a
content key (a hash of the raw bytes it came from). The graph cache is looked up by that key, so a
warm cache never parses a CIF again, and a changed file gets a new key and is rebuilt.
"""

from __future__ import annotations

import binascii
import hashlib
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
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


#: Bytes of a SHA-1 digest: a key of :func:`bytes_key` / :func:`structure_key` is its hex.
_DIGEST = 20
#: ``_dir_of`` value of an item kept whole (in ``_others``), not in the columns.
_WHOLE = 0xFFFFFFFF


class SourceList(Sequence[StructureSource]):
    """A list of sources that stores file-backed ones in columns, ~40 bytes each.

    A :class:`StructureSource` with a path costs ~280 bytes as objects (the object, its path and
    its hex key as strings); a reader of 500,000 CIFs would hold 140 MB of them. Here a file
    source is its folder's number (each folder stored once), its file name (UTF-8, in one byte
    buffer), its key as the 20 raw bytes of the SHA-1 digest and its format's number; indexing
    gives back an equal :class:`StructureSource`. Sources held in memory (a structure or text)
    are kept whole. Slicing and :meth:`take` give a ``SourceList``.
    """

    __slots__ = ("_dirs", "_dir_number", "_dir_of", "_names", "_name_end", "_digests", "_fmts", "_fmt_of", "_others")

    def __init__(self, sources: Iterable[StructureSource] = ()) -> None:
        self._dirs: list[str] = []
        self._dir_number: dict[str, int] = {}
        self._dir_of = array("I")
        self._names = bytearray()
        self._name_end = array("Q")
        self._digests = bytearray()
        self._fmts: list[str] = []
        self._fmt_of = array("B")
        self._others: dict[int, StructureSource] = {}
        for source in sources:
            self.append(source)

    @staticmethod
    def _columns_of(source: StructureSource) -> tuple[str, bytes, bytes] | None:
        """(folder, file name, digest) when ``source`` can be stored in the columns exactly."""
        if source.path is None or source.structure is not None or source.text is not None or len(source.key) != 2 * _DIGEST:
            return None
        try:
            digest = bytes.fromhex(source.key)
        except ValueError:
            return None
        folder, name = os.path.split(source.path)
        if digest.hex() != source.key or not name or os.path.join(folder, name) != source.path:
            return None
        return folder, name.encode("utf-8", "surrogateescape"), digest

    def append(self, source: StructureSource) -> None:
        columns = self._columns_of(source)
        if columns is None:
            self._others[len(self._dir_of)] = source
            self._dir_of.append(_WHOLE)
            self._name_end.append(len(self._names))
            self._digests += bytes(_DIGEST)
            self._fmt_of.append(0)
            return
        folder, name, digest = columns
        if folder not in self._dir_number:
            self._dir_number[folder] = len(self._dirs)
            self._dirs.append(folder)
        if source.fmt not in self._fmts:
            if len(self._fmts) == 255:
                raise ValueError("more than 255 structure formats in one dataset")
            self._fmts.append(source.fmt)
        self._dir_of.append(self._dir_number[folder])
        self._names += name
        self._name_end.append(len(self._names))
        self._digests += digest
        self._fmt_of.append(self._fmts.index(source.fmt))

    def __len__(self) -> int:
        return len(self._dir_of)

    def _one(self, i: int) -> StructureSource:
        if self._dir_of[i] == _WHOLE:
            return self._others[i]
        start = self._name_end[i - 1] if i > 0 else 0
        name = self._names[start : self._name_end[i]].decode("utf-8", "surrogateescape")
        return StructureSource(key=self._digests[i * _DIGEST : (i + 1) * _DIGEST].hex(),
                               path=os.path.join(self._dirs[self._dir_of[i]], name), fmt=self._fmts[self._fmt_of[i]])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"source {index} of {len(self)}")
        return self._one(i)

    def __iter__(self) -> Iterator[StructureSource]:
        for i in range(len(self)):
            yield self._one(i)

    def take(self, indices: Iterable[int]) -> SourceList:
        """The sources at ``indices``, in that order, as a new list."""
        return SourceList(self[int(i)] for i in indices)

    def keys(self) -> KeyColumn:
        """Every source's key, without building the sources: one fixed-width byte array."""
        width = max([2 * _DIGEST, *(len(source.key.encode()) for source in self._others.values())])
        hexed = np.frombuffer(binascii.hexlify(bytes(self._digests)), dtype=f"S{2 * _DIGEST}").astype(f"S{width}")
        for i, source in self._others.items():
            hexed[i] = source.key.encode()
        return KeyColumn(hexed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"SourceList({len(self)} sources, {len(self._others)} held whole, folders {self._dirs[:3]}{'...' if len(self._dirs) > 3 else ''})"

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)


class KeyColumn(Sequence[str]):
    """Content keys as one fixed-width byte array, ``array`` (40 bytes a key instead of a ~97-byte
    string); items read back as text."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return KeyColumn(self.array[index])
        return self.array[index].decode("ascii")


def source_keys(sources: Sequence[StructureSource]) -> Sequence[str]:
    """The content key of every source: a :class:`KeyColumn` for a :class:`SourceList`."""
    return sources.keys() if isinstance(sources, SourceList) else [source.key for source in sources]
