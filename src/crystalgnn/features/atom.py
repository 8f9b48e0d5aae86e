"""CGCNN's 92-dimensional one-hot atom features, computed from element data.

CGCNN (Xie & Grossman, PRL 120, 145301, 2018; Supplemental Table II) describes every element by
nine properties, each one-hot encoded, and concatenates the codes. This module rebuilds that
vector from element data instead of shipping the authors' ``atom_init.json``; the layout and
every binning convention below were settled by fitting the reference file
(``shared/data/cgcnn_sample/sample-regression/atom_init.json``).

Layout (positions in the 92-long vector)::

    block                    size  positions  encoding
    group                      19    0-18     0 = f-block element (La-Yb, Ac-No), 1..18 = IUPAC group
    period                      7   19-25     period 1..7 (lanthanides 6, actinides 7)
    electronegativity          10   26-35     Pauling, linear, 0.5 .. 4.0
    covalent_radius            10   36-45     Pyykko single-bond radius in pm, linear, 25 .. 250
    valence_electrons          12   46-57     1..12 (definition below)
    first_ionization_energy    10   58-67     ln(IE / eV), 1.3 .. 3.3
    electron_affinity          10   68-77     eV, linear, -3 .. 3.7
    block                       4   78-81     s, p, d, f
    atomic_volume              10   82-91     ln(V / cm^3 mol^-1), 1.5 .. 4.3

The paper's table lists 18 groups and 9 periods (lanthanides as period 8, actinides as 9), which
would give 93 positions; the reference vectors instead use 19 group categories (an extra leading
category for the f-block) and 7 periods, giving 92. We follow the reference.

Binning of continuous properties: the stated range ``[lo, hi]`` is split into ``n = 10`` equal
bins and a value ``x`` goes to ``floor(n * (x - lo) / (hi - lo))``, clipped to ``0 .. n-1``
(values outside the range fall into the end bins). The expression is evaluated in exactly this
order -- normalise to [0, 1], multiply by n, floor -- because values lying on a bin edge
(electronegativity 1.2, 1.55, 1.9, 2.6; electron affinity 0.35 eV) land in the reference's bin
only with this floating-point evaluation order. The two "log scale" properties use the natural
logarithm. An element without a value has an all-zero block for that property.

Valence electrons: electrons in the ``ns`` and ``np`` subshells of the outermost shell
(``n`` = period) plus, for d-block elements, those of the ``(n-1)d`` subshell, counted in the
ground-state configuration. This equals the group number for groups 1-12, group - 10 for groups
13-18, 2 for He and 2 for every f-block element (its f and d electrons are not counted).

Data sources (``source="mendeleev"``, the default): IUPAC group, period, block, ground-state
configuration, first ionization energy, density of the solid and molar volume from pymatgen;
Pauling electronegativity, electron affinity and Pyykko's single-bond covalent radii
(Pyykko & Atsumi, Chem. Eur. J. 15, 186, 2009) from the ``mendeleev`` package. pymatgen carries
only Cordero's covalent radii, and newer electronegativity / electron-affinity compilations, none
of which the reference used; ``source="pymatgen"`` uses them anyway (no extra dependency, but it
agrees with the reference for far fewer elements). He is put in the s block (1s^2), where the
reference has it; pymatgen files it under p with the noble gases. The atomic volume is the molar
mass over the density of the solid (pymatgen), or pymatgen's molar volume where it has no solid
density (gaseous elements, Br, Hg, Am, Es); At, Fr and Fm have neither, as in the reference.

With the default source, 82 of the 100 reference elements match exactly; see
:func:`compare_with_reference` and the notes in the project README for the 18 that do not.
"""

from __future__ import annotations

import functools
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CGCNN_CATEGORIES",
    "CGCNN_CONTINUOUS_RANGES",
    "CGCNN_FEATURE_LENGTH",
    "SUPPORTED_MAX_Z",
    "atom_feature_table",
    "cgcnn_atom_features",
    "cgcnn_property_values",
    "compare_with_reference",
    "load_atom_init_json",
]

#: Highest atomic number the computed CGCNN table covers (the reference covers H..Fm).
SUPPORTED_MAX_Z = 100

#: The property blocks of the CGCNN vector, in order, with their category counts.
CGCNN_CATEGORIES: list[tuple[str, int]] = [
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
]

#: Length of the CGCNN atom feature vector (sum of the category counts).
CGCNN_FEATURE_LENGTH = sum(n for _, n in CGCNN_CATEGORIES)

