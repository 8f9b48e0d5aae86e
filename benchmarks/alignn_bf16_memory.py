"""Why bf16-mixed ALIGNN used more memory than fp32 on the CPU, and the fix.

Cause (measured here): glibc's malloc raises its mmap threshold to the size of each mapped block
freed, up to 32 MiB. After the first large tensor is freed, tensors of up to that size come from
the heap instead of their own mapping, and a heap of blocks of ever-different sizes (every batch
has its own atom, bond and pair counts; bf16-mixed adds bfloat16 copies half the size of the
float32 tensors beside them) fragments and grows. ``CRYSTALGNN_MMAP_THRESHOLD=1048576`` makes
training fix the threshold at 1 MiB (``crystalgnn.training.trainer.fix_heap_threshold``, opt-in:
it costs time, every tensor of 1 MiB and more being mapped and zeroed anew).

Two parts, each measurement in its own process (peak RSS = ``ru_maxrss``):

* ``repro``: one ``nn.Linear(64, 64)`` forward + backward under bfloat16 autocast (and in
  float32) on ``--shapes`` inputs of a different row count each (60,000 + 37 k rows, as batches
  of bond pairs), with glibc's default threshold and with the fixed one: RSS growth per shape;
* ``train`` (``--train``): our ALIGNN through ``benchmarks/alignn_peer.py --only ours`` at
  width 64 (``--hidden``), fp32 and bf16-mixed, default and fixed threshold: peak RSS, training
  time, test MAE.

Usage::

    python benchmarks/alignn_bf16_memory.py                     # repro only, about a minute
    python benchmarks/alignn_bf16_memory.py --train             # + 4 training runs (1,600 crystals, 5 epochs)

Results: ``benchmarks/results/alignn-bf16-memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info, print_table, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent

_REPRO = r"""
import json, os, resource, sys, time
import torch
from crystalgnn.training.trainer import fix_heap_threshold
torch.set_num_threads(1)
threshold = fix_heap_threshold()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
bf16 = sys.argv[1] == "bf16"
shapes = int(sys.argv[2])
torch.manual_seed(0)
layer = torch.nn.Linear(64, 64)
start = rss()
begin = time.process_time()
for k in range(shapes):
    x = torch.randn(60000 + 37 * k, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    y.float().square().sum().backward()
print(json.dumps({"rss_start_mb": start, "rss_end_mb": rss(), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "growth_per_shape_mb": (rss() - start) / shapes, "cpu_seconds": time.process_time() - begin,
                  "mmap_threshold_set": threshold}))
"""


def env_for(fixed: bool) -> dict[str, str]:
    src = str(HERE.parent / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "CRYSTALGNN_MMAP_THRESHOLD": "1048576" if fixed else "0",
            "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def repro(shapes: int) -> list[dict]:
    rows = []
    for precision in ("fp32", "bf16"):
        for fixed in (False, True):
            done = subprocess.run([sys.executable, "-c", _REPRO, precision, str(shapes)], env=env_for(fixed),
                                  capture_output=True, text=True, check=True)
            row = {"precision": precision, "heap_threshold": "fixed 1 MiB" if fixed else "glibc default",
                   **json.loads(done.stdout.strip().splitlines()[-1]), "load_avg": os.getloadavg()}
            print(f"repro {precision} {row['heap_threshold']}: RSS +{row['growth_per_shape_mb']:.2f} MB per shape, "
                  f"peak {row['peak_rss_mb']:.0f} MB", flush=True)
            rows.append(row)
    return rows


def train(args: argparse.Namespace) -> list[dict]:
    rows = []
    size = f"h{args.hidden}-l4+4-e{args.epochs}-n{args.max_items}"
    for precision in ("32", "bf16-mixed"):
        for fixed in (False, True):
            command = [sys.executable, str(HERE / "alignn_peer.py"), "--only", "ours", "--hidden", str(args.hidden),
                       "--epochs", str(args.epochs), "--max-items", str(args.max_items), "--norm", "batch",
                       "--threads", "1", "--precision", precision]
            load_before = os.getloadavg()
            subprocess.run(command, env=env_for(fixed), check=True, stdout=subprocess.DEVNULL)
            side = json.loads((RESULTS / "alignn_peer" / f"ours-alignn-{size}-{precision}.json").read_text())
            row = {"precision": precision, "heap_threshold": "fixed 1 MiB" if fixed else "glibc default",
                   "command": " ".join(command[1:]), "peak_rss_mb": side["peak_rss_mb"], "train_seconds": side["train_seconds"],
                   "train_crystals_per_s": side["train_crystals_per_s"], "total_seconds": side["total_seconds"],
                   "test_mae": side["test_mae"], "load_avg_before": load_before, "load_avg_after": os.getloadavg()}
            print(f"train {precision} {row['heap_threshold']}: peak RSS {row['peak_rss_mb']:.0f} MB, "
                  f"training {row['train_seconds']:.0f} s, test MAE {row['test_mae']:.4f}", flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=120, help="distinct row counts in the repro")
    parser.add_argument("--train", action="store_true", help="also the four ALIGNN training runs")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-items", type=int, default=1600)
    args = parser.parse_args()
    results: dict = {"machine": machine_info(), "settings": vars(args), "repro": repro(args.shapes)}
    if args.train:
        results["train"] = train(args)
        print_table([(r["precision"], r["heap_threshold"], f"{r['peak_rss_mb']:,.0f}", f"{r['train_seconds']:.0f}",
                      f"{r['test_mae']:.4f}") for r in results["train"]],
                    ("precision", "mmap threshold", "peak RSS (MB)", "training (s)", "test MAE"))
    print(f"written {write_results('alignn-bf16-memory.json', results)}")


if __name__ == "__main__":
    main()
