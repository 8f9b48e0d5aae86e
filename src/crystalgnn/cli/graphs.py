"""``crystalgnn graphs DATA [--shard i/N]`` and ``crystalgnn graphs merge DEST SRC...``: build a
dataset's graphs into the cache ahead of training (one slice per cluster array job), and merge the
caches the slices were built into."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "build the graphs of a dataset into the cache (a slice of it with --shard i/N), or merge caches built apart"

DESCRIPTION = """\
Build the graphs a model trains on into the graph cache, before training: `crystalgnn train` then
finds them there. Building streams: a few thousand crystals are read and built, written as one
shard of the cache and dropped before the next ones, so memory does not grow with the dataset.

  crystalgnn graphs DATA [--model alignn] [graph flags] [--cache-dir DIR]
  crystalgnn graphs DATA --shard 3/16 --cache-dir /scratch/graphs-3     one slice, e.g. per array job
  crystalgnn graphs merge SHARED_CACHE /scratch/graphs-*                 one cache from the slices'

--shard i/N takes the i-th of N contiguous slices of DATA's items (0-based). The graph settings
are those `crystalgnn train` would use with the same --model and flags (the cache folder's name is
their hash, so a training run with other settings does not see these graphs). Items that cannot be
built (unreadable file, partial occupancy, isolated atom, ...) are listed with the reason in
--report (default graph_problems.csv, or graph_problems_<i>of<N>.csv with --shard), and so are,
in slice 0's report, the items the reader could not use (a structure file that is missing).

merge: every graphs-<key> folder of every SRC cache joins the folder of the same key under DEST;
graphs already there are skipped. Run it once all slices have finished.
"""


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser("graphs", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="dataset path (as for train), or 'merge' followed by DEST and the SRC caches")
    p.add_argument("paths", nargs="*", help="merge: DEST SRC [SRC ...] (cache folders)")
    if full:
        from crystalgnn.cli.common import add_model_choice

        add_model_choice(p, help_tail="; its reference graph settings")
    p.add_argument("--config", help="the graph settings of a run's config.json instead of --model's defaults")
    p.add_argument("--graph-strategy", choices=["radius", "knn", "nearest"], help="as for train")
    p.add_argument("--cutoff", type=float, help="neighbour search radius in Å (as for train)")
    p.add_argument("--max-neighbors", type=int, help="neighbours per atom (as for train)")
    p.add_argument("--line-graph", action=argparse.BooleanOptionalAction, default=None, help="also build the line graph (as for train)")
    p.add_argument("--atom-features", metavar="FEATURES", help="atom inputs (as for train: ofm needs per-site sums built with the graph)")
    p.add_argument("--shard", metavar="i/N", help="build only the i-th of N contiguous slices of the items (0-based)")
    p.add_argument("--shard-size", type=int, default=4096, help="crystals per cache shard file (4096)")
    p.add_argument("--cache-dir", default="default", help="graph cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--workers", type=int, default=0, help="processes that build graphs (0: one per core)")
    p.add_argument("--report", help="CSV listing the items that could not be built (id, stage, reason)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _graph_config(args: argparse.Namespace):
    from crystalgnn.config import RunConfig, defaults_for, replace

    base = RunConfig.load(args.config) if args.config else defaults_for(getattr(args, "model", None) or "cgcnn")
    cfg = replace(base, graph=replace(base.graph, strategy=args.graph_strategy, cutoff=args.cutoff,
                                      max_neighbors=args.max_neighbors, line_graph=args.line_graph),
                  features=replace(base.features, atom_features=args.atom_features))
    return cfg.graph_inputs()


def run(args: argparse.Namespace) -> int:
    if args.data == "merge":
        return _merge(args)
    if args.paths:
        raise SystemExit(f"crystalgnn graphs: unexpected arguments {' '.join(args.paths)} (only 'merge' takes more paths)")
    from crystalgnn.benchmark.runner import parse_shard
    from crystalgnn.errors import write_problems
    from crystalgnn.graphs.cache import GraphCache, build_graphs
    from crystalgnn.io.resolve import resolve_dataset
    from crystalgnn.paths import resolve_cache_dir

    index, count = parse_shard(args.shard)
    root = resolve_cache_dir(args.cache_dir)
    graph = _graph_config(args)
    start = time.perf_counter()
    dataset = resolve_dataset(args.data, targets=[])
    n = len(dataset.ids)
    lo, hi = index * n // count, (index + 1) * n // count
    ids, sources = dataset.ids[lo:hi], dataset.sources[lo:hi]
    # items the reader could not use (a missing file, ...) are in no slice: the first reports them
    unread = list(dataset.problems) if index == 0 else []
    del dataset  # only this slice's sources are kept
    cache = GraphCache(graph, root, args.shard_size)
    cached = int((cache.index([s.key for s in sources])[1] >= 0).sum())
    _, ok, problems = build_graphs(ids, sources, graph, root, args.workers, not args.quiet, store="mmap", shard_size=args.shard_size)
    seconds = time.perf_counter() - start
    where = f" (slice {index}/{count}: items {lo}..{hi - 1} of {n})" if count > 1 else ""
    unreadable = f", {len(unread)} left out by the reader" if unread else ""
    print(f"{len(ids)} item(s){where}: {int(ok.sum()) - cached} graph(s) built, {cached} already cached, "
          f"{len(problems)} unusable{unreadable}, in {seconds:.1f} s; cache folder {cache.folder}")
    problems = unread + problems
    if problems:
        report = Path(args.report or (f"graph_problems_{index}of{count}.csv" if count > 1 else "graph_problems.csv"))
        write_problems(problems, report)
        print(f"the {len(problems)} unusable item(s) and why: {report}", file=sys.stderr)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from crystalgnn.graphs.cache import merge_caches

    if len(args.paths) < 2:
        raise SystemExit("crystalgnn graphs merge DEST SRC [SRC ...]: name the cache to merge into and at least one to merge")
    destination, *sources = args.paths
    counts = merge_caches(destination, sources)
    print(f"merged {len(sources)} cache(s) into {destination}: {counts['graphs']} graph(s) in {counts['shards']} shard(s) added "
          f"to {counts['folders']} graph folder(s), {counts['duplicates']} already there")
    return 0
