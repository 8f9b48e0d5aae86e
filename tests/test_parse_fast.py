"""The gemmi fast path for CIFs must give the structures pymatgen's CifParser gives."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_data
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser, CifWriter

from crystalgnn.graphs.neighbors import radius_neighbors
from crystalgnn.structures.parse import _parse_cif_fast, parse_structure, validate_structure


def _pymatgen(text: str) -> Structure:
    return CifParser.from_str(text).parse_structures(primitive=False)[0]


def test_fast_path_agrees_with_pymatgen_on_real_cifs():
    folder = require_data("mp_elasticity3k")
    for k in range(0, 3000, 20):  # 150 crystals across the set
        text = (folder / f"{k}.cif").read_text()
        fast, ref = _parse_cif_fast(text), _pymatgen(text)
        assert fast is not None, k
        assert sorted(fast.atomic_numbers) == sorted(ref.atomic_numbers), k
        assert fast.volume == pytest.approx(ref.volume, rel=1e-6)
        # Same bonds: pymatgen snaps near-rational coordinates, so allow 1e-3 Å.
        np.testing.assert_allclose(np.sort(radius_neighbors(fast).distances), np.sort(radius_neighbors(ref).distances), atol=1e-3)


def test_fast_path_applies_symmetry():
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    text = str(CifWriter(nacl, symprec=0.01))
    assert "Fm-3m" in text and text.count(" Na ") < 8  # only the asymmetric unit is written
    fast = _parse_cif_fast(text)
    assert fast is not None and len(fast) == 8 and fast.composition.reduced_formula == "NaCl"


def test_partial_occupancy_falls_back_to_pymatgen_and_is_reported():
    text = str(CifWriter(Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])))
    assert _parse_cif_fast(text) is None
    reason = validate_structure(parse_structure(text=text))
    assert reason and "partial occupancy" in reason
