"""``crystalgnn benchmark``: MatBench-style / UnconvBench tasks for every model; ``list`` and ``collect``."""

from __future__ import annotations

import argparse
import sys

HELP = "benchmark models on MatBench-style and UnconvBench tasks (resumable, shardable); list | collect"

DESCRIPTION = """\
Train every (task, model, fold) cell into OUT/runs/<task>/<model>/fold<k>/ and write
OUT/leaderboard.md, leaderboard.csv and charts/<task>.png. A finished cell is never retrained:
rerun the same command to resume a killed study. Split a study over machines with --shard i/N
(each into its own --out, or one shared folder), then merge with `crystalgnn benchmark collect`.

  crystalgnn benchmark --profile quick --out bench/quick                      the quick profile
  crystalgnn benchmark mp_elasticity3k_log10_G --models cgcnn,alignn --out b  one task, 5 folds
  crystalgnn benchmark matbench_* --data-root ~/matbench --out b --shard 0/8  the real MatBench tasks, shard 1 of 8
  crystalgnn benchmark my_task --tasks-file tasks.toml --out b                your own task (README: Benchmarks)
  crystalgnn benchmark list                                                   the tasks and profiles
  crystalgnn benchmark collect b1 b2 b3 --out board                           merge shards into one leaderboard
"""


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser("benchmark", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="TASK",
                   help="task names (a trailing * takes every task it starts), or `list`, or `collect DIR...`")
    p.add_argument("--profile", help="quick or full: a task list, folds and budget (README: Benchmarks)")
    p.add_argument("--models", default="cgcnn,alignn,ocrystalnet,crystograph", help="comma-separated models (default: all four)")
    p.add_argument("--out", "-o", help="study directory (for collect: where the leaderboard goes)")
    p.add_argument("--fold", type=int, action="append", dest="folds", help="run only this fold (repeatable; default: all 5)")
    p.add_argument("--shard", help="i/N: run the i-th of N equal shares of the cells (0-based), for cluster array jobs")
    p.add_argument("--epochs", type=int, help="epochs per run (default: the profile's, else each model's own default)")
    p.add_argument("--minutes", type=float, help="time limit per run in minutes; the best epoch so far is kept (0: none)")
    p.add_argument("--data-root", help="folder holding the tasks' files (default: $CRYSTALGNN_DATA, ./shared/data or ../shared/data)")
    p.add_argument("--tasks-file", help="TOML / YAML / JSON file of your own tasks (README: Benchmarks)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: run one shard per core)")
    p.add_argument("--seed", type=int, default=123, help="training seed of every run (the folds have the protocol's seed)")
    p.add_argument("--val-fraction", type=float,
                   help="share of each training fold held out for validation (default: the protocol's; 0: the fold used whole)")
    p.add_argument("--deterministic", action="store_true", help="bit-identical runs (one thread)")
    p.add_argument("--no-collect", action="store_true", help="do not write the leaderboard after this shard")
    p.add_argument("--progress", action="store_true", help="per-epoch progress bars")
    p.set_defaults(func=run)
    return p


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crystalgnn.benchmark import builtin_tasks, load_task_file, profiles
    from crystalgnn.benchmark.sources import default_data_root

    tasks = builtin_tasks()
    if args.tasks_file:
        tasks.update(load_task_file(args.tasks_file))
    root = args.data_root or default_data_root()
    print(f"data root: {root or '(none found; pass --data-root)'}\n")
    for group, title in (("builtin", "tasks on the shipped data"), ("real", "the published tasks' own files (need them in the data root)")):
        print(f"{title}:")
        for name, t in tasks.items():
            if t.group != group:
                continue
            files = [t.source.archive or p for p in t.source.all_paths()] if t.source.kind != "chains" else []
            present = "" if root is None or all((Path(root) / f).exists() for f in files) else "  [files missing]"
            print(f"  {name:36s} {t.problem[:5]} {t.metric:7s} {t.protocol.kind:11s} ≈ {t.approximates}{present}")
        print()
    for name, spec in profiles().items():
        print(f"profile {name}: {spec['description']}")
    return 0


def run(args: argparse.Namespace) -> int:
    import logging

    from crystalgnn.benchmark import Budget, collect, get_tasks, profile, run_benchmark
    from crystalgnn.benchmark.runner import parse_shard

    logging.getLogger("crystalgnn").setLevel(logging.WARNING)
    items = list(args.items)
    if items[:1] == ["list"]:
        return _list(args)
    if items[:1] == ["collect"]:
        dirs = items[1:]
        if not dirs:
            raise ValueError("collect needs the study directories to merge: crystalgnn benchmark collect DIR... --out DIR")
        board = collect(dirs, args.out or dirs[0], args.data_root)
        print(f"wrote {args.out or dirs[0]}/leaderboard.md ({len(board)} task × model rows)", file=sys.stderr)
        return 0
    chosen = profile(args.profile) if args.profile else {}
    names = items or chosen.get("tasks", [])
    if not names:
        raise ValueError("name the tasks to run (crystalgnn benchmark list shows them) or a --profile")
    if not args.out:
        raise ValueError("give the study directory: --out DIR (rerun with the same one to resume)")
    tasks = get_tasks(names, args.tasks_file)
    budget = Budget(epochs=args.epochs or 0, minutes=args.minutes if args.minutes is not None else float(chosen.get("minutes", 0.0)),
                    epochs_by_model={} if args.epochs else dict(chosen.get("epochs_by_model", {})),
                    arch_by_model=dict(chosen.get("arch_by_model", {})))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    folds = args.folds or chosen.get("folds")
    shard = parse_shard(args.shard)
    results = run_benchmark(tasks, models, args.out, folds=folds, shard=shard, budget=budget, data_root=args.data_root,
                            threads=args.threads, seed=args.seed, deterministic=args.deterministic, val_fraction=args.val_fraction,
                            progress=args.progress)
    print(f"{len(results)} cell(s) finished in {args.out}", file=sys.stderr)
    if not args.no_collect:
        collect([args.out], args.out, args.data_root)
        print(f"leaderboard: {args.out}/leaderboard.md" + (" (this shard's cells; merge shards with `crystalgnn benchmark collect`)"
                                                          if shard[1] > 1 else ""), file=sys.stderr)
    return 0
