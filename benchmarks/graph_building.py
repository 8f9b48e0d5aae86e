"""Graph building on mp37k: the reference CGCNN method vs crystalgnn's cached, vectorised builder.

Graphs: 8 Å radius, the 12 nearest neighbours per atom, Gaussian distance expansion 0–8 Å step
0.2 Å width 0.2 Å (41 features), i.e. CGCNN's defaults. Every method does the same work: parse
the CIF, find the neighbours, expand the distances.

* baseline: the reference CGCNN ``CIFData.__getitem__`` re-implemented here, single process, one
  crystal at a time: ``Structure.from_file``, ``get_all_neighbors(8)``, per site sort by distance
  and take the first 12 (fewer: pad with index 0 at distance 9 Å), numpy Gaussian expansion.
  With ``--baseline-n`` smaller than ``--n`` it is timed on the first crystals only and the total
  is extrapolated per crystal (the output says so).
* ours, cold: ``load_dataset`` + ``build_graphs`` into an empty cache folder + the Gaussian
  expansion of every edge with ``GaussianExpansion`` (torch, CPU), for each ``--workers`` value.
* ours, warm: the same call again on the filled cache.
* warm load of all 36,737 crystals (unless ``--skip-warm-all``): the full cache is built once
  (timed, in a subprocess), then ``load_dataset`` + ``build_graphs`` of everything is timed in a
  fresh Python process (OS page cache warm, Python state fresh). Goal: under 10 s.

The per-atom sorted neighbour distances of ours and of the baseline are compared for every
crystal the baseline built. Results go to ``benchmarks/results/graph_building.json``.

Usage::

    python benchmarks/graph_building.py                 # N = 1000, workers 1 and 2, warm-all
    python benchmarks/graph_building.py --n 200 --skip-warm-all
    python benchmarks/graph_building.py --n 5000 --baseline-n 500 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    DEFAULT_DATA_CACHE,
    DEFAULT_GRAPH_CACHE,
    extracted_mp37k,
    load_mp37k,
    machine_info,
    mp37k_subset,
    peak_rss_mb,
    print_table,
    write_results,
)

RADIUS = 8.0
MAX_NBR = 12
G_START, G_STOP, G_STEP, G_WIDTH = 0.0, 8.0, 0.2, 0.2
N_ALL = 36_737


# ------------------------------------------------------------------------------------ baseline
def reference_graph(cif_path: str, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference CGCNN graph of one CIF: (nbr_fea_idx (N, 12), distances (N, 12), features (N, 12, 41)).

    Mirrors ``cgcnn/data.py`` ``CIFData.__getitem__`` (atom features left out: both methods skip them).
    """
    from pymatgen.core import Structure

    crystal = Structure.from_file(cif_path)
    all_nbrs = crystal.get_all_neighbors(RADIUS, include_index=True)
    all_nbrs = [sorted(nbrs, key=lambda x: x.nn_distance) for nbrs in all_nbrs]
    nbr_fea_idx, nbr_fea = [], []
    for nbr in all_nbrs:
        if len(nbr) < MAX_NBR:
            nbr_fea_idx.append([x.index for x in nbr] + [0] * (MAX_NBR - len(nbr)))
            nbr_fea.append([x.nn_distance for x in nbr] + [RADIUS + 1.0] * (MAX_NBR - len(nbr)))
        else:
            nbr_fea_idx.append([x.index for x in nbr[:MAX_NBR]])
            nbr_fea.append([x.nn_distance for x in nbr[:MAX_NBR]])
    idx, dist = np.array(nbr_fea_idx), np.array(nbr_fea)
    features = np.exp(-((dist[..., np.newaxis] - centres) ** 2) / G_WIDTH**2)  # GaussianDistance.expand
    return idx, dist, features


