"""The structural descriptor bank of Gong et al., computed fast and equal to matminer 0.10.1.

Every Voronoi-based descriptor comes from ONE periodic Voronoi tessellation per structure
(:mod:`crystalgnn.descriptors.voronoi`), reproducing pymatgen's ``VoronoiNN`` facet statistics,
instead of matminer's one tessellation per site and per featurizer; the symmetry descriptors use
pymatgen's ``SpacegroupAnalyzer`` (spglib) exactly as matminer does.

Notation: for site i, its Voronoi facets f with neighbour distance d_f (= 2 × face_dist), facet
area A_f, solid angle Ω_f, pyramid volume V_f (site i to facet f). ``VoronoiNN(weight=w, tol=t)``
keeps the facets with w_f > t · max_f w_f and gives them the normalised weight w_f / max_f w_f
(pymatgen's default t = 0: every facet of non-zero weight, however small, is a neighbour).
Statistics over sites are unweighted: mean, std = population standard deviation (numpy ``std``),
avg_dev(x) = mean |x − mean(x)|.

Local descriptors (``LOCAL_DESCRIPTORS``)
-----------------------------------------
matminer ``StructuralHeterogeneity()`` (``VoronoiNN(weight="area")``, neighbours with A_f > 0,
weights a_f = A_f / max A):

* per site: mean bond length l̄_i = Σ a_f d_f / Σ a_f and neighbour distance variation
  v_i = (Σ a_f |d_f − l̄_i| / Σ a_f) / l̄_i; relative bond length L_i = l̄_i / mean_j l̄_j.
* ``MAD_in_rela_bond_len`` = avg_dev(L); ``max_rela_bond_len`` = max L; ``min_rela_bond_len`` = min L.
* ``min_neighb_dist_var``, ``max_neighb_dist_var``, ``range_neighb_dist_var``,
  ``mean_neighb_dist_var``, ``dev_neighb_dist_var`` = min, max, max − min, mean, avg_dev of v.
* ``MAD_in_rela_atom_vol`` = avg_dev(U) / mean(U), U_i = Σ V_f (the Voronoi cell volume of site i).

matminer ``SiteStatsFingerprint(..., stats=("mean", "std_dev"))`` of site features computed with
``VoronoiNN()`` (weight = solid angle, tol 0: neighbours with Ω_f > 0, weights ω_f = Ω_f / max Ω):

* ``mean_avg_bond_len``, ``std_avg_bond_len``: mean/std over sites of ``AverageBondLength``
  b_i = Σ ω_f d_f / Σ ω_f (Å).
* ``mean_avg_bond_ang``, ``std_avg_bond_ang``: mean/std over sites of ``AverageBondAngle``:
  the mean over the neighbours of site i of the smallest angle (radians) that neighbour's bond
  makes with any other bond of site i (undefined, NaN, for a site with a single neighbour).
* ``mean_CN_Voronoi``, ``std_CN_Voronoi``: mean/std over sites of
  ``CoordinationNumber.from_preset("VoronoiNN")``: the number of facets with Ω_f > 0.

Global descriptors (``GLOBAL_DESCRIPTORS``)
-------------------------------------------
* matminer ``DensityFeatures()``: ``density`` (g/cm³, pymatgen ``Structure.density``), ``vpa``
  (volume per atom, Å³), ``packing_frac`` = 4π Σ_i r_i³ / (3 V) with r_i pymatgen's empirical
  ``atomic_radius`` of the element (ordered structures only).
* matminer ``StructuralComplexity(symprec=0.1)``: ``struct_comp_atom`` = −Σ_k p_k log₂ p_k
  (bits/atom) over the k classes of symmetry-equivalent sites (spglib ``equivalent_atoms`` at
  symprec 0.1), p_k = m_k / N; ``struct_comp_cell`` = N × struct_comp_atom (bits/cell).
* from the Niggli-reduced lattice (pymatgen ``get_niggli_reduced_lattice``, tol 1e-5, as
  ``get_reduced_structure("niggli")``): ``natoms`` (sites in the cell), the lattice lengths sorted
  descending ``a`` ≥ ``b`` ≥ ``c`` (Å) and the angles sorted descending ``alpha`` ≥ ``beta`` ≥
  ``gamma`` (degrees).
* matminer ``GlobalSymmetryFeatures(["spacegroup_num", "crystal_system"])``
  (``SpacegroupAnalyzer`` defaults, symprec 0.01, angle tolerance 5°): ``space_group_num``
  (1–230) and ``crys_sys`` coded 0–6 in the order of :data:`CRYSTAL_SYSTEMS` (triclinic,
  monoclinic, orthorhombic, tetragonal, trigonal, hexagonal, cubic).

Differences from matminer: none by definition, and none measured beyond round-off (≤ 1e-10
relative, or ≤ 1e-10 absolute for values that are zero by symmetry) on random mp37k samples; see
``benchmarks/descriptors.py``. Voronoi cells are computed exactly (the search radius grows until
every cell is exact), whereas pymatgen tessellates a fixed 13 Å neighbourhood: the two could
differ only for a cell reaching more than 6.5 Å from its site (a large void). With pymatgen's
``tol = 0`` every facet of positive weight counts, including slivers (weight < 1e-6 of the
largest: ~0.6 % of the facets in mp37k, from coordinates written with 6–8 decimals around
high-symmetry positions); they are real facets of the geometry, found by both tessellations, and
each adds one to the coordination number and one angle to the bond-angle statistics. The
area-weighted (``StructuralHeterogeneity``) and solid-angle-weighted neighbour sets are the
facets with area > 0 and solid angle > 0: identical on every mp37k structure checked.

Where matminer itself is wrong or fails, ours differs (3 of 500 random mp37k structures):
pymatgen's ``get_all_voronoi_polyhedra`` (``StructuralHeterogeneity``) mixes wrapped central
sites with images of the unwrapped ones when fractional coordinates lie outside [0, 1) (ours
equals matminer on the wrapped structure); the 13 Å truncation above (a slab with vacuum), where
``StructuralHeterogeneity`` may also raise "pathological structure"; and ``DensityFeatures``
fails as a whole when one element has no atomic radius (e.g. Xe), where ours keeps ``density``
and ``vpa`` and only ``packing_frac`` is NaN.

A descriptor that cannot be computed is NaN, with a reason (never an exception).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgnn.config import stable_hash
from crystalgnn.errors import Problem

#: Bump when the code changes what a descriptor's value is, so old caches are not reused.
DESCRIPTOR_CODE_VERSION = 1

HETEROGENEITY_DESCRIPTORS = (
    "MAD_in_rela_bond_len",
    "max_rela_bond_len",
    "min_rela_bond_len",
    "min_neighb_dist_var",
    "max_neighb_dist_var",
    "range_neighb_dist_var",
    "mean_neighb_dist_var",
    "dev_neighb_dist_var",
    "MAD_in_rela_atom_vol",
)
BOND_LENGTH_DESCRIPTORS = ("mean_avg_bond_len", "std_avg_bond_len")
BOND_ANGLE_DESCRIPTORS = ("mean_avg_bond_ang", "std_avg_bond_ang")
CN_DESCRIPTORS = ("mean_CN_Voronoi", "std_CN_Voronoi")
DENSITY_DESCRIPTORS = ("density", "vpa", "packing_frac")
COMPLEXITY_DESCRIPTORS = ("struct_comp_atom", "struct_comp_cell")
LATTICE_DESCRIPTORS = ("natoms", "a", "b", "c", "alpha", "beta", "gamma")
SYMMETRY_DESCRIPTORS = ("space_group_num", "crys_sys")

#: Descriptors from the Voronoi neighbours of each site (bond lengths/angles, CN, cell volumes).
LOCAL_DESCRIPTORS: tuple[str, ...] = HETEROGENEITY_DESCRIPTORS + BOND_LENGTH_DESCRIPTORS + BOND_ANGLE_DESCRIPTORS + CN_DESCRIPTORS
#: Descriptors of the whole cell (density, complexity, lattice, symmetry).
GLOBAL_DESCRIPTORS: tuple[str, ...] = DENSITY_DESCRIPTORS + COMPLEXITY_DESCRIPTORS + LATTICE_DESCRIPTORS + SYMMETRY_DESCRIPTORS
#: Every descriptor, in the column order of every table.
DESCRIPTOR_NAMES: tuple[str, ...] = LOCAL_DESCRIPTORS + GLOBAL_DESCRIPTORS
#: Integer-coded categories (not to be standardised as continuous values).
CATEGORICAL_DESCRIPTORS: tuple[str, ...] = ("crys_sys", "space_group_num")
#: Descriptors that are whole numbers (written as integers; empty when not computed).
INTEGER_DESCRIPTORS: tuple[str, ...] = ("natoms", *CATEGORICAL_DESCRIPTORS)
#: ``crys_sys`` value k means ``CRYSTAL_SYSTEMS[k]``.
CRYSTAL_SYSTEMS: tuple[str, ...] = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")

_INDEX = {name: k for k, name in enumerate(DESCRIPTOR_NAMES)}
#: Facet statistics usable as ``VoronoiNN`` weights.
VORONOI_WEIGHTS = ("solid_angle", "area", "volume", "face_dist")


@dataclass(frozen=True)
class DescriptorSettings:
    """Every setting that changes a descriptor value (defaults: matminer's featurizer defaults).

    ``voronoi_cutoff``: the largest neighbour-search radius (Å) of the tessellation; it starts
    smaller and grows until every Voronoi cell is exact, and a cell reaching beyond half of it
    fails (NaN). ``voronoi_tol``: pymatgen ``VoronoiNN(tol=...)``, facets with weight ≤ tol × the
    site's largest weight are not neighbours. ``bond_weight``: the ``VoronoiNN`` weight of the
    bond length/angle and CN descriptors (matminer: ``VoronoiNN()`` → solid angle);
    ``heterogeneity_weight``: that of ``StructuralHeterogeneity`` (area).
    """

    voronoi_cutoff: float = 60.0
    voronoi_tol: float = 0.0
    bond_weight: str = "solid_angle"
    heterogeneity_weight: str = "area"
    complexity_symprec: float = 0.1
    symmetry_symprec: float = 0.01
    symmetry_angle_tolerance: float = 5.0
    niggli_tol: float = 1e-5
    code_version: int = DESCRIPTOR_CODE_VERSION

    def __post_init__(self) -> None:
        for name in ("bond_weight", "heterogeneity_weight"):
            if getattr(self, name) not in VORONOI_WEIGHTS:
                raise ValueError(f"DescriptorSettings.{name} must be one of {VORONOI_WEIGHTS}, not {getattr(self, name)!r}")
        if not self.voronoi_cutoff > 0 or self.voronoi_tol < 0:
            raise ValueError("DescriptorSettings: voronoi_cutoff must be > 0 and voronoi_tol >= 0")

    def key(self) -> str:
        """Short stable hash of every setting; names the cache folder."""
        return stable_hash(dataclasses.asdict(self))[:16]


class _Fail(Exception):
    """A block of descriptors cannot be computed: ``reason`` for ``names``."""

    def __init__(self, reason: str, names: Sequence[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.names = tuple(names) if names is not None else None


# ------------------------------------------------------------------------------ statistics
def _avg_dev(x: np.ndarray) -> float:
    """matminer ``PropertyStats.avg_dev`` without weights: mean |x − mean(x)|."""
    return float(np.average(np.abs(np.subtract(x, np.average(x)))))


def _site_sums(center: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(center, weights=values, minlength=n)


# ------------------------------------------------------------------------------ blocks
def _heterogeneity(vf, settings: DescriptorSettings) -> dict[str, float]:
    """matminer ``StructuralHeterogeneity`` (see the module docstring)."""
    keep, w = vf.neighbors(settings.heterogeneity_weight, settings.voronoi_tol)
    n = vf.n_sites
    c = vf.center[keep]
    w = w[keep]
    lengths = vf.face_dist[keep] * 2
    wsum = _site_sums(c, w, n)
    if (wsum <= 0).any():
        raise _Fail(f"site {int(np.argmax(wsum <= 0))} has no Voronoi neighbour", HETEROGENEITY_DESCRIPTORS)
    mean_bond = _site_sums(c, w * lengths, n) / wsum
    bond_var = _site_sums(c, w * np.abs(lengths - mean_bond[c]), n) / wsum / mean_bond
    mean_bond = mean_bond / mean_bond.mean()
    cell_volumes = _site_sums(c, vf.volume[keep], n)
    return {
        "MAD_in_rela_bond_len": _avg_dev(mean_bond),
        "max_rela_bond_len": float(mean_bond.max()),
        "min_rela_bond_len": float(mean_bond.min()),
        "min_neighb_dist_var": float(bond_var.min()),
        "max_neighb_dist_var": float(bond_var.max()),
        "range_neighb_dist_var": float(bond_var.max() - bond_var.min()),
        "mean_neighb_dist_var": float(np.average(bond_var)),
        "dev_neighb_dist_var": _avg_dev(bond_var),
        "MAD_in_rela_atom_vol": _avg_dev(cell_volumes) / float(np.mean(cell_volumes)),
    }


def _min_bond_angles(vectors: np.ndarray, site: np.ndarray, n: int, max_cells: int = 4_000_000) -> np.ndarray:
    """matminer ``AverageBondAngle`` of every site: mean over neighbours of the smallest angle
    to another neighbour (NaN for a site with fewer than two neighbours).

    ``vectors`` are the bond vectors grouped by ``site`` (sorted); sites are processed in blocks
    of at most ``max_cells`` angle-matrix entries to bound memory.
    """
    counts = np.bincount(site, minlength=n)
    kmax = int(counts.max())
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(site)) - start[site]
    padded = np.zeros((n, kmax, 3))
    padded[site, slot] = vectors
    valid = np.zeros((n, kmax), dtype=bool)
    valid[site, slot] = True
    off_diagonal = ~np.eye(kmax, dtype=bool)[None]
    per_site = np.empty(n)
    block = max(1, max_cells // (kmax * kmax))
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        p, ok = padded[lo:hi], valid[lo:hi]
        norms = np.linalg.norm(p, axis=2)
        dots = np.einsum("nak,nbk->nab", p, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = dots / (norms[:, :, None] * norms[:, None, :])
            ang = np.arccos(cos)
            ang = np.where(np.isnan(ang), np.arccos(np.round(cos, 5)), ang)  # |cos| > 1 by round-off
        ang = np.where(ok[:, :, None] & ok[:, None, :] & off_diagonal, ang, np.inf)
        smallest = ang.min(axis=2)  # inf for a lone neighbour and for padding
        smallest = np.where(ok & np.isfinite(smallest), smallest, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_site[lo:hi] = smallest.sum(axis=1) / counts[lo:hi]
    per_site[counts < 2] = np.nan
    return per_site


def _bond_stats(vf, settings: DescriptorSettings, out: dict[str, float], reasons: dict[str, str]) -> None:
    """matminer ``SiteStatsFingerprint`` of ``AverageBondLength``, ``AverageBondAngle`` and
    ``CoordinationNumber`` with ``VoronoiNN(weight=bond_weight, tol=voronoi_tol)``."""
    keep, w = vf.neighbors(settings.bond_weight, settings.voronoi_tol)
    n = vf.n_sites
    c = vf.center[keep]
    w = w[keep]
    cn = np.bincount(c, minlength=n).astype(np.float64)
    if (cn == 0).any():
        why = f"site {int(np.argmax(cn == 0))} has no Voronoi neighbour"
        for name in BOND_LENGTH_DESCRIPTORS + BOND_ANGLE_DESCRIPTORS + CN_DESCRIPTORS:
            reasons[name] = why
        return
    out["mean_CN_Voronoi"] = float(np.mean(cn))
    out["std_CN_Voronoi"] = float(np.std(cn))

    bond = _site_sums(c, w * vf.distance[keep], n) / _site_sums(c, w, n)
    out["mean_avg_bond_len"] = float(np.mean(bond))
    out["std_avg_bond_len"] = float(np.std(bond))

    angles = _min_bond_angles(vf.vector[keep], c, n)
    if np.isnan(angles).any():
        why = f"site {int(np.argmax(np.isnan(angles)))} has a single Voronoi neighbour (no bond angle)"
        for name in BOND_ANGLE_DESCRIPTORS:
            reasons[name] = why
    else:
        out["mean_avg_bond_ang"] = float(np.mean(angles))
        out["std_avg_bond_ang"] = float(np.std(angles))


def _density(structure) -> dict[str, float | str]:
    """matminer ``DensityFeatures()`` (a string value is the reason a descriptor is missing)."""
    out: dict[str, float | str] = {"density": float(structure.density)}
    if not structure.is_ordered:
        why = "disordered structure (partial occupancy): needs ordered sites"
        out["vpa"] = out["packing_frac"] = why
        return out
    out["vpa"] = float(structure.volume / len(structure))
    total = 0.0
    radii: dict[Any, float] = {}
    for site in structure:
        sp = site.specie
        r = radii.get(sp)
        if r is None:
            r = sp.atomic_radius
            if r is None:
                out["packing_frac"] = f"no atomic radius for {sp}"
                return out
            radii[sp] = r = float(r)
        total += r**3
    out["packing_frac"] = 4 * math.pi * total / (3 * structure.volume)
    return out


def _complexity(structure, settings: DescriptorSettings) -> dict[str, float]:
    """matminer ``StructuralComplexity(symprec)``: Shannon entropy of the equivalent-site classes."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=settings.complexity_symprec)
    equivalent = np.asarray(sga.get_symmetry_dataset().equivalent_atoms)
    n = len(structure)
    _, counts = np.unique(equivalent, return_counts=True)
    ig = 0.0
    for m in counts.tolist():  # the order of matminer's loop over SymmetrizedStructure.equivalent_sites
        p = m / n
        ig -= p * np.log2(p)
    return {"struct_comp_atom": float(ig), "struct_comp_cell": float(ig * n)}


def _lattice(structure, settings: DescriptorSettings) -> dict[str, float]:
    """Niggli-reduced lattice: lengths and angles sorted descending, and the number of sites."""
    lat = structure.lattice.get_niggli_reduced_lattice(tol=settings.niggli_tol)
    a, b, c = sorted(lat.abc, reverse=True)
    alpha, beta, gamma = sorted(lat.angles, reverse=True)
    return {"natoms": float(len(structure)), "a": a, "b": b, "c": c, "alpha": alpha, "beta": beta, "gamma": gamma}


def _symmetry(structure, settings: DescriptorSettings) -> dict[str, float]:
    """matminer ``GlobalSymmetryFeatures(["spacegroup_num", "crystal_system"])``."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    sga = SpacegroupAnalyzer(structure, symprec=settings.symmetry_symprec, angle_tolerance=settings.symmetry_angle_tolerance)
    number = int(sga.get_space_group_number())
    return {"space_group_num": float(number), "crys_sys": float(CRYSTAL_SYSTEMS.index(str(sga.get_crystal_system())))}


def _short(err: BaseException, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def structure_descriptors(structure, settings: DescriptorSettings = DescriptorSettings()) -> tuple[np.ndarray, dict[str, str]]:
    """All descriptors of one pymatgen ``Structure``.

    Returns ``(values, reasons)``: ``values`` (len(DESCRIPTOR_NAMES),) float64 in the order of
    :data:`DESCRIPTOR_NAMES`, NaN where a descriptor could not be computed; ``reasons`` maps the
    name of every NaN descriptor to why. Never raises for a bad structure.
    """
    from crystalgnn.descriptors.voronoi import VoronoiError, structure_voronoi

    out: dict[str, float] = {}
    reasons: dict[str, str] = {}

    def run(names: Sequence[str], fn, *args) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = fn(*args)
        except _Fail as err:
            for name in err.names or names:
                reasons[name] = err.reason
        except Exception as err:  # noqa: BLE001 - any library failure is one NaN block, not a crash
            for name in names:
                reasons[name] = _short(err)
        else:
            for name, value in result.items():
                if isinstance(value, str):
                    reasons[name] = value
                else:
                    out[name] = value

    if len(structure) == 0:
        reasons.update({name: "no atoms in the structure" for name in DESCRIPTOR_NAMES})
        return np.full(len(DESCRIPTOR_NAMES), np.nan), reasons

    try:
        vf = structure_voronoi(structure, max_cutoff=settings.voronoi_cutoff)
    except VoronoiError as err:
        reasons.update({name: f"Voronoi tessellation failed: {err}" for name in LOCAL_DESCRIPTORS})
    except Exception as err:  # noqa: BLE001
        reasons.update({name: f"Voronoi tessellation failed: {_short(err)}" for name in LOCAL_DESCRIPTORS})
    else:
        run(HETEROGENEITY_DESCRIPTORS, _heterogeneity, vf, settings)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _bond_stats(vf, settings, out, reasons)
        except Exception as err:  # noqa: BLE001
            for name in BOND_LENGTH_DESCRIPTORS + BOND_ANGLE_DESCRIPTORS + CN_DESCRIPTORS:
                reasons.setdefault(name, _short(err))
    run(DENSITY_DESCRIPTORS, _density, structure)
    run(COMPLEXITY_DESCRIPTORS, _complexity, structure, settings)
    run(LATTICE_DESCRIPTORS, _lattice, structure, settings)
    run(SYMMETRY_DESCRIPTORS, _symmetry, structure, settings)

    values = np.full(len(DESCRIPTOR_NAMES), np.nan)
    for name, value in out.items():
        if name in reasons:
            continue
        v = float(value)
        if np.isfinite(v):
            values[_INDEX[name]] = v
        else:
            reasons[name] = f"not a finite number ({v})"
    for k, name in enumerate(DESCRIPTOR_NAMES):
        if np.isnan(values[k]) and name not in reasons:
            reasons[name] = "not computed"
    return values, {name: reasons[name] for name in DESCRIPTOR_NAMES if name in reasons}


# ------------------------------------------------------------------------------ table
@dataclass
class DescriptorTable:
    """Descriptors of many structures: ``values[i, k]`` is descriptor ``names[k]`` of item ``ids[i]``.

    NaN cells are descriptors that could not be computed; ``reasons[i, k]`` says why ("" when the
    value is fine) and ``problems`` lists them, one :class:`Problem` per item and descriptor (one
    per item, naming no descriptor, when the structure could not be read at all).
    """

    ids: list[str]
    names: tuple[str, ...]
    values: np.ndarray
    problems: list[Problem] = field(default_factory=list)
    reasons: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self.values = np.asarray(self.values, dtype=np.float64).reshape(len(self.ids), len(self.names))
        if self.reasons is None:
            self.reasons = np.where(np.isnan(self.values), "not computed", "").astype(str)

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self):
        """pandas DataFrame: an ``id`` column, then one column per descriptor."""
        import pandas as pd

        frame = pd.DataFrame(self.values, columns=list(self.names))
        for name in INTEGER_DESCRIPTORS:
            if name in frame:
                frame[name] = frame[name].round().astype("Int64")  # 225, not 225.0; NaN stays empty
        frame.insert(0, "id", list(self.ids))
        return frame

    def select(self, names: Sequence[str]) -> DescriptorTable:
        """The columns ``names`` (in that order); problems of other descriptors are dropped."""
        names = tuple(names)
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ValueError(f"unknown descriptor(s) {unknown}; available: {', '.join(self.names)}")
        cols = [self.names.index(n) for n in names]
        keep = set(names)
        problems = [p for p in self.problems if _problem_descriptor(p) in keep or _problem_descriptor(p) is None]
        return DescriptorTable(list(self.ids), names, self.values[:, cols], problems, self.reasons[:, cols])

    def subset(self, indices: Sequence[int] | np.ndarray) -> DescriptorTable:
        """The rows ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        ids = [self.ids[i] for i in idx.tolist()]
        wanted = set(ids)
        problems = [p for p in self.problems if p.id in wanted]
        return DescriptorTable(ids, self.names, self.values[idx], problems, self.reasons[idx])


def _problem(item_id: str, name: str, reason: str) -> Problem:
    return Problem(str(item_id), f"descriptor {name}: {reason}", stage="descriptors")


def _problem_descriptor(p: Problem) -> str | None:
    if p.reason.startswith("descriptor "):
        return p.reason[len("descriptor "):].split(":", 1)[0]
    return None
