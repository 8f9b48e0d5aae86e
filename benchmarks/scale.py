"""Cost growth with the number of crystals: graph building and one CGCNN training epoch at 10k, 100k
and 500k crystals, and a training epoch under a memory limit smaller than the graph store.

The synthetic set (``make``): crystal ``j`` is mp37k structure ``j mod 36,737`` (its CIF parsed
once; every base in turn, so the size mix is mp37k's), its lattice scaled isotropically by
``s = 1 + U(-0.03, 0.03)`` and every atom moved by a Gaussian of 0.02 Å per axis (in fractional
coordinates: 0.02 Å / the axis length), drawn from ``numpy.random.default_rng(j)``; written as a
P1 CIF ``syn<j>.cif`` (lattice lengths and angles, fractional coordinates to 6 decimals). Label:
the base's formation energy per atom + 2 eV × (s − 1), so the new labels follow the perturbation.
One folder holds the largest size (``id_prop.csv`` + CIFs, ~1.4 kB each); a size ``n`` reads its
first ``n`` rows. It is written once and reused (``--work``, default ``~/.cache/crystalgnn/scale``).

Each measurement runs in a fresh process (``--child``), so peak RSS (``VmHWM``) is its own:

* ``build``: ``load_dataset`` (reads and hashes every CIF) + ``build_graphs`` into an empty cache
  of that size (``cache-<n>``), CGCNN's graph (8 Å, 12 neighbours), ``--workers`` processes,
  ``store="mmap"``. Reported: read and build seconds, peak RSS of the process and of its worker
  processes (``RUSAGE_CHILDREN``: the largest of them), the store's bytes on disk.
* ``epoch``: the same data from the warm cache through ``prepare(store_mode="mmap")`` (the
  memory-mapped view; nothing is built), one shuffled epoch of CGCNN (the reference size
  atom_fea_len 64, h_fea_len 128, 3 convolutions, or ``--arch W,C,H``; batch 256, AdamW 3e-3,
  MSE on standardized targets) over every crystal, ``--threads`` torch threads. Reported: epoch seconds, crystals/s,
  peak RSS, and the largest anonymous / file-backed resident memory (``RssAnon`` / ``RssFile`` of
  ``/proc/self/status``) sampled every 20 batches: the file-backed part is the mapped shards.
* ``memlimit``: the ``epoch`` child of the size ``--memlimit-n`` inside a cgroup (v1 memory
  controller, or v2 ``memory.max``; needs root; else ``systemd-run --scope -p MemoryMax=``) whose
  limit is ``--memlimit-mb`` (default: the store's bytes / 2.2): the store is more than twice the
  memory the process may hold. Reported: the limit, the store/limit ratio, whether the epoch
  finished, the group's peak usage and how often it hit the limit (``failcnt``).

Results: ``benchmarks/results/scale.json``, written after every measurement; a rerun skips what it
holds (``--redo`` repeats). Other jobs on the machine change the times: the load average is
recorded with each entry.

Usage::

    python benchmarks/scale.py                                  # make, build, epoch at 10k/100k/500k, memlimit at 500k
    python benchmarks/scale.py --sizes 10000,100000 --phases build,epoch
    python benchmarks/scale.py --phases memlimit --memlimit-n 500000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import extracted_mp37k, image_peak_rss_mb, machine_info, write_results  # noqa: E402

RESULT_NAME = "scale.json"

RESULTS_PATH = Path(__file__).resolve().parent / "results" / RESULT_NAME
N_BASES = 36_737


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------- the synthetic set
def _bases(work: Path) -> dict[str, np.ndarray]:
    """mp37k's structures as arrays (parsed once into ``work/bases.npz``)."""
    path = work / "bases.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    from crystalgnn.io import load_dataset

    folder = extracted_mp37k()
    ds = load_dataset(folder / "id_prop_fo.csv", [0], structures_dir=folder)
    lattices, counts, numbers, fracs = [], [], [], []
    start = time.perf_counter()
    for k, source in enumerate(ds.sources):
        s = source.load()
        lattices.append(s.lattice.matrix)
        counts.append(len(s))
        numbers.append(np.array([site.specie.Z for site in s], dtype=np.int16))
        fracs.append(s.frac_coords)
        if k % 5000 == 0:
            print(f"  parsed {k}/{len(ds.sources)} mp37k structures ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    arrays = {"lattices": np.array(lattices), "counts": np.array(counts), "numbers": np.concatenate(numbers),
              "fracs": np.concatenate(fracs), "targets": ds.targets[:, 0].astype(np.float64)}
    np.savez(work / ".bases.tmp.npz", **arrays)
    os.replace(work / ".bases.tmp.npz", path)
    return arrays


