"""Peak memory of CrysToGraph's graph-wise transformer on QMOF-sized batches: our per-crystal
attention (scores Σ N² per head) against a dense attention over the whole batch with a
block-diagonal mask (scores (Σ N)² per head, the reference's ``tg_batch_to_batch_edge_index``
mask), in the same script.

Batches of 8, 32 and 128 crystals are drawn (seed 0) from the atom counts of 1,000 QMOF MOFs
(mean about 114 atoms, up to 500); every atom gets 12 bonds to atoms of its own crystal. One GwT
layer at the paper's size (width 256, 8 heads of 32, bonds 76) runs forward and backward. Each
(method, batch) runs in a fresh subprocess, whose peak RSS above its RSS just before the forward
pass is the figure; the dense method runs under an address-space limit (``--limit-gb``, 12) so
that a batch it cannot hold fails cleanly instead of swapping the machine, and the memory its
score matrix alone would need is printed beside it.

    python benchmarks/gwt_memory.py            # writes benchmarks/results/gwt_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DEFAULT_DATA_CACHE, RESULTS, current_rss_mb, machine_info, peak_rss_mb  # noqa: E402

BATCHES = (8, 32, 128)
WIDTH, EDGE_WIDTH, HEADS, HEAD_DIM = 256, 76, 8, 32


def qmof_atom_counts(data_cache: Path, n: int = 1000) -> list[int]:
    """Atoms per cell of ``n`` QMOF MOFs (seed 0), counted once and kept beside the extracted data."""
    from crystograph import extracted_qmof

    folder = extracted_qmof(data_cache)
    path = folder / f"atom_counts_{n}.json"
    if path.exists():
        return json.loads(path.read_text())
    import numpy as np
    import pandas as pd

    from crystalgnn.structures.parse import parse_structure

    ids = pd.read_csv(folder / "id_prop.csv")["id"].tolist()
    chosen = [ids[k] for k in np.random.default_rng(0).choice(len(ids), size=n, replace=False)]
    counts = [len(parse_structure(folder / "structures" / f"{i}.cif")) for i in chosen]
    path.write_text(json.dumps(counts))
    return counts


def dense_masked_attention(q, k, v, sizes):
    """Attention over all Σ N atoms of the batch, other crystals masked out: (Σ N)² scores per head."""
    import torch

    crystal = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    scores = torch.einsum("ihd,jhd->hij", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill((crystal[:, None] != crystal[None, :]).unsqueeze(0), float("-inf"))
    return torch.einsum("hij,jhd->ihd", torch.softmax(scores, dim=-1), v)


def measure(method: str, sizes: list[int]) -> dict[str, float]:
    """Forward + backward of one GwT layer on a batch of crystals of ``sizes`` atoms (this process)."""
    import torch

    from crystalgnn.models import crystograph

    torch.manual_seed(0)
    torch.set_num_threads(1)
    n = sum(sizes)
    size_t = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), size_t)
    offsets = torch.cumsum(size_t, 0) - size_t
    target = torch.arange(n).repeat_interleave(12)
    crystal_of_target = batch[target]
    source = offsets[crystal_of_target] + (torch.rand(len(target)) * size_t[crystal_of_target]).long()
    layer = crystograph.GraphWiseTransformer(WIDTH, EDGE_WIDTH, HEADS, HEAD_DIM, "attention")
    x = torch.randn(n, WIDTH, requires_grad=True)
    e = torch.randn(len(target), EDGE_WIDTH)
    if method == "dense":
        crystograph.crystal_attention = dense_masked_attention  # the layer looks the function up when it runs
    before = current_rss_mb() or 0.0
    start = time.perf_counter()
    layer(x, batch, size_t, torch.stack([source, target]), e).square().sum().backward()
    seconds = time.perf_counter() - start
    return {"atoms": n, "peak_above_start_mb": round(peak_rss_mb() - before, 1), "seconds": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit-gb", type=float, default=12.0, help="address-space limit of a dense run (12)")
    parser.add_argument("--data-cache", type=Path, default=DEFAULT_DATA_CACHE)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)  # internal: METHOD SIZES-JSON
    args = parser.parse_args()
    if args.child:
        method, sizes = args.child[0], json.loads(args.child[1])
        if method == "dense":
            limit = int(args.limit_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            print(json.dumps(measure(method, sizes)))
        except (MemoryError, RuntimeError) as err:
            print(json.dumps({"atoms": sum(sizes), "failed": str(err).splitlines()[0][:200]}))
        return
    import numpy as np

    counts = np.array(qmof_atom_counts(args.data_cache))
    rows = []
    for size in BATCHES:
        sizes = [int(c) for c in np.random.default_rng(0).choice(counts, size=size, replace=False)]
        n = sum(sizes)
        for method in ("per-crystal", "dense"):
            proc = subprocess.run([sys.executable, __file__, "--limit-gb", str(args.limit_gb), "--child", method, json.dumps(sizes)],
                                  capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"atoms": n, "failed": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
            result.update({"method": method, "batch": size, "max_atoms": max(sizes),
                           "scores_per_head_entries": sum(s * s for s in sizes) if method == "per-crystal" else n * n,
                           "one_score_tensor_mb": round(HEADS * (sum(s * s for s in sizes) if method == "per-crystal" else n * n) * 4 / 2**20, 1)})
            rows.append(result)
            shown = f"{result['peak_above_start_mb']:9.1f} MB  {result['seconds']:7.3f} s" if "peak_above_start_mb" in result else f"failed: {result['failed']}"
            print(f"batch {size:4d} ({n:6d} atoms, largest {max(sizes):3d})  {method:12s} {shown}   "
                  f"(one score tensor: {result['one_score_tensor_mb']:.1f} MB)", flush=True)
    path = RESULTS / "gwt_memory.json"
    path.write_text(json.dumps({"rows": rows, "machine": machine_info(), "limit_gb": args.limit_gb}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
