"""``crystalgnn importance``: feature importance and representation R² of a trained run."""

from __future__ import annotations

import argparse
import json

HELP = "feature importance and representation R² of a trained run (Gong et al. Fig. 4c, S6a)"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    im = sub.add_parser("importance", help=HELP,
                        description="Fit a random forest on [pooled representation + descriptors] of a trained run (its data and split) "
                                    "and report the importance of each input and the share held by the descriptors; and the test R² of "
                                    "linear regressions from the representation to each descriptor, also for a plain run given with --plain.")
    im.add_argument("run_dir", help="trained run (plain or with --descriptors)")
    im.add_argument("--plain", metavar="RUN_DIR", help="a plain run of the same data and seed, for the representation-R² comparison")
    im.add_argument("--data", help="dataset (default: the one the run was trained on)")
    im.add_argument("--out", help="output folder (default: RUN_DIR/analysis)")
    im.add_argument("--trees", type=int, default=300, help="random-forest trees (300)")
    im.add_argument("--cache-dir", default="default", help="graph and descriptor cache folder")
    im.add_argument("--quiet", action="store_true", help="no progress bars")
    im.set_defaults(func=run)
    return im


def run(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.importance import analyse_run

    summary = analyse_run(args.run_dir, args.out, args.plain, args.data, args.trees, args.cache_dir, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0
