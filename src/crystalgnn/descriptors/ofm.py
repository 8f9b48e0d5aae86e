"""Per-site neighbour sums s(c) of the orbital field matrix, from one periodic Voronoi tessellation.

See :mod:`crystalgnn.features.ofm` for the definitions: the per-site OFM of matminer
(``OrbitalFieldMatrix.get_atom_ofms``) is X^c = s(c) o(c)ᵀ with

    s(c) = Σ_k w_k o(k) / (r_k · B),   w_k = θ_k / θ_max(c),

over the Voronoi neighbours k of site c (pymatgen ``VoronoiNN(allow_pathological=True)``
defaults: weight = solid angle θ, tol 0, so every facet of positive solid angle), r_k the
centre–neighbour-image distance (Å) and B = :data:`crystalgnn.features.ofm.ANG_TO_BOHR`.

matminer tessellates a 13 Å sphere once per site; here every site's cell comes from ONE
:func:`crystalgnn.descriptors.voronoi.structure_voronoi` call (memoised, shared with the
descriptor bank when both run on a structure) and the sums are one ``bincount`` over the facets:
the weight of each (site, neighbour element) pair, then a (sites × 95) @ (95 × 39) product with
the one-hot table.
"""

from __future__ import annotations

import numpy as np

from crystalgnn.descriptors.voronoi import VoronoiError, VoronoiFacets, structure_voronoi
from crystalgnn.errors import StructureError
from crystalgnn.features.ofm import ANG_TO_BOHR, OFM_MAX_Z, OFM_TAGGED_SIZE, orbital_one_hot_table

#: The largest search radius of the tessellation (Å): the descriptor bank's default, so both share it.
OFM_VORONOI_CUTOFF = 60.0


def _check_elements(z: np.ndarray) -> None:
    if len(z) and (z.max() > OFM_MAX_Z or z.min() < 1):
        from pymatgen.core.periodic_table import Element

        bad = int(z.max()) if z.max() > OFM_MAX_Z else int(z.min())
        name = Element.from_Z(bad).symbol if 1 <= bad <= 118 else "?"
        raise StructureError(
            f"element {name} (Z={bad}) has no orbital one-hot vector: the OFM covers Z 1–{OFM_MAX_Z}")


def orbital_field_sums(structure, facets: VoronoiFacets | None = None,
                       max_cutoff: float = OFM_VORONOI_CUTOFF, distance: str = "facet") -> np.ndarray:
    """s(c) of every site of ``structure``: (N, 39) float64 (the first 32 columns are the
    untagged sums; the last 7 the period-tag entries).

    ``facets``: a tessellation of exactly this structure (otherwise one is computed with
    :func:`structure_voronoi`, ``max_cutoff`` Å). Raises :class:`crystalgnn.errors.StructureError`
    for an element outside Z 1–94 or a failed tessellation.

    ``distance``: r_k of each neighbour. ``"facet"`` (default): the distance to the neighbour
    image that shares the facet (the physical centre–neighbour distance of OCrystalNet's w_k).
    ``"matminer"``: what matminer 0.10.1 computes, ``site.distance(neighbor_site)``, i.e. the
    *minimum-image* distance from site c to the neighbour's site (pymatgen
    ``Lattice.get_all_distances``); it is shorter than the facet's when another image of that
    site is nearer (small cells), and 0 when the neighbour is an image of site c itself (a short
    lattice vector), where matminer's matrix holds inf and NaN: here those entries of s(c) are inf.
    Both agree wherever every Voronoi neighbour image is the nearest image of its site.
    """
    if distance not in ("facet", "matminer"):
        raise ValueError(f"distance must be 'facet' or 'matminer', not {distance!r}")
    z = np.asarray(structure.atomic_numbers, dtype=np.int64)
    _check_elements(z)
    if facets is None:
        try:
            facets = structure_voronoi(structure, max_cutoff=max_cutoff)
        except VoronoiError as err:
            raise StructureError(f"Voronoi tessellation failed: {err}") from err
    n = len(z)
    if facets.n_sites != n:
        raise ValueError(f"the tessellation has {facets.n_sites} sites, the structure {n}")
    keep, w = facets.neighbors("solid_angle", 0.0)
    centre = facets.center[keep]
    neighbour = facets.neighbor[keep]
    if distance == "facet":
        r = facets.distance[keep]
    else:
        r = structure.lattice.get_all_distances(structure.frac_coords, structure.frac_coords)[centre, neighbour]
    with np.errstate(divide="ignore"):
        weight = w[keep] / (r * ANG_TO_BOHR)
    pair = centre * (OFM_MAX_Z + 1) + z[neighbour]
    infinite = np.isinf(weight)
    by_element = np.bincount(pair, weights=np.where(infinite, 0.0, weight), minlength=n * (OFM_MAX_Z + 1))
    table = orbital_one_hot_table()
    sums = by_element.reshape(n, OFM_MAX_Z + 1) @ table
    if infinite.any():  # matminer distances only: a neighbour that is an image of the centre itself
        hit = np.zeros(n * (OFM_MAX_Z + 1), dtype=bool)
        hit[pair[infinite]] = True
        sums[(hit.reshape(n, OFM_MAX_Z + 1).astype(np.float64) @ table) > 0] = np.inf
    assert sums.shape == (n, OFM_TAGGED_SIZE)
    return sums
