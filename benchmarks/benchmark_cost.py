"""Expected CPU cost of a benchmark profile, from the training speed measured in a finished study.

Each finished cell of the measured study (``cell.json``) gives its model's speed in atom-epochs
per second (training-fold atoms × epochs run / wall seconds; the wall time includes validation,
prediction and, on a cold cache, graph building, so the estimate errs high). The profile's cost
is then Σ over its cells of training atoms × epochs / speed, with each model's epochs from the
profile (or the model's own default when the profile gives none).

    python benchmarks/benchmark_cost.py --study benchmarks/results/benchmark/quick --profile full
    python benchmarks/benchmark_cost.py --study ... --profile full --shards 16   # wall time on 16 machines
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import RESULTS, write_results  # noqa: E402


def mean_atoms(task) -> tuple[int, float]:
    """(items, mean atoms per cell) of a task's dataset (atom counts cached after the first call)."""
    from crystalgnn.benchmark.sources import atom_counts, load_task_data

    data = load_task_data(task)
    return len(data), float(np.mean(atom_counts(data)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(RESULTS / "benchmark" / "quick"), help="a finished study directory (its cells give the speeds)")
    parser.add_argument("--profile", default="full", help="the profile to cost")
    parser.add_argument("--shards", type=int, default=1, help="machines (one core each) sharing the cells")
    parser.add_argument("--skip", action="append", default=[], help="tasks to leave out of the estimate (e.g. the QMOF ones)")
    parser.add_argument("--atoms", action="append", default=[], metavar="TASK=N:MEAN",
                        help="a task's item count and mean atoms per cell instead of reading its structures (e.g. "
                             "qmof20k_band_gap=20374:113.5 from the data README: parsing 20k MOFs costs minutes)")
    parser.add_argument("--alignn-width-factor", type=float, default=5.2,
                        help="cost of ALIGNN at the paper's width 256 over the quick profile's width 64 (5.2: 2 epochs of "
                             "matminer2018_refractive_index fold 0 took 404 s against 78 s, side by side on this machine)")
    args = parser.parse_args()
    from crystalgnn.benchmark import get_tasks, profile
    from crystalgnn.config import defaults_for

    cells = [json.loads(p.read_text()) for p in Path(args.study).rglob("cell.json")]
    sizes: dict[str, tuple[int, float]] = {}
    for given in args.atoms:
        name, numbers = given.split("=")
        n, mean = numbers.split(":")
        sizes[name] = (int(n), float(mean))
    speed: dict[str, list[float]] = {}
    for c in cells:
        from crystalgnn.benchmark import get_task

        if c["task"] not in sizes:
            sizes[c["task"]] = mean_atoms(get_task(c["task"]))
        if c.get("epochs_run") and c.get("wall_seconds"):
            speed.setdefault(c["model"], []).append(c["n_train"] * sizes[c["task"]][1] * c["epochs_run"] / c["wall_seconds"])
    rate = {m: float(np.median(v)) for m, v in speed.items()}
    spec = profile(args.profile)
    quick_arch = profile("quick").get("arch_by_model", {})
    if "alignn" in rate and quick_arch.get("alignn") and not spec.get("arch_by_model", {}).get("alignn"):
        rate["alignn"] /= args.alignn_width_factor  # the study ran ALIGNN narrower than the costed profile does
    rows, total = [], 0.0
    for task in get_tasks([t for t in spec["tasks"] if t not in args.skip]):
        if task.name not in sizes:
            sizes[task.name] = mean_atoms(task)
        n, atoms = sizes[task.name]
        n_train = n * (task.protocol.n_folds - 1) / task.protocol.n_folds
        for model, r in sorted(rate.items()):
            epochs = spec.get("epochs_by_model", {}).get(model) or defaults_for(model).train.epochs
            hours = len(spec["folds"]) * n_train * atoms * epochs / r / 3600
            total += hours
            rows.append({"task": task.name, "model": model, "items": n, "atoms_per_cell": round(atoms, 1), "epochs": epochs,
                         "core_hours": round(hours, 2)})
    for r in rows:
        print(f"{r['task']:34s} {r['model']:12s} {r['items']:6d} crystals × {r['atoms_per_cell']:6.1f} atoms × {r['epochs']:4d} epochs "
              f"× {len(spec['folds'])} folds: {r['core_hours']:9.2f} core-h")
    print("speeds (atom-epochs/s, median over the study's cells): " + ", ".join(f"{m} {v:.0f}" for m, v in sorted(rate.items())))
    print(f"total {total:.1f} core-hours; on {args.shards} shard(s) of one core: {total / args.shards:.1f} h wall")
    write_results(f"benchmark-cost-{args.profile}.json", {"study": args.study, "profile": args.profile, "speeds": rate, "rows": rows,
                                                      "core_hours": total, "skipped": args.skip})
    return 0


if __name__ == "__main__":
    sys.exit(main())