#: For each continuous block: (lower end, upper end, log scale?) of the binned range.
#: Log-scale properties are binned on the natural logarithm of the value in the stated unit.
CGCNN_CONTINUOUS_RANGES: dict[str, tuple[float, float, bool]] = {
    "electronegativity": (0.5, 4.0, False),  # Pauling scale
    "covalent_radius": (25.0, 250.0, False),  # pm
    "first_ionization_energy": (1.3, 3.3, True),  # ln(eV)
    "electron_affinity": (-3.0, 3.7, False),  # eV
    "atomic_volume": (1.5, 4.3, True),  # ln(cm^3/mol)
}

_BLOCKS = ("s", "p", "d", "f")
_SOURCES = ("mendeleev", "pymatgen")


def _block_offsets() -> dict[str, tuple[int, int]]:
    """Map each property name to its (start, size) slice in the feature vector."""
    out: dict[str, tuple[int, int]] = {}
    start = 0
    for name, size in CGCNN_CATEGORIES:
        out[name] = (start, size)
        start += size
    return out


_OFFSETS = _block_offsets()


def _is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _continuous_bin(value: float | None, lo: float, hi: float, n: int = 10) -> int | None:
    """Bin index of ``value`` in ``n`` equal bins over ``[lo, hi]``; ``None`` when missing.

    ``floor(n * (x - lo) / (hi - lo))`` clipped to ``0 .. n-1``; see the module docstring for
    why the evaluation order matters at bin edges.
    """
    if _is_missing(value):
        return None
    index = math.floor((float(value) - lo) / (hi - lo) * n)  # type: ignore[arg-type]
    return min(max(index, 0), n - 1)


# ----------------------------------------------------------------------------------------------
# Raw element data
# ----------------------------------------------------------------------------------------------


def _pymatgen_element(z: int) -> Any:
    from pymatgen.core import Element

    return Element.from_Z(z)


def _valence_electrons(z: int) -> int:
    """Outer ns + np electrons, plus (n-1)d for d-block elements (n = period)."""
    el = _pymatgen_element(z)
    period = int(el.row)
    block = _element_block(z)
    count = 0
    for n, subshell, electrons in el.full_electronic_structure:
        if n == period and subshell in ("s", "p"):
            count += int(electrons)
        elif block == "d" and n == period - 1 and subshell == "d":
            count += int(electrons)
    return count


def _element_block(z: int) -> str:
    """s/p/d/f block as pymatgen gives it, except He (1s^2), which is s-block here."""
    if z == 2:
        return "s"
    return str(_pymatgen_element(z).block)


def _group_category(z: int) -> int:
    """0 for f-block elements, else the IUPAC group 1..18."""
    if _element_block(z) == "f":
        return 0
    return int(_pymatgen_element(z).group)


def _first_ionization_energy(z: int) -> float | None:
    energies = _pymatgen_element(z).ionization_energies
    if not energies or _is_missing(energies[0]):
        return None
    return float(energies[0])


def _atomic_volume(z: int) -> float | None:
    """Molar mass / density of the solid in cm^3/mol; pymatgen's molar volume as fallback."""
    el = _pymatgen_element(z)
    density = el.density_of_solid  # kg m^-3
    if density is not None and float(density) > 0:
        return float(el.atomic_mass) / (float(density) / 1000.0)
    volume = el.molar_volume
    if volume is None:
        return None
    return float(volume)


def _pymatgen_covalent_radii() -> dict[str, float]:
    try:
        from pymatgen.core.molecule_structure_comparator import CovalentRadius
    except ImportError:  # older pymatgen layouts
        from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    return {symbol: float(r) * 100.0 for symbol, r in CovalentRadius.radius.items()}


@functools.lru_cache(maxsize=1)
def _mendeleev_table() -> Any:
    try:
        from mendeleev.fetch import fetch_table
    except ImportError as exc:  # pragma: no cover - exercised only without mendeleev
        raise ImportError(
            "The CGCNN atom features need the 'mendeleev' package for Pauling "
            "electronegativities, electron affinities and Pyykko covalent radii "
            "(pip install mendeleev), or pass source='pymatgen' to use pymatgen's data, "
            "which agrees less well with the reference CGCNN table."
        ) from exc
    return fetch_table("elements").set_index("atomic_number")


def _mendeleev_value(column: str, z: int) -> float | None:
    value = _mendeleev_table().at[z, column]
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _source_getters(source: str) -> dict[str, Callable[[int], float | None]]:
    """Per-property functions Z -> raw value for the data-source dependent properties."""
    if source == "mendeleev":
        return {
            "electronegativity": lambda z: _mendeleev_value("en_pauling", z),
            "covalent_radius": lambda z: _mendeleev_value("covalent_radius_pyykko", z),
            "electron_affinity": lambda z: _mendeleev_value("electron_affinity", z),
        }
    if source == "pymatgen":
        radii = _pymatgen_covalent_radii()

        def electronegativity(z: int) -> float | None:
            x = _pymatgen_element(z).X
            return None if _is_missing(x) else float(x)

        def electron_affinity(z: int) -> float | None:
            try:
                ea = _pymatgen_element(z).electron_affinity
            except (ValueError, KeyError, AttributeError):
                return None
            return None if _is_missing(ea) else float(ea)

        return {
            "electronegativity": electronegativity,
            "covalent_radius": lambda z: radii.get(_pymatgen_element(z).symbol),
            "electron_affinity": electron_affinity,
        }
    raise ValueError(f"unknown element-data source {source!r}; expected one of {_SOURCES}")


