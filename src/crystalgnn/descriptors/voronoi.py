"""One periodic Voronoi tessellation per structure, with pymatgen ``VoronoiNN``'s facet statistics.

pymatgen's ``VoronoiNN.get_nn_info`` tessellates the 13 Å sphere around *one* site (a qhull run
on ~10³ points plus a Python loop over every ridge) for every site and every featurizer. Here the
Voronoi cells of *all* sites of the cell come from a single ``scipy.spatial.Voronoi`` run on the
sites plus the periodic images within a search radius ``R`` of any site, and every facet quantity
is computed with vectorised numpy.

Exactness: a point can cut the Voronoi cell of site i only if it lies within 2ρ_i of site i,
where ρ_i is the distance from site i to the farthest vertex of its cell. Every image within R of
any site is in the point set, so the cell of site i is exact when 2ρ_i < R (ρ_i measured on the
cell from the current point set, an upper bound of the true one). ``R`` starts from an estimate
(3.5 Wigner–Seitz radii) and grows until every cell is bounded and exact, or ``max_cutoff`` is hit
(:class:`VoronoiError`). pymatgen instead uses a fixed 13 Å sphere: its cells equal ours whenever
every cell lies within 6.5 Å of its site (true for ordinary dense crystals).

Per facet (site i, neighbour image p) the same formulas as ``VoronoiNN._extract_cell_info``:

* ``vector`` = r_p − r_i, ``distance`` = |r_p − r_i|, ``face_dist`` = distance / 2;
* the facet polygon (qhull's vertex order v₀ … v_{k−1}) is fanned into triangles (v₀, v_t, v_{t+1});
* ``volume`` (pyramid from site i over the facet) = Σ_t |(r_i − v_{t+1})·((v₀ − v_{t+1}) × (v_t − v_{t+1}))| / 6;
* ``area`` = 3·volume / face_dist;
* ``solid_angle`` = Σ_t 2·θ_t with tan θ_t = |d₀·(d_t × d_{t+1})| / (|d₀||d_t||d_{t+1}| + |d_{t+1}| d₀·d_t
  + |d_t| d₀·d_{t+1} + |d₀| d_t·d_{t+1}), d = v − r_i (Van Oosterom–Strackee), θ_t taken in (0, π]
  exactly as pymatgen does (a non-positive arctan gets + π).

``VoronoiNN._extract_nn_info`` then keeps, per site, the facets whose weight (``solid_angle`` or
``area``) exceeds ``tol`` × the largest weight of that site, with weight / max-weight as the
normalised weight: :meth:`VoronoiFacets.neighbors`.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain

import numpy as np
from scipy.spatial import Voronoi, cKDTree

#: Sites (or a site and an image of a site) closer than this (Å) make the tessellation fail.
OVERLAP_TOL = 1e-3


class VoronoiError(ValueError):
    """The periodic Voronoi tessellation could not be computed (reason in the message)."""


@dataclass(frozen=True)
class VoronoiFacets:
    """Facets of the Voronoi cells of every site of one cell, grouped by site (CSR by ``ptr``).

    Facet f belongs to site ``center[f]`` (rows of site i are ``ptr[i]:ptr[i+1]``) and is shared
    with the periodic image ``image[f]`` of site ``neighbor[f]``.
    """

    n_sites: int
    ptr: np.ndarray  # (n+1,) int64
    center: np.ndarray  # (F,) int64
    neighbor: np.ndarray  # (F,) int64
    image: np.ndarray  # (F, 3) int64
    vector: np.ndarray  # (F, 3) float64, r_neighbor_image - r_center (Å)
    distance: np.ndarray  # (F,) float64
    face_dist: np.ndarray  # (F,) float64
    area: np.ndarray  # (F,) float64
    volume: np.ndarray  # (F,) float64
    solid_angle: np.ndarray  # (F,) float64
    n_verts: np.ndarray  # (F,) int64
    cutoff: float  # search radius that made every cell exact (Å)
    max_vertex_dist: np.ndarray  # (n,) ρ_i (Å)

    def __len__(self) -> int:
        return int(self.center.shape[0])

    def neighbors(self, weight: str = "solid_angle", tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``VoronoiNN(weight=weight, tol=tol).get_nn_info`` for every site at once.

        Returns ``(keep, w)``: a facet mask (weight > tol × max weight of its site) and the
        normalised weights (weight / max weight of its site) of all facets.
        """
        values = getattr(self, weight)
        site_max = np.full(self.n_sites, -np.inf)
        np.maximum.at(site_max, self.center, values)
        max_of_facet = site_max[self.center]
        keep = values > tol * max_of_facet
        with np.errstate(divide="ignore", invalid="ignore"):
            w = values / max_of_facet
        return keep, w


