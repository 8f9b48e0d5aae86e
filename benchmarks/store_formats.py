"""How to hold a graph store larger than memory: memory-mapped ``.npy`` shards against LMDB, by one
epoch of batch collation (no model), each way in a fresh process.

Input: the graph cache of ``scale.py``'s synthetic set (``--n`` crystals, default 100,000:
``~/.cache/crystalgnn/scale/cache-<n>``; run ``python benchmarks/scale.py --sizes <n> --phases
make,build`` first). One epoch = every crystal once, in batches of 256, each collated into the
PyG batch training reads (``collate``: atoms, bonds, distances, vectors, offsets).

Ways (each its own process, so its peak RSS, ``VmHWM``, is its own):

* ``memory``: the whole store loaded (``ShardedGraphStore.materialize``), a full shuffle;
* ``mmap-shards``: crystalgnn's view of the memory-mapped shards with its shard-aware shuffle
  (``ShardShuffleSampler``: four shards at a time);
* ``mmap-random``: the same view with a full shuffle (every batch touches ~all shards);
* ``lmdb-random`` / ``lmdb-shards``: one LMDB record per crystal (its arrays' bytes back to back
  after a small header of row counts; ``lmdb`` 3.0, installed by this script into
  ``~/.cache/crystalgnn/lmdb-pkg`` when missing), read with one ``get`` per crystal in a read
  transaction, decoded with ``np.frombuffer`` and collated; in a full shuffle and in the shard-aware
  order. The LMDB file is written once (timed) beside the cache.

The OS page cache is warm for every way (the files were just read or written): this measures CPU
cost per batch and resident memory, not disk speed. Results: ``results/store_formats.json``.

Usage::

    python benchmarks/store_formats.py              # 100,000 crystals
    python benchmarks/store_formats.py --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import image_peak_rss_mb, machine_info, write_results  # noqa: E402

LMDB_PKG = Path.home() / ".cache" / "crystalgnn" / "lmdb-pkg"
WAYS = ("memory", "mmap-shards", "mmap-random", "lmdb-random", "lmdb-shards")


def _lmdb():
    if not (LMDB_PKG / "lmdb").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(LMDB_PKG),
                        "lmdb==3.0.0"], check=True)
    sys.path.insert(0, str(LMDB_PKG))
    import lmdb

    return lmdb


def _view(work: Path, n: int):
    from crystalgnn.config import GraphConfig
    from crystalgnn.graphs.cache import GraphCache
    from crystalgnn.io import load_dataset

    ds = load_dataset(work / "synthetic", [0], max_rows=n)
    view, hit = GraphCache(GraphConfig(), work / f"cache-{n}").view([s.key for s in ds.sources])
    if view is None or not hit.all():
        raise SystemExit(f"the cache of {n} crystals is incomplete: run benchmarks/scale.py --sizes {n} --phases make,build")
    return view


def _record(graph, fields) -> bytes:
    """One crystal's arrays as bytes: row counts per level, then each field's raw bytes."""
    counts = np.array([graph.num_rows(level) for level in ("node", "edge", "line")], dtype=np.int64)
    return counts.tobytes() + b"".join(np.ascontiguousarray(graph.arrays[f.name], dtype=f.dtype).tobytes() for f in fields)


def _decode(blob: bytes, fields, parts):
    from crystalgnn.graphs.crystal_graph import CrystalGraph

    counts = dict(zip(("node", "edge", "line"), np.frombuffer(blob[:24], dtype=np.int64).tolist()))
    arrays, offset = {}, 24
    for f in fields:
        if f.level == "graph":  # one row per crystal: stored as the row itself
            shape = f.shape
        else:
            rows = counts[f.level]
            shape = (rows, *f.shape) if f.row_axis == 0 else (*f.shape, rows)
        count = int(np.prod(shape))
        arrays[f.name] = np.frombuffer(blob, dtype=f.dtype, count=count, offset=offset).reshape(shape)
        offset += count * np.dtype(f.dtype).itemsize
    return CrystalGraph(arrays, parts)


def write_lmdb(work: Path, n: int) -> dict:
    lmdb = _lmdb()
    path = work / f"lmdb-{n}"
    if (path / ".complete").exists():
        return json.loads((path / ".complete").read_text())
    view = _view(work, n)
    start = time.perf_counter()
    env = lmdb.open(str(path), map_size=64 * 2**30, subdir=True, lock=False)
    fields = view.fields
    with env.begin(write=True) as txn:
        for i in range(len(view)):
            txn.put(i.to_bytes(8, "big"), _record(view.graph(i), fields))
    env.sync()
    env.close()
    info = {"seconds_write": time.perf_counter() - start, "bytes": sum(f.stat().st_size for f in path.glob("*.mdb"))}
    (path / ".complete").write_text(json.dumps(info))
    return info


def child(work: Path, n: int, way: str, batch_size: int) -> dict:
    import torch

    from crystalgnn.data.prepared import ShardShuffleSampler, _IndexDataset
    from crystalgnn.graphs.store import GraphStore

    torch.manual_seed(0)
    view = _view(work, n)
    t0 = time.perf_counter()
    if way.endswith("shards"):
        order = np.array(list(ShardShuffleSampler(_IndexDataset(np.arange(n)), view.shard)), dtype=np.int64)
    else:
        order = np.random.default_rng(0).permutation(n)
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    atoms = 0
    if way == "memory":
        store = view.materialize()
        t0 = time.perf_counter()  # loading is not part of the epoch (reported apart)
        for b in batches:
            atoms += store.collate(b).num_nodes
    elif way.startswith("mmap"):
        for b in batches:
            atoms += view.collate(b).num_nodes
    else:
        lmdb = _lmdb()
        env = lmdb.open(str(work / f"lmdb-{n}"), readonly=True, lock=False, readahead=False)
        fields, parts, keys = view.fields, view.parts, view.keys
        with env.begin() as txn:
            for b in batches:
                graphs = [_decode(txn.get(int(i).to_bytes(8, "big")), fields, parts) for i in b]
                atoms += GraphStore.from_graphs(keys[b].tolist(), graphs, parts).collate(np.arange(len(b))).num_nodes
    seconds = time.perf_counter() - t0
    return {"way": way, "n": n, "seconds_epoch": seconds, "batches_per_s": len(batches) / seconds, "atoms": int(atoms),
            "peak_rss_mb": image_peak_rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "scale")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--ways", default=",".join(WAYS))
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.work, args.n, args.child, args.batch_size)))
        return
    results = {"machine": machine_info(), "n": args.n, "batch_size": args.batch_size, "ways": {}}
    results["lmdb_write"] = write_lmdb(args.work, args.n)
    folder = next((args.work / f"cache-{args.n}").glob("graphs-*"))
    results["npy_store_bytes"] = sum(f.stat().st_size for f in folder.rglob("*.npy"))
    for way in args.ways.split(","):
        load = os.getloadavg()
        proc = subprocess.run([sys.executable, __file__, "--child", way, "--n", str(args.n), "--work", str(args.work),
                               "--batch-size", str(args.batch_size)], capture_output=True, text=True)
        if proc.returncode != 0:
            results["ways"][way] = {"error": proc.stderr[-1500:]}
            print(way, "failed:", proc.stderr[-1500:], file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["load_average"] = [round(x, 2) for x in load]
        results["ways"][way] = r
        print(f"{way:12s} epoch {r['seconds_epoch']:7.1f} s  {r['batches_per_s']:6.1f} batches/s  peak RSS {r['peak_rss_mb']:6.0f} MB", flush=True)
    atoms = {r.get("atoms") for r in results["ways"].values() if "atoms" in r}
    results["same_atoms_every_way"] = len(atoms) == 1
    write_results(f"store_formats-{args.n}.json", results)


if __name__ == "__main__":
    main()