def run_baseline(paths: list[str]) -> tuple[float, list[np.ndarray], int]:
    centres = np.arange(G_START, G_STOP + G_STEP, G_STEP)
    assert centres.shape == (41,)
    dists: list[np.ndarray] = []
    n_edges = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CIF parser notes; the reference warns on padding too
        reference_graph(paths[0], centres)  # imports and lazy set-up out of the timing
        start = time.perf_counter()
        for path in paths:
            _, dist, features = reference_graph(path, centres)
            dists.append(dist)
            n_edges += features.shape[0] * features.shape[1]
        elapsed = time.perf_counter() - start
    return elapsed, dists, n_edges


# ------------------------------------------------------------------------------------ ours
def graph_config():
    from crystalgnn.config import GraphConfig

    return GraphConfig(strategy="radius", cutoff=RADIUS, max_neighbors=MAX_NBR)


def load_items(data_cache: Path, n: int | None, items: list[tuple[str, str]] | None):
    """The first ``n`` rows through ``load_dataset(<csv>)``; or, for a random sample ``items``
    (id, path), ``load_dataset`` of lazy file sources, so that only the sampled files are read and
    hashed (what load_dataset does per file) rather than all of mp37k."""
    if items is None:
        return load_mp37k(data_cache, n)
    from crystalgnn.io import load_dataset
    from crystalgnn.structures.source import StructureSource, file_key

    sources = [StructureSource(key=file_key(path), path=path, fmt="cif") for _, path in items]
    return load_dataset(sources, ids=[i for i, _ in items])


def run_ours(data_cache: Path, n: int | None, cache_dir: Path, workers: int,
             items: list[tuple[str, str]] | None = None) -> dict:
    """load_dataset + build_graphs + Gaussian expansion, each step timed."""
    import torch

    from crystalgnn.graphs.cache import build_graphs
    from crystalgnn.models.blocks import GaussianExpansion

    t0 = time.perf_counter()
    ds = load_items(data_cache, n, items)
    t1 = time.perf_counter()
    store, ok, problems = build_graphs(ds.ids, ds.sources, graph_config(), cache_dir=cache_dir, workers=workers, progress=False)
    t2 = time.perf_counter()
    expansion = GaussianExpansion(G_START, G_STOP, G_STEP, G_WIDTH)
    with torch.no_grad():
        features = expansion(torch.from_numpy(store.edge_distances))
    t3 = time.perf_counter()
    assert features.shape == (len(store.edge_distances), 41)
    return {
        "seconds": t3 - t0,
        "load_dataset_s": t1 - t0,
        "build_graphs_s": t2 - t1,
        "expansion_s": t3 - t2,
        "n_graphs": len(store),
        "n_edges": int(store.edge_ptr[-1]),
        "n_problems": len(problems),
        "_store": store,
        "_ok": ok,
        "_ids": ds.ids,
    }


#: Tolerance of the distance comparison. crystalgnn reads ordered CIFs with gemmi, which keeps the
#: coordinates as written, while pymatgen's CifParser (the baseline) snaps fractional coordinates
#: within 1e-4 of 1/3, 2/3, ... to the exact fraction: bond lengths then differ by up to ~1e-3 Å.
DIST_ATOL = 1e-3