def _check_source(source: str) -> None:
    if source not in _SOURCES:
        raise ValueError(f"unknown element-data source {source!r}; expected one of {_SOURCES}")


def _check_max_z(max_z: int) -> None:
    if not isinstance(max_z, (int, np.integer)) or isinstance(max_z, bool):
        raise TypeError(f"max_z must be an int, got {type(max_z).__name__}")
    if not 1 <= max_z <= SUPPORTED_MAX_Z:
        raise ValueError(
            f"max_z={max_z} is outside 1..{SUPPORTED_MAX_Z}: the CGCNN table is defined for "
            f"H..Fm only (use atom_features='embedding' for heavier elements)"
        )


@functools.cache
def _raw_values(source: str) -> dict[str, tuple[Any, ...]]:
    """Raw (unbinned) property values for Z = 1..SUPPORTED_MAX_Z; ``None`` where data are missing."""
    getters = _source_getters(source)
    columns: dict[str, list[Any]] = {name: [] for name, _ in CGCNN_CATEGORIES}
    with warnings.catch_warnings():
        # pymatgen warns for every property it has no data for; missing data is expected here.
        warnings.simplefilter("ignore")
        for z in range(1, SUPPORTED_MAX_Z + 1):
            el = _pymatgen_element(z)
            columns["group"].append(_group_category(z))
            columns["period"].append(int(el.row))
            columns["electronegativity"].append(getters["electronegativity"](z))
            columns["covalent_radius"].append(getters["covalent_radius"](z))
            columns["valence_electrons"].append(_valence_electrons(z))
            columns["first_ionization_energy"].append(_first_ionization_energy(z))
            columns["electron_affinity"].append(getters["electron_affinity"](z))
            columns["block"].append(_element_block(z))
            columns["atomic_volume"].append(_atomic_volume(z))
    return {name: tuple(values) for name, values in columns.items()}


def cgcnn_property_values(max_z: int = SUPPORTED_MAX_Z, *, source: str = "mendeleev") -> dict[str, list[Any]]:
    """The raw property values behind the CGCNN vector, before binning.

    Returns ``{property name: [value for Z = 1..max_z]}`` (index 0 is Z = 1) with ``None`` where
    the data source has no value. Units: covalent radius pm, ionization energy and electron
    affinity eV, atomic volume cm^3/mol (not log-transformed); group is the category (0 for the
    f block), block a letter.
    """
    _check_max_z(max_z)
    _check_source(source)
    return {name: list(values[:max_z]) for name, values in _raw_values(source).items()}


def _category_index(name: str, value: Any) -> int | None:
    """Position of ``value`` inside the block ``name``; ``None`` when it has no category."""
    if value is None:
        return None
    size = _OFFSETS[name][1]
    if name in CGCNN_CONTINUOUS_RANGES:
        lo, hi, log_scale = CGCNN_CONTINUOUS_RANGES[name]
        x = float(value)
        if log_scale:
            if x <= 0:
                return None
            x = math.log(x)
        return _continuous_bin(x, lo, hi, size)
    if name == "group":
        index = int(value)
    elif name in ("period", "valence_electrons"):
        index = int(value) - 1
    elif name == "block":
        index = _BLOCKS.index(str(value))
    else:  # pragma: no cover - every name is handled above
        raise KeyError(name)
    return index if 0 <= index < size else None


@functools.cache
def _features(source: str) -> np.ndarray:
    raw = _raw_values(source)
    table = np.zeros((SUPPORTED_MAX_Z + 1, CGCNN_FEATURE_LENGTH), dtype=np.float32)
    for name, _size in CGCNN_CATEGORIES:
        start = _OFFSETS[name][0]
        for z, value in enumerate(raw[name], start=1):
            index = _category_index(name, value)
            if index is not None:
                table[z, start + index] = 1.0
    table.setflags(write=False)
    return table


