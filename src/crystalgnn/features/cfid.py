"""JARVIS CFID element features (438 per element), with the imputation and standardisation rule.

CFID, the *classical force-field inspired descriptors* of JARVIS-ML (Choudhary, DeCost & Tavazza,
Phys. Rev. Materials 2, 083801, 2018), describe every element by 438 numbers: 84 elemental
properties (atomic number and mass, electronegativity, radii, valence-shell fillings, melting and
boiling points, elastic moduli of the element's solid, 36 ``C-k`` charge-related entries, ...)
and 354 pairwise combinations of them (names such as ``bp_mult_atom_rad`` or
``voro_coord_divi_therm_cond``: sums, differences, products and ratios). OCrystalNet appends them
to each site's orbital field matrix. The values come from jarvis-tools' ``jarvis/core/Elements.json``
(the file behind ``jarvis.core.specie.Specie(symbol).get_descrp_arr``), which covers Z 1-103;
they are raw, spanning about -5900 to 2.15e7.

Placeholders. The value ``-9999`` (:data:`CFID_PLACEHOLDER`) marks a missing entry. Only 21
elements have any, and those miss almost everything: Xe, Pm, Eu, Po and Rn keep 4 of 438 values
(Z, atomic mass, atomic radius, electronegativity), At, Fr, Ra, Ac, Pa, Np, Pu, Am, Cm, Bk, Cf,
Es, Fm, Md, No and Lr keep 3. Eighteen of them have Z <= 100.

Column order. For those 21 elements ``Elements.json`` lists the 438 keys in another order than
for the other 82, and ``get_descrp_arr`` returns values in each element's own key order, so its
arrays are not column-aligned across elements (Xe's atomic number lands in the position that is
``hfus_add_bp`` for every other element). :func:`cfid_table` aligns every element by key name,
in the order of hydrogen's keys (:func:`cfid_column_names`); for the 82 complete elements this
is exactly ``get_descrp_arr``.

Imputation and standardisation (:func:`fit_cfid_standardizer`). Per column, the mean and standard
deviation are taken over the atoms of the *training* crystals (atom-weighted: an element counts
once per atom), using only the entries that are not placeholders; a column with no such entry
gets mean 0 and std 1, a column constant over the training atoms gets std 1 (no division by
zero). Standardising maps ``x -> (x - mean) / std``, and every placeholder is imputed with the
training mean, i.e. becomes exactly 0. Mean imputation rather than anything cleverer: the
placeholder elements miss 434 or more of the 438 values, so there is nothing element-specific to
impute from; 0 then reads "an average training atom" in every column they miss, while the 3-4
values they do have still tell them apart. The statistics are fit on the training split only
(nothing of the validation or test crystals leaks in) and are saved with the weights (the model
holds them as buffers), so prediction standardises exactly as training did.
:func:`imputed_elements` lists the placeholder elements a training set contains, for the run's
report.

This module needs numpy and the jarvis-tools package data only; it reads ``Elements.json``
directly (about 0.05 s, against 0.4 s for importing ``jarvis.core.specie``) and gives the same
numbers as ``get_descrp_arr`` (checked in the tests).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CFID_MAX_Z",
    "CFID_PLACEHOLDER",
    "CFID_WIDTH",
    "CFIDStandardizer",
    "cfid_column_names",
    "cfid_missing",
    "cfid_symbols",
    "cfid_table",
    "fit_cfid_standardizer",
    "imputed_elements",
]

#: Number of CFID features per element.
CFID_WIDTH = 438
#: The value ``Elements.json`` stores for a missing entry.
CFID_PLACEHOLDER = -9999.0
#: Highest atomic number ``Elements.json`` covers (Lr).
CFID_MAX_Z = 103


def _elements_json() -> Path:
    """Path of jarvis-tools' ``core/Elements.json``, found without importing jarvis."""
    spec = importlib.util.find_spec("jarvis")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("CFID atom features need the jarvis-tools package (pip install jarvis-tools)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "core" / "Elements.json"
        if path.is_file():
            return path
    raise FileNotFoundError("jarvis-tools is installed but its core/Elements.json was not found")


@functools.cache
def _load() -> tuple[tuple[str, ...], tuple[str, ...], np.ndarray]:
    """(column names, symbols by Z with "" at 0, raw table (CFID_MAX_Z + 1, 438)), read once."""
    with open(_elements_json(), encoding="utf-8") as handle:
        data = json.load(handle)
    by_z = {int(entry["Z"]): symbol for symbol, entry in data.items()}
    if sorted(by_z) != list(range(1, CFID_MAX_Z + 1)):
        raise ValueError(f"Elements.json: expected the elements Z 1..{CFID_MAX_Z}, found {len(by_z)}")
    names = tuple(data[by_z[1]].keys())
    if len(names) != CFID_WIDTH:
        raise ValueError(f"Elements.json: expected {CFID_WIDTH} values per element, found {len(names)}")
    table = np.zeros((CFID_MAX_Z + 1, CFID_WIDTH), dtype=np.float64)
    for z, symbol in by_z.items():
        entry = data[symbol]
        if set(entry) != set(names):
            raise ValueError(f"Elements.json: {symbol} has other keys than {by_z[1]}")
        # Some values are stored as strings ("17.733"); float() reads both.
        table[z] = [float(entry[name]) for name in names]
    table.setflags(write=False)
    symbols = ("", *(by_z[z] for z in range(1, CFID_MAX_Z + 1)))
    return names, symbols, table


def _check_max_z(max_z: int) -> None:
    if not 1 <= int(max_z) <= CFID_MAX_Z:
        raise ValueError(f"max_z must be between 1 and {CFID_MAX_Z} (the elements jarvis-tools covers), got {max_z}")


def cfid_column_names() -> tuple[str, ...]:
    """The 438 feature names, in the column order of :func:`cfid_table`."""
    return _load()[0]


def cfid_symbols(max_z: int = 100) -> tuple[str, ...]:
    """Element symbols indexed by Z (``""`` at 0), as ``Elements.json`` spells them."""
    _check_max_z(max_z)
    return _load()[1][: max_z + 1]


def cfid_table(max_z: int = 100) -> np.ndarray:
    """Raw CFID features, shape ``(max_z + 1, 438)`` float64, row ``Z`` for element ``Z``.

    Row 0 is unused and zero. Placeholders stay ``-9999`` (see :func:`cfid_missing`); use
    :meth:`CFIDStandardizer.apply` before feeding a model. Cached: a read-only view.
    """
    _check_max_z(max_z)
    return _load()[2][: max_z + 1]


def cfid_missing(max_z: int = 100) -> np.ndarray:
    """Boolean mask of :func:`cfid_table`'s placeholder entries, shape ``(max_z + 1, 438)``."""
    return cfid_table(max_z) == CFID_PLACEHOLDER


def _counts(atom_counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(atom_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.shape[0] < 2:
        raise ValueError(f"atom_counts must be a vector indexed by Z (length max_z + 1), got shape {counts.shape}")
    _check_max_z(counts.shape[0] - 1)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("atom_counts must be finite and non-negative")
    return counts


@dataclass(frozen=True, eq=False)
class CFIDStandardizer:
    """Per-column training statistics of the CFID features: ``mean`` and ``std``, each (438,).

    ``eq=False``: compare the arrays yourself (``np.array_equal``); a dataclass ``==`` over
    arrays would be ambiguous.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != (CFID_WIDTH,):
                raise ValueError(f"CFIDStandardizer.{name} must have shape ({CFID_WIDTH},), got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"CFIDStandardizer.{name} must be finite")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        if np.any(self.std <= 0):
            raise ValueError("CFIDStandardizer.std must be positive")

    def apply(self, table: np.ndarray) -> np.ndarray:
        """Standardise a raw table indexed by Z (as :func:`cfid_table` gives): ``(x - mean) / std``,
        placeholders imputed with the mean (exactly 0), row 0 (no element) left at 0."""
        raw = np.asarray(table, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != CFID_WIDTH:
            raise ValueError(f"expected a table of shape (n, {CFID_WIDTH}), got {raw.shape}")
        out = (raw - self.mean) / self.std
        out[raw == CFID_PLACEHOLDER] = 0.0
        out[0] = 0.0
        return out


def fit_cfid_standardizer(atom_counts: np.ndarray) -> CFIDStandardizer:
    """Column statistics over the training atoms, ``atom_counts[Z]`` = atoms of element Z in the
    training crystals (length max_z + 1; index 0 ignored).

    Per column: the atom-weighted mean and (population) standard deviation of the non-placeholder
    entries. No such entry: mean 0, std 1. Constant over the training atoms: that value as the
    mean, std 1.
    """
    counts = _counts(atom_counts).copy()
    counts[0] = 0.0
    raw = cfid_table(counts.shape[0] - 1)
    present = ~(raw == CFID_PLACEHOLDER)
    weights = counts[:, None] * present  # (Z, column): atoms contributing to each column
    total = weights.sum(axis=0)
    has_data = total > 0
    values = np.where(present, raw, 0.0)
    mean = np.zeros(CFID_WIDTH)
    mean[has_data] = (weights * values).sum(axis=0)[has_data] / total[has_data]
    var = np.zeros(CFID_WIDTH)
    var[has_data] = (weights * (values - mean) ** 2).sum(axis=0)[has_data] / total[has_data]
    std = np.sqrt(var)
    # A column whose used entries are all equal is constant, whatever rounding leaves in var.
    used = weights > 0
    high = np.where(used, values, -np.inf).max(axis=0)
    low = np.where(used, values, np.inf).min(axis=0)
    constant = has_data & (high == low)
    mean[constant] = high[constant]
    std[constant | ~has_data | ~(std > 0)] = 1.0
    return CFIDStandardizer(mean=mean, std=std)


def imputed_elements(atom_counts: np.ndarray) -> list[tuple[str, int, int, int]]:
    """The elements present in ``atom_counts`` (count > 0) that have placeholders, by Z:
    ``(symbol, Z, number of missing columns, number of atoms)``."""
    counts = _counts(atom_counts)
    max_z = counts.shape[0] - 1
    missing = cfid_missing(max_z).sum(axis=1)
    symbols = cfid_symbols(max_z)
    return [(symbols[z], z, int(missing[z]), int(counts[z])) for z in range(1, max_z + 1)
            if counts[z] > 0 and missing[z] > 0]