def compare(ours_store, ours_ok: np.ndarray, baseline_dists: list[np.ndarray]) -> dict:
    """Per atom: our sorted neighbour distances vs the baseline's non-padded ones."""
    row_of = np.cumsum(ours_ok) - 1  # dataset row -> row in our store
    checked, mismatched, max_diff, n_inexact = 0, [], 0.0, 0
    for i, ref in enumerate(baseline_dists):
        if not ours_ok[i]:
            mismatched.append((i, "not built by crystalgnn"))
            continue
        g = ours_store.graph(int(row_of[i]))
        centre = g.edge_index[1]
        if g.num_atoms != ref.shape[0]:
            mismatched.append((i, f"{g.num_atoms} atoms vs {ref.shape[0]}"))
            continue
        order = np.lexsort((g.edge_distances, centre))
        counts = np.bincount(centre, minlength=g.num_atoms)
        ours_sorted = np.split(g.edge_distances[order], np.cumsum(counts)[:-1])
        bad, crystal_diff = False, 0.0
        for atom in range(g.num_atoms):
            real = ref[atom][ref[atom] <= RADIUS]  # padding is at RADIUS + 1
            mine = ours_sorted[atom]
            if mine.shape != real.shape or not np.allclose(mine, real, atol=DIST_ATOL, rtol=0):
                bad = True
                break
            if real.size:
                crystal_diff = max(crystal_diff, float(np.abs(mine - real).max()))
        max_diff = max(max_diff, crystal_diff)
        n_inexact += crystal_diff > 1e-5
        checked += 1
        if bad:
            mismatched.append((i, f"atom {atom}: ours {np.round(mine, 4).tolist()} vs {np.round(real, 4).tolist()}"))
    return {"crystals_checked": checked, "all_close": not mismatched, "atol_A": DIST_ATOL, "max_abs_diff_A": max_diff,
            "crystals_differing_by_more_than_1e-5_A": int(n_inexact),
            "mismatches": [f"item {i}: {why}" for i, why in mismatched[:10]]}


# ------------------------------------------------------------------------------------ warm-all (child process)
def child(args: argparse.Namespace) -> None:
    """Run in a fresh interpreter: load_dataset + build_graphs of all of mp37k; print JSON."""
    t_import = time.perf_counter()
    from crystalgnn.graphs.cache import build_graphs
    from crystalgnn.io import load_dataset  # noqa: F401  (import cost counted here, not below)

    t0 = time.perf_counter()
    folder = extracted_mp37k(args.data_cache, verbose=False)
    ds = load_mp37k(folder, None)
    t1 = time.perf_counter()
    store, ok, problems = build_graphs(ds.ids, ds.sources, graph_config(), cache_dir=args.graph_cache,
                                       workers=args.child_workers, progress=False)
    t2 = time.perf_counter()
    print(json.dumps({
        "import_s": t0 - t_import,
        "load_dataset_s": t1 - t0,
        "build_graphs_s": t2 - t1,
        "seconds": t2 - t0,
        "n_items": len(ds),
        "n_graphs": len(store),
        "n_edges": int(store.edge_ptr[-1]),
        "n_problems": len(problems),
        "problems": [f"{p.id}: {p.reason}" for p in problems[:10]],
        "peak_rss_mb": peak_rss_mb(),
    }))