def _wigner_seitz_radius(volume: float, n: int) -> float:
    return (3.0 * volume / (4.0 * math.pi * n)) ** (1.0 / 3.0)


def _points(cart: np.ndarray, frac: np.ndarray, matrix: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sites (first, unshifted) and every periodic image within ``cutoff`` of any site.

    Returns ``(coords (P,3), site (P,), image (P,3))``.
    """
    n = len(cart)
    # Fractional extent of a ball of radius `cutoff`: along axis a it is cutoff * |row a of inv(M)^T|.
    inv = np.linalg.inv(matrix)
    reach = cutoff * np.linalg.norm(inv, axis=0)  # |column a of M^-1| = 1 / interplanar spacing
    lo = np.floor(frac.min(axis=0) - frac.max(axis=0) - reach).astype(np.int64)
    hi = np.ceil(frac.max(axis=0) - frac.min(axis=0) + reach).astype(np.int64)
    grids = np.meshgrid(*(np.arange(lo[a], hi[a] + 1) for a in range(3)), indexing="ij")
    images = np.stack([g.ravel() for g in grids], axis=1)
    images = images[np.any(images != 0, axis=1)]
    shifts = images @ matrix  # (I, 3)
    cand = (cart[None, :, :] + shifts[:, None, :]).reshape(-1, 3)  # image-major
    cand_site = np.tile(np.arange(n), len(images))
    cand_image = np.repeat(images, n, axis=0)
    if len(cand):
        dist, nearest = cKDTree(cart).query(cand, k=1, distance_upper_bound=cutoff)
        if (dist < OVERLAP_TOL).any():
            k = int(np.argmin(dist))
            raise VoronoiError(f"a periodic image of site {int(cand_site[k])} overlaps site {int(nearest[k])} "
                               f"(closer than {OVERLAP_TOL:g} Å)")
        inside = np.isfinite(dist)
        cand, cand_site, cand_image = cand[inside], cand_site[inside], cand_image[inside]
    coords = np.concatenate([cart, cand])
    site = np.concatenate([np.arange(n), cand_site])
    image = np.concatenate([np.zeros((n, 3), dtype=np.int64), cand_image])
    return coords, site, image


def _facets_from_voronoi(vor: Voronoi, n: int, coords: np.ndarray, site: np.ndarray, image: np.ndarray):
    """Facet arrays of the cells of points 0..n-1; ``None`` if a cell is unbounded."""
    rp = vor.ridge_points  # (P, 2)
    first_c = rp[:, 0] < n
    second_c = rp[:, 1] < n
    # One facet per (central point, ridge): a ridge between two central points gives two facets.
    r_idx = np.concatenate([np.flatnonzero(first_c), np.flatnonzero(second_c)])
    center = np.concatenate([rp[first_c, 0], rp[second_c, 1]]).astype(np.int64)
    other = np.concatenate([rp[first_c, 1], rp[second_c, 0]]).astype(np.int64)
    order = np.lexsort((other, center))
    r_idx, center, other = r_idx[order], center[order], other[order]

    rv = vor.ridge_vertices
    verts_lists = [rv[r] for r in r_idx.tolist()]
    n_verts = np.fromiter(map(len, verts_lists), dtype=np.int64, count=len(verts_lists))
    flat = np.fromiter(chain.from_iterable(verts_lists), dtype=np.int64, count=int(n_verts.sum()))
    if (flat < 0).any():
        return None
    starts = np.concatenate([[0], np.cumsum(n_verts)[:-1]]).astype(np.int64)
    vertices = vor.vertices

    c = coords[center]  # (F, 3)
    vector = coords[other] - c
    distance = np.linalg.norm(vector, axis=1)
    face_dist = distance / 2

    # Fan triangles (v0, v_t, v_{t+1}), t = 1 .. k-2, as pymatgen's solid_angle and volume loops.
    n_tri = np.maximum(n_verts - 2, 0)
    tri_facet = np.repeat(np.arange(len(center)), n_tri)
    tri_first = np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    t = np.arange(len(tri_facet)) - tri_first + 1
    s = starts[tri_facet]
    v0 = vertices[flat[s]]
    v1 = vertices[flat[s + t]]
    v2 = vertices[flat[s + t + 1]]
    ctr = c[tri_facet]

    # solid angle of each triangle (pymatgen.core.local_env.solid_angle, term by term)
    d0, d1, d2 = v0 - ctr, v1 - ctr, v2 - ctr
    r0 = np.linalg.norm(d0, axis=1)
    r1 = np.linalg.norm(d1, axis=1)
    r2 = np.linalg.norm(d2, axis=1)
    tp = np.abs(np.einsum("ij,ij->i", d0, np.cross(d1, d2)))
    de = r0 * r1 * r2 + r2 * np.einsum("ij,ij->i", d0, d1) + r1 * np.einsum("ij,ij->i", d0, d2) + r0 * np.einsum("ij,ij->i", d1, d2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.where(de == 0, np.where(tp > 0, 0.5 * math.pi, -0.5 * math.pi), np.arctan(tp / de))
    ang = np.where(ang > 0, ang, ang + math.pi) * 2
    solid_angle = np.bincount(tri_facet, weights=ang, minlength=len(center))

    # pyramid volume: pymatgen's vol_tetra(centre, v0, v_t, v_{t+1})
    vol = np.abs(np.einsum("ij,ij->i", ctr - v2, np.cross(v0 - v2, v1 - v2))) / 6
    volume = np.bincount(tri_facet, weights=vol, minlength=len(center))
    with np.errstate(divide="ignore", invalid="ignore"):
        area = 3 * volume / face_dist

    # farthest vertex of each cell
    vert_dist = np.linalg.norm(vertices[flat] - coords[np.repeat(center, n_verts)], axis=1)
    rho = np.zeros(n)
    np.maximum.at(rho, np.repeat(center, n_verts), vert_dist)
    facets = {
        "center": center, "neighbor": site[other].astype(np.int64), "image": image[other].astype(np.int64),
        "vector": vector, "distance": distance, "face_dist": face_dist, "area": area, "volume": volume,
        "solid_angle": solid_angle, "n_verts": n_verts,
    }
    return facets, rho


def periodic_voronoi(
    lattice_matrix: np.ndarray,
    cart_coords: np.ndarray,
    frac_coords: np.ndarray,
    initial_cutoff: float | None = None,
    max_cutoff: float = 60.0,
) -> VoronoiFacets:
    """Exact Voronoi cells of every site of a periodic cell (see the module docstring).

    ``cart_coords``/``frac_coords`` are the sites as given (not wrapped into the cell); the cells
    are centred on exactly these coordinates. Raises :class:`VoronoiError` for overlapping sites,
    a qhull failure, or cells that are still not exact at ``max_cutoff`` Å.
    """
    matrix = np.asarray(lattice_matrix, dtype=np.float64)
    cart = np.asarray(cart_coords, dtype=np.float64)
    frac = np.asarray(frac_coords, dtype=np.float64)
    n = len(cart)
    if n == 0:
        raise VoronoiError("no sites")
    volume = abs(float(np.linalg.det(matrix)))
    if not np.isfinite(volume) or volume < 1e-8:
        raise VoronoiError("degenerate cell")
    tree = cKDTree(cart)
    close = tree.query_pairs(OVERLAP_TOL)
    if close:
        i, j = min(close)
        raise VoronoiError(f"sites {i} and {j} overlap (closer than {OVERLAP_TOL:g} Å)")
    cutoff = float(initial_cutoff) if initial_cutoff else 3.5 * _wigner_seitz_radius(volume, n)
    cutoff = min(cutoff, max_cutoff)
    while True:
        coords, site, image = _points(cart, frac, matrix, cutoff)
        try:
            vor = Voronoi(coords)
        except Exception as err:  # scipy.spatial.QhullError (e.g. too few points) and friends
            if cutoff < max_cutoff:
                cutoff = min(2.0 * cutoff, max_cutoff)
                continue
            if len(coords) < 8:
                raise VoronoiError(f"isolated atom(s): only {len(coords) - n} periodic image(s) within {cutoff:g} Å") from err
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise VoronoiError(f"qhull failed at search radius {cutoff:g} Å: {first}") from err
        out = _facets_from_voronoi(vor, n, coords, site, image)
        if out is not None:
            facets, rho = out
            counts = np.bincount(facets["center"], minlength=n)
            if (counts > 0).all() and 2.0 * rho.max() < cutoff:
                break
            needed = 2.0 * rho.max() * (1.0 + 1e-9) + 1e-9 if (counts > 0).all() else 2.0 * cutoff
        else:
            needed = 2.0 * cutoff
        if cutoff >= max_cutoff:
            raise VoronoiError(
                f"Voronoi cells reach beyond {max_cutoff / 2:g} Å from their site (search radius {max_cutoff:g} Å): "
                "isolated atom or very large void"
            )
        cutoff = min(max(needed, 1.25 * cutoff), max_cutoff)
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return VoronoiFacets(n_sites=n, ptr=ptr, cutoff=cutoff, max_vertex_dist=rho, **facets)


#: How many tessellations the in-process memo of :func:`structure_voronoi` keeps (the most recent).
MEMO_SIZE = 4
_memo: OrderedDict[bytes, VoronoiFacets] = OrderedDict()
_memo_lock = threading.Lock()


def _memo_key(matrix: np.ndarray, cart: np.ndarray, initial_cutoff: float | None, max_cutoff: float) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(cart, dtype=np.float64).tobytes())
    h.update(repr((None if initial_cutoff is None else float(initial_cutoff), float(max_cutoff))).encode())
    return h.digest()


def clear_voronoi_memo() -> None:
    """Forget the memoised tessellations of :func:`structure_voronoi`."""
    with _memo_lock:
        _memo.clear()


def structure_voronoi(structure, initial_cutoff: float | None = None, max_cutoff: float = 60.0) -> VoronoiFacets:
    """:func:`periodic_voronoi` of a pymatgen ``Structure``, memoised in-process.

    The last :data:`MEMO_SIZE` results are kept, keyed by a hash of the lattice matrix, the
    Cartesian coordinates and the cutoffs, so the descriptor bank and the OFM sums
    (:mod:`crystalgnn.descriptors.ofm`) of one structure, computed one after the other (graph
    building with descriptors), share one tessellation. The arrays of a memoised result are
    read-only. Failures are not memoised.
    """
    matrix = structure.lattice.matrix
    cart = structure.cart_coords
    key = _memo_key(matrix, cart, initial_cutoff, max_cutoff)
    with _memo_lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
            return found
    facets = periodic_voronoi(matrix, cart, structure.frac_coords, initial_cutoff=initial_cutoff, max_cutoff=max_cutoff)
    for value in vars(facets).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    with _memo_lock:
        _memo[key] = facets
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return facets
