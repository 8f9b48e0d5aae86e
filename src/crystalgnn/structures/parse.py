"""Turning one structure file (or text) into a pymatgen ``Structure``, and checking it is usable.

This is the only place crystalgnn parses CIF/POSCAR/JSON/ASE input. Readers stay lazy and hand out
:class:`~crystalgnn.structures.source.StructureSource` objects; the graph builder calls
``source.load()``, which lands here.
"""

from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystalgnn.errors import CrystalGNNError

__all__ = [
    "StructureParseError",
    "parse_structure",
    "validate_structure",
    "format_from_path",
    "structure_from_dict",
    "structure_from_atoms",
    "MIN_DISTANCE",
]

#: Two sites closer than this (Å) are treated as overlapping (a duplicated or broken site).
MIN_DISTANCE = 0.5

_CIF_FORMATS = {"cif", "mcif"}
_POSCAR_FORMATS = {"poscar", "vasp", "contcar"}


#: Smallest cell volume (Å³) taken as a real cell.
MIN_CELL_VOLUME = 1e-6


def degenerate_cell(volume: float) -> str:
    """The reason given for a cell whose lattice vectors do not span space (every reader says it alike)."""
    return f"degenerate cell (volume {volume:g} Å³): the three lattice vectors must span space"


class StructureParseError(CrystalGNNError):
    """A structure file or text could not be turned into a ``Structure``.

    ``reason`` is a short, human sentence (it ends up in the skipped-items report).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def format_from_path(path: str | Path) -> str:
    """Format name for a structure file, from its name.

    ``.cif`` → ``"cif"``; ``.vasp``, ``POSCAR*``, ``CONTCAR*`` → ``"poscar"``; ``.json`` →
    ``"json"``; ``.xyz``/``.extxyz`` → ``"extxyz"``; anything else → ``"ase"`` (ASE guesses).
    A trailing ``.gz`` is ignored.
    """
    name = Path(path).name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    lower = name.lower()
    suffix = Path(lower).suffix
    if suffix in (".cif", ".mcif"):
        return "cif"
    if suffix in (".vasp", ".poscar") or lower.startswith(("poscar", "contcar")):
        return "poscar"
    if suffix == ".json":
        return "json"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    return "ase"


def _first_line(message: str) -> str:
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _short(message: Any, limit: int = 200) -> str:
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_text(path: str) -> str:
    p = Path(path)
    if not p.exists():
        raise StructureParseError(f"file not found: {path}")
    if p.is_dir():
        raise StructureParseError(f"{path} is a folder, not a structure file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise StructureParseError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except OSError as exc:
            raise StructureParseError(f"cannot decompress {path}: {exc}") from None
    return raw.decode("utf-8", errors="replace")


def _parse_cif_fast(text: str) -> Structure | None:
    """Ordered CIFs through gemmi's C++ reader (~9× faster than pymatgen's), or None to fall back.

    Anything unusual — several data blocks, partial occupancy, an unknown element symbol, no atoms
    — returns None, so pymatgen parses it and its messages explain the problem. gemmi applies the
    symmetry operations and merges coincident images; unlike pymatgen it keeps coordinates as
    written (pymatgen snaps values within 1e-4 of 1/3, 2/3, ... to the exact fraction), so bond
    lengths can differ by < 1e-3 Å.
    """
    try:
        import gemmi
    except ImportError:  # optional speed-up
        return None
    try:
        doc = gemmi.cif.read_string(text)
        if len(doc) != 1:
            return None
        small = gemmi.make_small_structure_from_block(doc.sole_block())
        sites = small.get_all_unit_cell_sites()
    except Exception:  # noqa: BLE001 - malformed input: let pymatgen produce the message
        return None
    cell = small.cell
    parameters = np.array([cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma])
    if np.isfinite(parameters).all() and parameters.any() and not cell.volume >= MIN_CELL_VOLUME:
        # pymatgen would fail here with a bare "Singular matrix"
        raise StructureParseError(degenerate_cell(float(cell.volume)))
    if not sites or not np.isfinite(parameters).all() or not cell.volume > 0 or any(site.occ != 1.0 or site.element.atomic_number == 0 for site in sites):
        return None
    from pymatgen.core import Lattice

    lattice = Lattice.from_parameters(cell.a, cell.b, cell.c, cell.alpha, cell.beta, cell.gamma)
    coords = np.array([[site.fract.x, site.fract.y, site.fract.z] for site in sites])
    if not np.isfinite(coords).all():
        return None
    return Structure(lattice, [site.element.atomic_number for site in sites], coords)


def _parse_cif(text: str) -> Structure:
    fast = _parse_cif_fast(text)
    if fast is not None:
        return fast
    from pymatgen.io.cif import CifParser

    structures: list[Structure] = []
    error: Exception | None = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # check_cif=False: the formula cross-check only ever warns, and costs ~15 %.
            parser = CifParser.from_str(text, check_cif=False)
            structures = parser.parse_structures(primitive=False, on_error="warn")
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many kinds
            error = exc
    if structures:
        return structures[0]
    # pymatgen reports the real cause as a warning ("No structure parsed for section 1 in CIF.\n
    # <cause>") and then raises "Invalid CIF file with no structures!": surface that cause.
    for w in caught:
        msg = str(w.message)
        if msg.startswith("No structure parsed"):
            lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
            detail = lines[0] + (f" ({lines[1]})" if len(lines) > 1 else "")
            raise StructureParseError(f"unparseable CIF: {_short(detail)}")
    if error is not None and "no structures" not in str(error):
        detail = _first_line(error) or type(error).__name__
        raise StructureParseError(f"unparseable CIF: {_short(detail)} ({type(error).__name__})")
    raise StructureParseError("no structure found in file (no CIF data block with a cell and atoms)")


def _parse_poscar(text: str) -> Structure:
    from pymatgen.io.vasp import Poscar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Poscar.from_str(text).structure
        except Exception as exc:  # noqa: BLE001
            detail = _first_line(exc) or type(exc).__name__
            raise StructureParseError(f"unparseable POSCAR: {_short(detail)} ({type(exc).__name__})") from None


def structure_from_dict(d: Any) -> Structure:
    """A pymatgen ``Structure`` from its ``as_dict()`` form (raises :class:`StructureParseError`)."""
    if not isinstance(d, dict):
        raise StructureParseError(f"expected a pymatgen Structure dict, got {type(d).__name__}")
    if "lattice" not in d or "sites" not in d:
        raise StructureParseError(
            "not a pymatgen Structure dict (needs 'lattice' and 'sites' keys, as written by "
            "Structure.as_dict())"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return Structure.from_dict(d)
        except Exception as exc:  # noqa: BLE001
            detail = _first_line(exc) or type(exc).__name__
            raise StructureParseError(
                f"invalid pymatgen Structure dict: {_short(detail)} ({type(exc).__name__})"
            ) from None


def _parse_json(text: str) -> Structure:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StructureParseError(f"unparseable JSON: {exc.msg} at line {exc.lineno}") from None
    return structure_from_dict(d)


def structure_from_atoms(atoms: Any) -> Structure:
    """Convert ASE ``Atoms`` with pymatgen's ``AseAtomsAdaptor`` (raises :class:`StructureParseError`)."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if len(atoms) == 0:
        raise StructureParseError("no atoms in the structure")
    cell = np.asarray(atoms.cell)
    if abs(np.linalg.det(cell)) < 1e-8:
        raise StructureParseError(
            "no periodic cell (the ASE Atoms has a zero or flat cell): crystalgnn needs a crystal "
            "with three lattice vectors"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return AseAtomsAdaptor.get_structure(atoms)
        except Exception as exc:  # noqa: BLE001
            detail = _first_line(exc) or type(exc).__name__
            raise StructureParseError(f"cannot convert ASE Atoms: {_short(detail)}") from None


def _parse_ase(path: str | None, text: str | None, fmt: str) -> Structure:
    import ase.io

    ase_format = None if fmt == "ase" else fmt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if path is not None:
                atoms = ase.io.read(path, index=0, format=ase_format)
            else:
                if ase_format is None:
                    raise StructureParseError(
                        "cannot guess the format of structure text: give fmt (e.g. 'cif', 'poscar', "
                        "'extxyz')"
                    )
                atoms = ase.io.read(io.StringIO(text), index=0, format=ase_format)
        except StructureParseError:
            raise
        except StopIteration:
            raise StructureParseError("no structure found in file") from None
        except Exception as exc:  # noqa: BLE001
            detail = _first_line(exc) or type(exc).__name__
            raise StructureParseError(
                f"unparseable {fmt if ase_format else 'structure'} file: {_short(detail)} "
                f"({type(exc).__name__})"
            ) from None
    if isinstance(atoms, list):  # some ASE readers return a list even for one index
        if not atoms:
            raise StructureParseError("no structure found in file")
        atoms = atoms[0]
    return structure_from_atoms(atoms)


def parse_structure(path: str | Path | None = None, text: str | None = None, fmt: str = "cif") -> Structure:
    """Parse one structure from a file ``path`` or from ``text``.

    ``fmt``: ``"cif"`` (pymatgen ``CifParser``, cell as given, no primitive reduction),
    ``"poscar"`` (pymatgen ``Poscar``), ``"json"`` (a ``Structure.as_dict()`` dump), or any ASE
    format name (``"extxyz"``, ...; ``"ase"`` lets ASE guess from the file). pymatgen's warnings
    are silenced. Raises :class:`StructureParseError` with a short reason on failure.
    """
    if (path is None) == (text is None):
        raise ValueError("parse_structure needs exactly one of path= or text=")
    fmt = (fmt or "cif").lower()
    path_str = str(path) if path is not None else None

    if fmt in _CIF_FORMATS or fmt in _POSCAR_FORMATS or fmt == "json":
        if path_str is not None:
            text = _read_text(path_str)
        assert text is not None
        if not text.strip():
            raise StructureParseError("file is empty" if path_str is not None else "structure text is empty")
        if fmt in _CIF_FORMATS:
            return _parse_cif(text)
        if fmt in _POSCAR_FORMATS:
            return _parse_poscar(text)
        return _parse_json(text)

    # ASE formats
    if path_str is not None:
        p = Path(path_str)
        if not p.exists():
            raise StructureParseError(f"file not found: {path_str}")
        if p.is_file() and p.stat().st_size == 0:
            raise StructureParseError("file is empty")
    elif not text or not text.strip():
        raise StructureParseError("structure text is empty")
    return _parse_ase(path_str, text, fmt)


def _formula_of_site(site: Any) -> str:
    return " ".join(f"{sp}{occ:g}" for sp, occ in site.species.items())


def validate_structure(structure: Structure) -> str | None:
    """Why ``structure`` cannot be used by crystalgnn, or ``None`` if it is fine.

    Checks: at least one atom, a non-degenerate cell, only real elements (no ``DummySpecies``),
    ordered sites (no partial occupancy, no vacancies), and no two atoms closer than
    :data:`MIN_DISTANCE` Å (periodic images included).
    """
    from pymatgen.core.periodic_table import DummySpecies, Element, Species

    n = len(structure)
    if n == 0:
        return "no atoms in the structure"
    try:
        volume = float(structure.lattice.volume)
    except Exception:  # noqa: BLE001
        volume = float("nan")
    if not np.isfinite(volume) or volume < MIN_CELL_VOLUME:
        return degenerate_cell(volume)
    if not np.all(np.isfinite(structure.frac_coords)):
        return "non-finite atomic coordinates"

    hint = (
        "crystalgnn needs ordered structures; order it first, e.g. with pymatgen's "
        "OrderDisorderedStructureTransformation"
    )
    for i, site in enumerate(structure):
        species = site.species
        for sp in species:
            if isinstance(sp, DummySpecies) or not isinstance(sp, (Element, Species)):
                return (
                    f"non-element species {sp} at site {i}: crystalgnn needs real chemical elements "
                    "(replace dummy/placeholder species)"
                )
        items = list(species.items())
        total = sum(occ for _, occ in items)
        if len(items) > 1:
            return f"partial occupancy at site {i} ({_formula_of_site(site)}): {hint}"
        if total < 1 - 1e-6:
            return (
                f"vacancy at site {i} ({_formula_of_site(site)}: occupancy {total:g} < 1): {hint}"
            )
        if total > 1 + 1e-6:
            return f"occupancy {total:g} > 1 at site {i} ({_formula_of_site(site)}): fix the occupancies"

    centers, points, _images, distances = structure.get_neighbor_list(MIN_DISTANCE)
    if len(distances):
        k = int(np.argmin(distances))
        i, j, d = int(centers[k]), int(points[k]), float(distances[k])
        i, j = min(i, j), max(i, j)
        if i == j:
            return (
                f"overlapping sites: atom {i} ({structure[i].species_string}) is {d:.2f} Å from its own "
                f"periodic image (< {MIN_DISTANCE} Å): the cell is too small"
            )
        return (
            f"overlapping sites: atoms {i} ({structure[i].species_string}) and {j} "
            f"({structure[j].species_string}) are {d:.2f} Å apart (< {MIN_DISTANCE} Å); remove the "
            "duplicate, e.g. with structure.merge_sites(tol=0.5, mode='delete')"
        )
    return None