def cgcnn_atom_features(max_z: int = SUPPORTED_MAX_Z, *, source: str = "mendeleev") -> np.ndarray:
    """CGCNN's one-hot atom features for Z = 1..max_z, computed from element data.

    Returns a read-only float32 array of shape ``(max_z + 1, 92)``: row 0 is all zeros (padding),
    row Z the features of element Z, laid out as :data:`CGCNN_CATEGORIES` (see the module
    docstring for the binning conventions). A block is all zero where the element has no data
    for that property (e.g. electronegativity of noble gases). The full table is computed once
    per ``source`` and cached (about a second, mostly imports); the result is a read-only view of
    it, so copy it (``np.array(t)``, ``torch.tensor(t)``) before modifying it.

    ``source="mendeleev"`` (default) takes electronegativity, electron affinity and covalent radius
    from the ``mendeleev`` package, which reproduces the reference CGCNN table best;
    ``source="pymatgen"`` uses pymatgen's values only.
    """
    _check_max_z(max_z)
    _check_source(source)
    return _features(source)[: int(max_z) + 1]


def load_atom_init_json(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a CGCNN-style ``atom_init.json`` (``{"Z": [floats]}``) into a (max Z + 1, F) table.

    Row 0 and the rows of atomic numbers absent from the file are zero; the result is float32.
    Only JSON is read (no pickle). Raises ``ValueError`` for non-integer keys, keys below 1,
    vectors of unequal length, or an empty file.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object mapping atomic number to a vector")
    rows: dict[int, list[float]] = {}
    width: int | None = None
    for key, vector in data.items():
        try:
            z = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: key {key!r} is not an atomic number") from None
        if z < 1:
            raise ValueError(f"{path}: key {key!r} is not an atomic number >= 1")
        if not isinstance(vector, list):
            raise ValueError(f"{path}: value of key {key!r} is not a list")
        if width is None:
            width = len(vector)
        elif len(vector) != width:
            raise ValueError(
                f"{path}: vector of key {key!r} has length {len(vector)}, others have {width}"
            )
        rows[z] = vector
    assert width is not None
    table = np.zeros((max(rows) + 1, width), dtype=np.float32)
    for z, vector in rows.items():
        table[z] = np.asarray(vector, dtype=np.float32)
    return table


def compare_with_reference(
    reference_path: str | os.PathLike[str], *, source: str = "mendeleev"
) -> dict[str, Any]:
    """Compare the computed CGCNN table with a reference ``atom_init.json``.

    Every element present in the reference (nonzero row) and at most :data:`SUPPORTED_MAX_Z` is
    compared block by block. Returns::

        {"n_elements": number of elements compared,
         "n_exact": number whose whole 92-vector matches,
         "mismatched": {Z: [names of the blocks that differ]},
         "property_matches": {block name: number of elements on which that block matches}}
    """
    reference = load_atom_init_json(reference_path)
    if reference.shape[1] != CGCNN_FEATURE_LENGTH:
        raise ValueError(
            f"{reference_path}: vectors have length {reference.shape[1]}, "
            f"expected {CGCNN_FEATURE_LENGTH} for the CGCNN layout"
        )
    zs = [z for z in range(1, min(reference.shape[0] - 1, SUPPORTED_MAX_Z) + 1) if reference[z].any()]
    if not zs:
        raise ValueError(f"{reference_path}: no elements to compare")
    computed = cgcnn_atom_features(max(zs), source=source)
    mismatched: dict[int, list[str]] = {}
    property_matches = {name: 0 for name, _ in CGCNN_CATEGORIES}
    for z in zs:
        differing = []
        for name, (start, size) in _OFFSETS.items():
            if np.array_equal(computed[z, start : start + size], reference[z, start : start + size]):
                property_matches[name] += 1
            else:
                differing.append(name)
        if differing:
            mismatched[z] = differing
    return {
        "n_elements": len(zs),
        "n_exact": len(zs) - len(mismatched),
        "mismatched": mismatched,
        "property_matches": property_matches,
    }


def atom_feature_table(kind: str | os.PathLike[str], max_z: int = SUPPORTED_MAX_Z) -> np.ndarray:
    """Atom feature table of shape ``(max_z + 1, F)`` by name.

    ``"cgcnn"``: :func:`cgcnn_atom_features` (computed, read-only). A path ending in ``.json``: that
    ``atom_init.json`` via :func:`load_atom_init_json`, cut or zero-padded to ``max_z + 1`` rows.
    """
    if isinstance(kind, str) and kind == "cgcnn":
        return cgcnn_atom_features(max_z)
    if str(kind).lower().endswith(".json"):
        if max_z < 1:
            raise ValueError(f"max_z must be >= 1, got {max_z}")
        table = load_atom_init_json(kind)
        out = np.zeros((max_z + 1, table.shape[1]), dtype=np.float32)
        rows = min(table.shape[0], max_z + 1)
        out[:rows] = table[:rows]
        return out
    raise ValueError(f"unknown atom feature table {str(kind)!r}: use 'cgcnn' or a path to a .json file")