def run_child(args: argparse.Namespace, workers: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-all", "--child-workers", str(workers),
           "--data-cache", str(args.data_cache), "--graph-cache", str(args.graph_cache)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"child process failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall  # interpreter start + imports + the work
    return result


def warm_all(args: argparse.Namespace) -> dict:
    from crystalgnn.graphs.cache import GraphCache

    root = Path(args.graph_cache)
    folder = GraphCache(graph_config(), root).folder
    marker = root / f"mp37k-all-{graph_config().key()}.json"
    out: dict = {"graph_cache": str(folder)}
    if args.rebuild_all or not marker.exists():
        if folder is not None and folder.exists():
            shutil.rmtree(folder)  # only this benchmark's own cache folder
        print(f"building the full mp37k graph cache with {args.all_workers} workers (a few minutes) ...", flush=True)
        cold = run_child(args, args.all_workers)
        marker.write_text(json.dumps(cold, indent=2) + "\n")
        out["cold_build"] = cold
        out["cold_build_measured_now"] = True
    else:
        out["cold_build"] = json.loads(marker.read_text())
        out["cold_build_measured_now"] = False
        print(f"full cache already built (cold build figures from {marker}; --rebuild-all to redo)", flush=True)
    runs = [run_child(args, 1) for _ in range(args.warm_repeats)]
    out["warm_runs"] = runs
    out["warm_best_s"] = min(r["seconds"] for r in runs)
    out["goal_s"] = 10.0
    out["goal_met"] = out["warm_best_s"] < 10.0
    return out


# ------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="first N crystals of mp37k (default 1000)")
    parser.add_argument("--subset", choices=("first", "random"), default="first",
                        help="the first N rows (default) or a seeded random sample of N (mp37k's first ids are "
                             "smaller crystals than average: 7 atoms vs 26)")
    parser.add_argument("--workers", type=str, default="1,2",
                        help="comma-separated worker counts for the cold build (default '1,2')")
    parser.add_argument("--baseline-n", type=int, default=0,
                        help="time the baseline on the first this-many crystals and extrapolate (0: all N)")
    parser.add_argument("--skip-warm-all", action="store_true", help="skip the full-mp37k cache build and warm load")
    parser.add_argument("--rebuild-all", action="store_true", help="rebuild the full cache even if it exists")
    parser.add_argument("--all-workers", type=int, default=2, help="workers for the full cache build (default 2)")
    parser.add_argument("--warm-repeats", type=int, default=2, help="fresh-process warm loads of all of mp37k")
    parser.add_argument("--data-cache", type=Path, default=DEFAULT_DATA_CACHE,
                        help=f"where mp37k is extracted (its parent folder; default {DEFAULT_DATA_CACHE})")
    parser.add_argument("--graph-cache", type=Path, default=DEFAULT_GRAPH_CACHE,
                        help=f"graph cache for the full-mp37k step (default {DEFAULT_GRAPH_CACHE})")
    parser.add_argument("--child-all", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_all:
        child(args)
        return

    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    folder = extracted_mp37k(args.data_cache)
    results: dict = {"settings": {"n": args.n, "subset": args.subset, "workers": workers, "radius_A": RADIUS, "max_neighbors": MAX_NBR,
                                  "gaussian": [G_START, G_STOP, G_STEP, G_WIDTH], "data": str(folder),
                                  "command": " ".join([Path(sys.executable).name, *sys.argv])},
                     "machine": machine_info()}

    ds = mp37k_subset(args.data_cache, args.n, args.subset)
    n = len(ds)
    paths = [s.path for s in ds.sources]
    items = None if args.subset == "first" else list(zip(ds.ids, paths))
    for p in paths:  # the same warm OS page cache for every method
        Path(p).read_bytes()

    # baseline
    n_base = min(args.baseline_n or n, n)
    print(f"baseline (reference CGCNN method, 1 process) on {n_base} of {n} crystals ...", flush=True)
    base_s, base_dists, base_edges = run_baseline(paths[:n_base])
    per_crystal = base_s / n_base
    baseline = {"crystals_timed": n_base, "seconds_timed": base_s, "ms_per_crystal": 1e3 * per_crystal,
                "seconds_for_n": per_crystal * n, "extrapolated": n_base < n, "n_edges_timed": base_edges}
    results["baseline"] = baseline

    # ours, cold then warm
    cold: dict[int, dict] = {}
    warm = None
    for w in workers:
        with tempfile.TemporaryDirectory(prefix="crystalgnn-bench-") as tmp:
            print(f"ours cold, workers={w} ...", flush=True)
            cold[w] = run_ours(args.data_cache, args.n, Path(tmp), w, items)
            if w == workers[-1]:
                print("ours warm (same call on the filled cache) ...", flush=True)
                warm = run_ours(args.data_cache, args.n, Path(tmp), w, items)
                same = np.array_equal(warm["_store"].edge_distances, cold[w]["_store"].edge_distances)
                warm["identical_to_cold"] = bool(same)
    check = compare(cold[workers[-1]]["_store"], cold[workers[-1]]["_ok"], base_dists)
    results["correctness"] = check

    def public(d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith("_")}

    results["ours_cold"] = {str(w): public(r) | {"ms_per_crystal": 1e3 * r["seconds"] / n,
                                                  "speedup_vs_baseline": baseline["seconds_for_n"] / r["seconds"]}
                            for w, r in cold.items()}
    results["ours_warm"] = public(warm) | {"speedup_vs_baseline": baseline["seconds_for_n"] / warm["seconds"]}

    rows = [("baseline: reference CGCNN, 1 process" + (" (extrapolated)" if baseline["extrapolated"] else ""),
             f"{baseline['seconds_for_n']:.2f}", f"{baseline['ms_per_crystal']:.2f}", "1.0x", "")]
    for w, r in cold.items():
        rows.append((f"ours cold, workers={w}", f"{r['seconds']:.2f}", f"{1e3 * r['seconds'] / n:.2f}",
                     f"{baseline['seconds_for_n'] / r['seconds']:.1f}x",
                     f"load {r['load_dataset_s']:.2f} / build {r['build_graphs_s']:.2f} / expand {r['expansion_s']:.2f}"))
    rows.append(("ours warm (cache hit)", f"{warm['seconds']:.3f}", f"{1e3 * warm['seconds'] / n:.3f}",
                 f"{baseline['seconds_for_n'] / warm['seconds']:.0f}x",
                 f"load {warm['load_dataset_s']:.2f} / build {warm['build_graphs_s']:.2f} / expand {warm['expansion_s']:.2f}"))

    if not args.skip_warm_all:
        results["warm_all"] = warm_all(args)
        wa = results["warm_all"]
        c = wa["cold_build"]
        rows.append((f"ours cold, all {c['n_items']} crystals, workers={args.all_workers}", f"{c['seconds']:.1f}",
                     f"{1e3 * c['seconds'] / c['n_items']:.2f}", "",
                     f"load {c['load_dataset_s']:.2f} / build {c['build_graphs_s']:.1f}"
                     + ("" if wa["cold_build_measured_now"] else " (earlier run)")))
        for k, r in enumerate(wa["warm_runs"]):
            rows.append((f"ours warm, all {r['n_items']}, fresh process #{k + 1}", f"{r['seconds']:.2f}",
                         f"{1e3 * r['seconds'] / r['n_items']:.3f}", "",
                         f"load {r['load_dataset_s']:.2f} / build {r['build_graphs_s']:.2f}; process {r['process_wall_s']:.1f} s"))

    print()
    print(f"mp37k, {'first' if args.subset == 'first' else 'random'} {n} crystals ({np.mean(cold[workers[-1]]['_store'].num_atoms):.1f} atoms on average), {RADIUS:g} Å / {MAX_NBR} neighbours / 41 Gaussian features "
          f"(machine: {os.cpu_count()} cores, load {results['machine'].get('load_average_1_5_15')})")
    print_table(rows, ("method", "seconds", "ms/crystal", "speed-up", "breakdown (s)"))
    if baseline["extrapolated"]:
        print(f"* baseline timed on the first {n_base} crystals ({base_s:.1f} s) and extrapolated per crystal to {n}")
    best = max(results["ours_cold"].values(), key=lambda r: r["speedup_vs_baseline"])
    print(f"cold speed-up baseline/ours: {best['speedup_vs_baseline']:.1f}x (goal >= 10x)")
    print(f"correctness: {check['crystals_checked']} crystals, per-atom sorted distances all close "
          f"(atol {DIST_ATOL:g} Å): {check['all_close']}; max |diff| {check['max_abs_diff_A']:.2e} Å; "
          f"{check['crystals_differing_by_more_than_1e-5_A']} crystal(s) differ by > 1e-5 Å "
          "(CIF coordinates as written vs pymatgen's snapping to exact fractions)")
    for m in check["mismatches"]:
        print("  mismatch:", m)
    if "warm_all" in results:
        wa = results["warm_all"]
        print(f"warm load of all mp37k graphs: {wa['warm_best_s']:.2f} s (goal < 10 s: {'met' if wa['goal_met'] else 'NOT met'})")
    results["peak_rss_mb"] = peak_rss_mb()
    path = write_results("graph_building.json", results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