def make_synthetic(work: Path, n: int) -> Path:
    """The first ``n`` crystals of the synthetic set in ``work/synthetic`` (resumable: a marker
    records how many are written)."""
    from pymatgen.core import Element, Lattice

    folder = work / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".written"
    done = int(marker.read_text()) if marker.exists() else 0
    if done >= n:
        return folder
    bases = _bases(work)
    starts = np.concatenate([[0], np.cumsum(bases["counts"])])
    symbols = {z: Element.from_Z(int(z)).symbol for z in np.unique(bases["numbers"])}
    start = time.perf_counter()
    labels = []
    for j in range(n):
        b = j % len(bases["counts"])
        rng = np.random.default_rng(j)
        scale = 1.0 + rng.uniform(-0.03, 0.03)
        lattice = Lattice(bases["lattices"][b] * scale)
        frac = bases["fracs"][starts[b] : starts[b + 1]]
        frac = frac + rng.normal(0.0, 0.02, frac.shape) / np.array(lattice.abc)
        labels.append(f"syn{j},{bases['targets'][b] + 2.0 * (scale - 1.0):.6f}")
        if j < done:
            continue
        a, bb, c = lattice.abc
        al, be, ga = lattice.angles
        zs = bases["numbers"][starts[b] : starts[b + 1]]
        sites = "\n".join(f"  {symbols[z]} {symbols[z]}{i} {x:.6f} {y:.6f} {w:.6f} 1"
                          for i, (z, (x, y, w)) in enumerate(zip(zs, frac % 1.0)))
        text = (f"data_syn{j}\n_symmetry_space_group_name_H-M 'P 1'\n_symmetry_Int_Tables_number 1\n"
                f"_cell_length_a {a:.6f}\n_cell_length_b {bb:.6f}\n_cell_length_c {c:.6f}\n"
                f"_cell_angle_alpha {al:.6f}\n_cell_angle_beta {be:.6f}\n_cell_angle_gamma {ga:.6f}\n"
                "loop_\n  _symmetry_equiv_pos_as_xyz\n  'x, y, z'\n"
                "loop_\n  _atom_site_type_symbol\n  _atom_site_label\n  _atom_site_fract_x\n  _atom_site_fract_y\n"
                f"  _atom_site_fract_z\n  _atom_site_occupancy\n{sites}\n")
        (folder / f"syn{j}.cif").write_text(text)
        if (j + 1) % 50_000 == 0:
            marker.write_text(str(j + 1))
            print(f"  wrote {j + 1}/{n} synthetic CIFs ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    (folder / ".id_prop.tmp").write_text("\n".join(labels) + "\n")
    os.replace(folder / ".id_prop.tmp", folder / "id_prop.csv")
    marker.write_text(str(n))
    return folder


# ------------------------------------------------------------------------- child processes
def child_build(work: Path, n: int, workers: int) -> dict:
    import shutil

    from crystalgnn.config import GraphConfig
    from crystalgnn.graphs.cache import GraphCache, build_graphs
    from crystalgnn.io import load_dataset

    cache = work / f"cache-{n}"
    if cache.exists():
        shutil.rmtree(cache)
    t0 = time.perf_counter()
    ds = load_dataset(work / "synthetic", [0], max_rows=n)
    t1 = time.perf_counter()
    store, ok, problems = build_graphs(ds.ids, ds.sources, GraphConfig(), cache, workers=workers, progress=False, store="mmap")
    t2 = time.perf_counter()
    folder = GraphCache(GraphConfig(), cache).folder
    nbytes = sum(f.stat().st_size for f in folder.rglob("*.npy"))
    return {"n": n, "n_built": int(ok.sum()), "n_problems": len(problems), "seconds_read": t1 - t0, "seconds_build": t2 - t1,
            "seconds_total": t2 - t0, "crystals_per_s": n / (t2 - t0), "workers": workers,
            "peak_rss_mb": image_peak_rss_mb(),
            "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "store_bytes": nbytes, "store_mb": nbytes / 2**20, "shards": len(store.shards)}


def child_epoch(work: Path, n: int, threads: int, arch: str) -> dict:
    import torch

    from crystalgnn.config import FeatureConfig, GraphConfig, defaults_for
    from crystalgnn.data.prepared import make_loader, prepare
    from crystalgnn.graphs.sharded import ShardedGraphStore
    from crystalgnn.io import load_dataset
    from crystalgnn.training.module import build_module

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ds = load_dataset(work / "synthetic", [0], max_rows=n)
    prepared = prepare(ds, GraphConfig(), FeatureConfig(), work / f"cache-{n}", workers=1, progress=False, store_mode="mmap")
    del ds
    assert isinstance(prepared.store, ShardedGraphStore) and len(prepared) == n, "run the build phase first"
    cfg = defaults_for("cgcnn")
    if arch:
        from crystalgnn.models.cgcnn import CGCNNConfig

        width, convs, hidden = (int(x) for x in arch.split(","))
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=CGCNNConfig(atom_fea_len=width, n_conv=convs, h_fea_len=hidden)))
    y = prepared.targets
    module = build_module(cfg, y.mean(0), y.std(0))
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    loader = make_loader(prepared, np.arange(n), batch_size=256, shuffle=True)
    t1 = time.perf_counter()
    anon = file_backed = 0
    seen = 0
    module.train()
    for k, batch in enumerate(loader):
        loss = module.objective.loss(module(batch).prediction, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += int(batch.num_graphs)
        if k % 20 == 0:
            anon, file_backed = max(anon, _status_kb("RssAnon")), max(file_backed, _status_kb("RssFile"))
    t2 = time.perf_counter()
    anon, file_backed = max(anon, _status_kb("RssAnon")), max(file_backed, _status_kb("RssFile"))
    return {"n": n, "crystals_seen": seen, "seconds_prepare": t1 - t0, "seconds_epoch": t2 - t1, "crystals_per_s": seen / (t2 - t1),
            "threads": threads, "arch": dataclasses.asdict(cfg.model.arch), "final_loss": float(loss), "peak_rss_mb": image_peak_rss_mb(),
            "max_rss_anon_mb": anon / 1024, "max_rss_file_mb": file_backed / 1024, "shards": len(prepared.store.shards)}


# ------------------------------------------------------------------------- the parent
def _run_child(args: argparse.Namespace, phase: str, n: int, cgroup: Path | None = None, systemd_limit_mb: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--n", str(n), "--work", str(args.work),
           "--workers", str(args.workers), "--threads", str(args.threads), "--arch", args.arch]
    if systemd_limit_mb is not None:
        cmd = ["systemd-run", "--scope", "--quiet", "-p", f"MemoryMax={systemd_limit_mb}M", *cmd]

    def enter_group() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter_group if cgroup else None)
    result: dict = {"returncode": proc.returncode, "wall_s": time.perf_counter() - start,
                    "load_average_at_start": [round(x, 2) for x in load], "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    if proc.returncode == 0:
        result.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    else:
        result["stderr_tail"] = proc.stderr[-2000:]
    return result


def _cgroup(limit_bytes: int) -> tuple[Path | None, str]:
    """A fresh memory cgroup limited to ``limit_bytes``: (folder, kind), or (None, why not)."""
    v1 = Path("/sys/fs/cgroup/memory")
    v2 = Path("/sys/fs/cgroup")
    name = f"crystalgnn-scale-{os.getpid()}"
    try:
        if (v1 / "memory.limit_in_bytes").exists() or (v1 / "cgroup.procs").exists():
            group = v1 / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
            return group, "cgroup v1 memory.limit_in_bytes"
        if (v2 / "cgroup.controllers").exists():
            group = v2 / name
            group.mkdir()
            (group / "memory.max").write_text(str(limit_bytes))
            return group, "cgroup v2 memory.max"
    except OSError as err:
        return None, f"no cgroup ({err})"
    return None, "no cgroup memory controller"


def _group_stats(group: Path) -> dict:
    stats = {}
    for name, key in (("memory.max_usage_in_bytes", "group_peak_mb"), ("memory.peak", "group_peak_mb"), ("memory.failcnt", "failcnt")):
        path = group / name
        if path.exists():
            value = int(path.read_text().split()[0])
            stats[key] = value / 2**20 if key.endswith("_mb") else value
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,500000", help="numbers of crystals (comma-separated)")
    p.add_argument("--phases", default="make,build,epoch,memlimit", help="any of make, build, epoch, memlimit")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "scale", help="synthetic data and caches")
    p.add_argument("--workers", type=int, default=2, help="graph-building processes (2)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the epoch (2)")
    p.add_argument("--arch", default="", metavar="W,C,H",
                   help="CGCNN atom_fea_len,n_conv,h_fea_len of the epoch (default: the reference 64,3,128)")
    p.add_argument("--memlimit-n", type=int, default=0, help="size trained under the memory limit (default: the largest)")
    p.add_argument("--memlimit-mb", type=int, default=0, help="the limit (default: the store's size / 2.2)")
    p.add_argument("--out", default=RESULT_NAME, help=f"results file name under benchmarks/results ({RESULT_NAME})")
    p.add_argument("--redo", action="store_true", help="measure again what the results file holds")
    p.add_argument("--child", choices=["build", "epoch"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        result = child_build(args.work, args.n, args.workers) if args.child == "build" else child_epoch(args.work, args.n, args.threads, args.arch)
        print(json.dumps(result))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    phases = [s.strip() for s in args.phases.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = RESULTS_PATH.with_name(args.out)
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results.setdefault("build", {})
    results.setdefault("epoch", {})
    results["machine"] = machine_info()
    results["synthetic_set"] = ("mp37k structure j mod 36,737, lattice scaled by 1 + U(-0.03, 0.03), atoms moved by N(0, 0.02 Å) "
                                "per axis, rng seed j; label: base formation energy + 2 eV x (scale - 1); P1 CIFs")

    def save() -> None:
        write_results(args.out, results)

    if "make" in phases:
        t = time.perf_counter()
        make_synthetic(args.work, max(sizes))
        print(f"synthetic set of {max(sizes)} ready in {time.perf_counter() - t:.0f} s", flush=True)
    for phase in ("build", "epoch"):
        if phase not in phases:
            continue
        for n in sizes:
            if str(n) in results[phase] and results[phase][str(n)].get("returncode") == 0 and not args.redo:
                continue
            print(f"{phase} n={n} ...", flush=True)
            results[phase][str(n)] = _run_child(args, phase, n)
            r = results[phase][str(n)]
            print(f"  {json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != 'stderr_tail'})}", flush=True)
            if r["returncode"] != 0:
                print(r["stderr_tail"], file=sys.stderr)
            save()
    if "memlimit" in phases and ("memlimit" not in results or args.redo or results["memlimit"].get("returncode") != 0):
        n = args.memlimit_n or max(sizes)
        store_bytes = results["build"].get(str(n), {}).get("store_bytes")
        if not store_bytes:
            raise SystemExit(f"memlimit: build n={n} first (its store size sets the limit)")
        limit = args.memlimit_mb * 2**20 if args.memlimit_mb else int(store_bytes / 2.2)
        group, kind = _cgroup(limit)
        print(f"memlimit n={n}: store {store_bytes / 2**20:.0f} MB, limit {limit / 2**20:.0f} MB ({kind}) ...", flush=True)
        if group is not None:
            r = _run_child(args, "epoch", n, cgroup=group)
            r.update(_group_stats(group))
            group.rmdir()
        else:
            r = _run_child(args, "epoch", n, systemd_limit_mb=limit // 2**20)
        r.update({"limit_mb": limit / 2**20, "limit_kind": kind if group is not None else "systemd-run MemoryMax",
                  "store_mb": store_bytes / 2**20, "store_over_limit": store_bytes / limit, "finished_epoch": r["returncode"] == 0})
        results["memlimit"] = r
        print(f"  {json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != 'stderr_tail'})}", flush=True)
        save()
    _summary(results, sorted({int(n) for phase in ("build", "epoch") for n in results[phase]}))
    save()


def _summary(results: dict, sizes: list[int]) -> None:
    """Ratios between sizes: time per crystal (linear: constant) and peak RSS (flat)."""
    summary = {}
    for phase, rss_key in (("build", "peak_rss_mb"), ("epoch", "peak_rss_mb")):
        done = [n for n in sizes if results[phase].get(str(n), {}).get("returncode") == 0]
        if len(done) < 2:
            continue
        rows = {n: results[phase][str(n)] for n in done}
        seconds = "seconds_total" if phase == "build" else "seconds_epoch"
        summary[phase] = {
            "us_per_crystal": {n: 1e6 * r[seconds] / n for n, r in rows.items()},
            "peak_rss_mb": {n: r[rss_key] for n, r in rows.items()},
            "rss_growth_largest_two": rows[done[-1]][rss_key] / rows[done[-2]][rss_key],
            "time_per_crystal_ratio_largest_two": (rows[done[-1]][seconds] / done[-1]) / (rows[done[-2]][seconds] / done[-2]),
        }
        print(f"{phase}: µs/crystal {', '.join(f'{n}: {v:.0f}' for n, v in summary[phase]['us_per_crystal'].items())}; "
              f"peak RSS MB {', '.join(f'{n}: {v:.0f}' for n, v in summary[phase]['peak_rss_mb'].items())}; "
              f"RSS {done[-2]}→{done[-1]}: x{summary[phase]['rss_growth_largest_two']:.2f}")
    results["summary"] = summary


if __name__ == "__main__":
    main()
