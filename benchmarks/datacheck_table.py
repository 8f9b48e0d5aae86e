"""``crystalgnn check`` on the tasks of the hybrid table (issue 13's acceptance): which targets it
flags as extensive, with the same-formula scaling exponent and the correlations behind each verdict.

The data are the hybrid benchmark's own (:func:`hybrid.dataset_for`: the same seeded subsets of
``--max-items``), with the elastic moduli in GPa (the check judges values, not their log10).

Usage::

    python benchmarks/datacheck_table.py                  # the seven tasks, 1,500 crystals each
    python benchmarks/datacheck_table.py --max-items 0    # whole datasets (mp37k: 36,737)

Writes ``benchmarks/results/datacheck-table.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_info, print_table, write_results  # noqa: E402
from hybrid import DATA, EXTENSIVE, dataset_for  # noqa: E402

from crystalgnn.io import load_dataset  # noqa: E402
from crystalgnn.reports.datacheck import check_dataset  # noqa: E402

TASKS = ["volume", "magnetization", "perovskite-heat", "refractive", "elasticity-K", "elasticity-G", "band-gap"]


def data_of(task: str, max_items: int, seed: int):
    if task.startswith("elasticity"):
        return load_dataset(DATA / "mp_elasticity3k", targets=[0 if task.endswith("K") else 1])
    return dataset_for(task, max_items, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="*", help=f"some of {TASKS} (all)")
    parser.add_argument("--max-items", type=int, default=1500, help="random subset of mp37k / perovskite tasks, as the hybrid table (1500)")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--max-comparisons", type=int, default=5000, help="duplicate search comparisons per task")
    parser.add_argument("--results", default="datacheck-table.json")
    args = parser.parse_args()
    results = {"machine": machine_info(), "max_items": args.max_items, "seed": args.seed, "tasks": {}}
    rows = []
    for task in args.tasks or TASKS:
        if task not in TASKS:
            parser.error(f"unknown task {task!r}; choose from {TASKS}")
        start = time.perf_counter()
        report, _ = check_dataset(data_of(task, args.max_items, args.seed), progress=False, max_comparisons=args.max_comparisons)
        (target,) = report.targets
        results["tasks"][task] = {"per_cell_in_table": task in EXTENSIVE, "seconds": round(time.perf_counter() - start, 1),
                                  **report.to_json()}
        exponent = "-" if target.scaling_exponent is None else f"{target.scaling_exponent:.2f}"
        rows.append((task, "extensive" if task in EXTENSIVE else "intensive", target.scaling, exponent, str(target.scaling_pairs),
                     f"{target.corr_natoms['spearman']:.2f}", f"{target.corr_volume['spearman']:.2f}", target.scaling_reason[:60]))
        print(f"{task}: {target.scaling}", flush=True)
    print_table(rows, ("task", "table says", "check says", "exponent", "pairs", "ρ atoms", "ρ volume", "reason"))
    write_results(args.results, results)


if __name__ == "__main__":
    main()
