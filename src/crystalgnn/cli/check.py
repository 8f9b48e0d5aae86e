"""``crystalgnn check``: what a model will and will not see in a dataset, before training."""

from __future__ import annotations

import argparse

from crystalgnn.cli.common import add_data_args

HELP = "check a dataset before training: target distribution, outliers, duplicates, extensive targets, cell sizes"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    ck = sub.add_parser("check", help=HELP,
                        description="Report, per target: its distribution and robust outliers; whether it scales with cell size "
                                    "(same-formula scaling exponent, correlations with atoms and volume), with the advice that "
                                    "follows (--per-atom or --pooling sum for an extensive target, --transform log10 for a "
                                    "heavy-tailed positive one); identical structures with different labels; and the share of "
                                    "crystals with a lattice vector longer than the graph cutoff. Writes check.txt, check.json "
                                    "and check.png to --out. Nothing is changed: pass the advised flags to 'crystalgnn train'.")
    ck.add_argument("data", help="dataset path (same layouts as train)")
    ck.add_argument("--out", default="check", help="folder of the report (check)")
    add_data_args(ck)
    ck.add_argument("--cutoff", type=float, help="graph cutoff in Å the cell sizes are compared with (CGCNN's 8)")
    ck.add_argument("--no-duplicates", action="store_true", help="skip the structure matching (the slowest part on large sets)")
    ck.add_argument("--max-comparisons", type=int, default=20000, help="structure comparisons of the duplicate search at most (20000)")
    ck.add_argument("--quiet", action="store_true", help="no progress bars")
    ck.set_defaults(func=run)
    return ck


def run(args: argparse.Namespace) -> int:
    from crystalgnn.errors import write_problems
    from crystalgnn.reports.datacheck import check_dataset, write_check

    if args.transform not in (None, "none"):
        raise ValueError("check judges the values as they are in the file; drop --transform (it advises one where it helps)")
    cache = None if args.no_cache else args.cache_dir
    report, prepared = check_dataset(args.data, tuple(args.targets or ()), args.cutoff, cache, args.workers, not args.quiet,
                                     duplicates=not args.no_duplicates, max_comparisons=args.max_comparisons)
    out = write_check(report, prepared, args.out)
    if prepared.problems:
        write_problems(prepared.problems, out / "skipped.csv")
    print(report.summary())
    print(f"report: {out / 'check.txt'}, {out / 'check.json'}, {out / 'check.png'}" +
          (f"; unusable items: {out / 'skipped.csv'}" if prepared.problems else ""))
    return 0
