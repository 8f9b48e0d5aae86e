"""Orbital field matrix (OFM) of Pham et al. (2017), as OCrystalNet's atom input, equal to matminer 0.10.1.

Valence one-hot vectors
-----------------------
Each element is a 32-dim 0/1 vector o over the valence subshells, blocks s1 s2 | p1 … p6 |
d1 … d10 | f1 … f14: within each block at most one entry is 1, the one of the number of electrons
that subshell holds (matminer ``OrbitalFieldMatrix.get_ohv``). The subshells counted are those of
pymatgen's ``Element.full_electronic_structure`` whose principal number n satisfies, with N the n
of the *last* subshell listed: n ≥ N (any l), n = N − 1 (d and f only), n = N − 2 (f only).
With the period tag 7 more entries follow (39-dim): entry 31 + period is 1, lanthanides counted as
period 6 and actinides as period 7 (pymatgen rows 8 and 9 minus 2). The vectors exist for
Z 1–94 (:data:`OFM_MAX_Z`), as matminer defines them.

Per-site matrix
---------------
matminer's ``get_single_ofm`` for centre site c with Voronoi neighbours k
(``VoronoiNN(allow_pathological=True)``: weight = solid angle θ, tol 0)::

    X^c = Σ_k w_k · o(k)ᵀ o(c) / (r_k · B),   w_k = θ_k / θ_max,   B = 1.8897543773 (:data:`ANG_TO_BOHR`)

(r_k the centre–neighbour distance in Å, so r_k · B is in Bohr; θ_max the
largest solid angle of site c). Rows index the *neighbour* orbital and columns the *centre*
orbital; the paper's Eq. 1 writes the transpose (rows centre). The sum is a rank-one matrix:

    X^c = s(c) o(c)ᵀ,   s(c) = Σ_k w_k o(k) / (r_k · B)

so a graph stores only s(c) (39 floats per atom, :mod:`crystalgnn.descriptors.ofm` and the graph
add-on ``ofm``) instead of the 1056–1560 floats of the flattened matrix, and a model expands it
per batch (:func:`expand_ofm`, or its torch equivalent). OCrystalNet's 1056-dim atom input is X^c
flattened row-major (1024) followed by o(c) (32), period tag off.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Largest atomic number with an orbital one-hot vector (matminer builds them for Z 1–94).
OFM_MAX_Z = 94
#: Width of the untagged one-hot vector (s 2 + p 6 + d 10 + f 14).
OFM_SIZE = 32
#: Width with the 7 period entries.
OFM_TAGGED_SIZE = 39
#: Ångström to Bohr, the factor matminer divides the distance by: scipy's CODATA 2022
#: ``value("Angstrom star") / value("Bohr radius")`` = 1.00001495e-10 / 5.29177210544e-11 (note the
#: Ångström *star*, 1.00001495 Å, not the Ångström: 1.8897261… would be 1.5e-5 relatively smaller).
ANG_TO_BOHR = 1.00001495e-10 / 5.29177210544e-11

#: Offset of each subshell block (l = 0 … 3) in the one-hot vector.
_BLOCK_START = {"s": 0, "p": 2, "d": 8, "f": 18}


def _one_hot(z: int) -> np.ndarray:
    """The 39-dim vector of element ``z`` (first 32 entries: the untagged vector)."""
    from pymatgen.core.periodic_table import Element

    element = Element.from_Z(z)
    shells = element.full_electronic_structure  # [(n, "s"|"p"|"d"|"f", electrons), ...]
    top = shells[-1][0]
    vec = np.zeros(OFM_TAGGED_SIZE)
    for n, letter, electrons in shells:
        counted = n >= top or (n == top - 1 and letter in "df") or (n == top - 2 and letter == "f")
        if counted and electrons > 0:
            vec[_BLOCK_START[letter] + electrons - 1] = 1.0
    period = element.row if element.row <= 7 else element.row - 2
    vec[OFM_SIZE - 1 + period] = 1.0
    return vec


@lru_cache(maxsize=1)
def orbital_one_hot_table() -> np.ndarray:
    """(95, 39) float64: row z is element z's one-hot vector with period tag (row 0 zero);
    ``[:, :32]`` are the untagged vectors. Read-only."""
    table = np.zeros((OFM_MAX_Z + 1, OFM_TAGGED_SIZE))
    for z in range(1, OFM_MAX_Z + 1):
        table[z] = _one_hot(z)
    table.setflags(write=False)
    return table


def ofm_width(period_tag: bool = False) -> int:
    """Length of one flattened per-site OFM with o(c) appended: 1056, or 1560 with the period tag."""
    size = OFM_TAGGED_SIZE if period_tag else OFM_SIZE
    return size * size + size


def expand_ofm(sums: np.ndarray, z: np.ndarray, period_tag: bool = False) -> np.ndarray:
    """Per-site flattened OFMs from the neighbour sums.

    ``sums`` (N, 39) are s(c) (:func:`crystalgnn.descriptors.ofm.orbital_field_sums`), ``z`` (N,)
    the atomic numbers. Returns (N, size² + size), size 32 (39 with ``period_tag``): row c is
    X^c = s(c) ⊗ o(c) flattened row-major (entry a·size + b = s(c)_a · o(c)_b, a the neighbour
    orbital, b the centre orbital: matminer's ``get_atom_ofms(s)[c]`` flattened), then o(c).
    """
    size = OFM_TAGGED_SIZE if period_tag else OFM_SIZE
    sums = np.asarray(sums, dtype=np.float64)
    z = np.asarray(z, dtype=np.int64).reshape(-1)
    if sums.ndim != 2 or sums.shape[0] != len(z) or sums.shape[1] < size:
        raise ValueError(f"sums must be (N, >= {size}) with N = len(z); got {sums.shape} for {len(z)} atoms")
    if len(z) and (z.min() < 1 or z.max() > OFM_MAX_Z):
        raise ValueError(f"atomic numbers must be 1–{OFM_MAX_Z} (the OFM's one-hot vectors); got {int(z.min())}–{int(z.max())}")
    centre = orbital_one_hot_table()[z, :size]
    matrix = sums[:, :size, None] * centre[:, None, :]
    return np.concatenate([matrix.reshape(len(z), size * size), centre], axis=1)
