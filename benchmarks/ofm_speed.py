"""Per-site orbital field matrices on mp37k: matminer 0.10.1 (the reference) vs crystalgnn.

* matminer: ``OrbitalFieldMatrix(period_tag=False).get_atom_ofms(s)`` (one ``VoronoiNN`` 13 Å
  tessellation per site), per structure in one process, structures already parsed.
* ours: ``expand_ofm(orbital_field_sums(s), s.atomic_numbers)`` (one periodic tessellation per
  structure; the tessellation memo is cleared before every structure, so nothing is reused),
  same structures, same process; timed with the default facet distance and with
  ``distance="matminer"`` (matminer's minimum-image distance).

Agreement per structure: the largest relative deviation |ours − matminer| / |matminer| over the
finite entries with |matminer| > 1e-10, and whether every entry satisfies
|ours − matminer| ≤ 1e-6 · |matminer| + 1e-12 (non-finite matminer entries count as a mismatch).
Structures that differ are explained: self-image neighbour (a Voronoi neighbour is a periodic
image of the centre itself: matminer's minimum-image distance is 0 or round-off ~1e-16, its matrix
inf/NaN or ~1e16; ``distance="matminer"`` is compared only on the others), minimum-image
distance ≠ facet distance (another image of the neighbour's site is nearer than the one sharing
the facet; ``distance="matminer"`` reproduces these), or other (e.g. matminer's fixed 13 Å
cutoff). Elements beyond Z 94 are skipped (no one-hot vector). Results go to
``benchmarks/results/ofm_speed.json``.

Usage::

    python benchmarks/ofm_speed.py            # 500 random mp37k structures (matminer: minutes)
    python benchmarks/ofm_speed.py --n 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from _common import DEFAULT_DATA_CACHE, machine_info, mp37k_subset, print_table, write_results

from crystalgnn.descriptors.ofm import orbital_field_sums  # noqa: E402
from crystalgnn.descriptors.voronoi import clear_voronoi_memo, structure_voronoi  # noqa: E402
from crystalgnn.features.ofm import OFM_MAX_Z, expand_ofm  # noqa: E402

RTOL = 1e-6
ATOL = 1e-12


def compare(ours: np.ndarray, ref: np.ndarray) -> tuple[bool, float]:
    """(every entry within tolerance, max relative deviation over finite |ref| > 1e-10)."""
    finite = np.isfinite(ref)
    ok = bool(finite.all() and np.all(np.abs(ours - ref) <= RTOL * np.abs(ref) + ATOL))
    big = finite & np.isfinite(ours) & (np.abs(ref) > 1e-10)
    rel = float(np.max(np.abs(ours[big] - ref[big]) / np.abs(ref[big]))) if big.any() else 0.0
    return ok, rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="structures (seeded random sample of mp37k; default 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (0)")
    parser.add_argument("--output", default="ofm_speed.json", help="results file name in benchmarks/results (ofm_speed.json)")
    parser.add_argument("--data-cache", type=Path, default=DEFAULT_DATA_CACHE, help=f"where mp37k is extracted (default {DEFAULT_DATA_CACHE})")
    args = parser.parse_args()

    from matminer.featurizers.structure.matrix import OrbitalFieldMatrix

    ds = mp37k_subset(args.data_cache, args.n, "random", args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structures = [src.load() for src in ds.sources]
        featurizer = OrbitalFieldMatrix(period_tag=False)
    load_before = os.getloadavg()
    n_atoms = np.array([len(s) for s in structures])
    print(f"{len(structures)} mp37k structures (seed {args.seed}), {n_atoms.mean():.1f} atoms on average (max {n_atoms.max()}); "
          f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)

    t_ours, t_ours_mm, t_ref = [], [], []
    rel_facet, rel_mm = [], []
    reasons: dict[str, list[str]] = {"self_image_neighbour": [], "min_image_distance": [], "other": []}
    skipped: list[str] = []
    n_identical_facet = n_identical_mm = n_self_image = 0
    used_atoms = []
    for item, s in zip(ds.ids, structures):
        if max(s.atomic_numbers) > OFM_MAX_Z:
            skipped.append(str(item))
            continue
        used_atoms.append(len(s))
        z = s.atomic_numbers
        clear_voronoi_memo()
        start = time.perf_counter()
        ours = expand_ofm(orbital_field_sums(s), z)
        t_ours.append(time.perf_counter() - start)
        clear_voronoi_memo()
        start = time.perf_counter()
        with np.errstate(invalid="ignore"):  # inf × 0 where matminer has inf/NaN
            ours_mm = expand_ofm(orbital_field_sums(s, distance="matminer"), z)
        t_ours_mm.append(time.perf_counter() - start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            ref = np.array([np.asarray(m) for m in featurizer.get_atom_ofms(s)]).reshape(len(s), -1)
            t_ref.append(time.perf_counter() - start)
        ok_f, rel_f = compare(ours[:, :1024], ref)
        with np.errstate(invalid="ignore"):
            ok_m, rel_m = compare(np.where(np.isfinite(ref), ours_mm[:, :1024], np.nan), ref)
        rel_facet.append(rel_f)
        n_identical_facet += ok_f
        facets = structure_voronoi(s)  # memoised: the tessellation just used
        keep, _ = facets.neighbors("solid_angle", 0.0)
        self_image = bool(np.any(facets.neighbor[keep] == facets.center[keep]))
        n_self_image += self_image
        if not self_image:
            n_identical_mm += ok_m
            rel_mm.append(rel_m)
        if not ok_f:
            if self_image:
                reasons["self_image_neighbour"].append(str(item))
            elif ok_m:
                reasons["min_image_distance"].append(str(item))
            else:
                reasons["other"].append(str(item))
    load_after = os.getloadavg()

    n = len(t_ref)
    ms = {name: 1e3 * float(np.mean(t)) for name, t in (("ours", t_ours), ("ours_matminer_distance", t_ours_mm), ("matminer", t_ref))}
    ratio = ms["matminer"] / ms["ours"]
    finite_structures = n - n_self_image
    rows = [
        ("ours (facet distance)", f"{ms['ours']:.2f}", f"{ratio:.0f}x", f"{n_identical_facet}/{n}", f"{max(rel_facet, default=0):.1e}"),
        ("ours (distance='matminer')", f"{ms['ours_matminer_distance']:.2f}", f"{ms['matminer'] / ms['ours_matminer_distance']:.0f}x",
         f"{n_identical_mm}/{finite_structures} w/o self-image", f"{max(rel_mm, default=0):.1e}"),
        ("matminer get_atom_ofms", f"{ms['matminer']:.1f}", "1x", "-", "-"),
    ]
    print()
    print_table(rows, ("per-site OFM (1056)", "ms/structure", "speed-up", "identical", "max rel dev"))
    print()
    print(f"{n} structures compared ({len(skipped)} skipped for Z > {OFM_MAX_Z}); total matminer {sum(t_ref):.1f} s, ours {sum(t_ours):.2f} s")
    print(f"differ from matminer with the facet distance: {n - n_identical_facet}: "
          f"{len(reasons['self_image_neighbour'])} with a Voronoi neighbour that is an image of its centre "
          f"(matminer divides by a minimum-image distance of 0 or ~1e-16: inf/NaN or ~1e16 entries), "
          f"{len(reasons['min_image_distance'])} matminer's minimum-image distance (reproduced by distance='matminer'), "
          f"{len(reasons['other'])} other{(': ' + ', '.join(reasons['other'][:10])) if reasons['other'] else ''}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")

    results = {
        "settings": {"n": n, "seed": args.seed, "rtol": RTOL, "atol": ATOL, "period_tag": False,
                     "command": " ".join([Path(sys.executable).name, *sys.argv])},
        "machine": machine_info(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "atoms_mean": float(np.mean(used_atoms)) if used_atoms else 0.0,
        "atoms_max": int(max(used_atoms, default=0)),
        "ms_per_structure": ms,
        "speedup": ratio,
        "speedup_matminer_distance": ms["matminer"] / ms["ours_matminer_distance"],
        "identical_facet_distance": int(n_identical_facet),
        "identical_matminer_distance": int(n_identical_mm),
        "structures_without_self_image_neighbour": int(finite_structures),
        "max_rel_dev_facet": max(rel_facet, default=0.0),
        "max_rel_dev_matminer_distance": max(rel_mm, default=0.0),
        "differences": {k: {"count": len(v), "ids": v[:50]} for k, v in reasons.items()},
        "skipped_beyond_z94": skipped,
    }
    path = write_results(args.output, results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
