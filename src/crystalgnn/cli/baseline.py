"""``crystalgnn baseline``: random forest on structural descriptors and/or composition."""

from __future__ import annotations

import argparse
import dataclasses

from crystalgnn.cli.common import add_data_args, split_fractions

HELP = "random forest on structural descriptors and/or composition (same split as train)"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    bl = sub.add_parser("baseline", help=HELP,
                        description="Fit a random forest on hand-made features: the Gong et al. structural descriptors "
                                    "('descriptors + RF'), Magpie composition statistics, or both. The same reader, checks and "
                                    "split as 'crystalgnn train' with the same --seed/--split, so its test metrics compare directly "
                                    "with a network run. Writes metrics.json, predictions_<split>.csv, parity.png, feature_importance.csv.")
    bl.add_argument("data", help="dataset path (same layouts as train)")
    bl.add_argument("--run-dir", required=True, help="output folder")
    add_data_args(bl)
    bl.add_argument("--features", choices=["descriptors", "composition", "both"], default="descriptors", help="forest inputs (descriptors)")
    bl.add_argument("--descriptors", metavar="NAMES", help="comma-separated descriptor names (default: all but the space group number)")
    bl.add_argument("--trees", type=int, default=300, help="number of trees (300)")
    bl.add_argument("--task", choices=["regression", "classification"], default=None)
    bl.add_argument("--per-atom", action="store_true", default=None, help="fit target / atoms, report per cell")
    bl.add_argument("--seed", type=int, help="split and forest seed (123)")
    bl.add_argument("--split", help="train,val,test fractions (0.6,0.2,0.2)")
    bl.add_argument("--split-file", help="CSV of id,split instead of fractions")
    bl.add_argument("--quiet", action="store_true", help="no progress bars")
    bl.set_defaults(func=run)
    return bl


def run(args: argparse.Namespace) -> int:
    from crystalgnn.baselines import ForestConfig, train_forest
    from crystalgnn.config import RunConfig, replace
    from crystalgnn.training.hybrid import resolve_descriptor_names

    cfg = RunConfig()
    cfg = dataclasses.replace(
        cfg,
        data=replace(cfg.data, targets=tuple(args.targets) if args.targets else None, transform=args.transform,
                     on_error=args.on_error, per_atom=args.per_atom),
        model=replace(cfg.model, task=args.task),
        train=replace(cfg.train, seed=args.seed, split_fractions=split_fractions(args.split), split_file=args.split_file),
    )
    features = ("descriptors", "composition") if args.features == "both" else (args.features,)
    forest = ForestConfig(features=features, descriptors=resolve_descriptor_names(args.descriptors) if args.descriptors else (), n_estimators=args.trees)
    cache = None if args.no_cache else args.cache_dir
    result = train_forest(args.data, args.run_dir, cfg, forest, cache_dir=cache, workers=args.workers, progress=not args.quiet)
    print(result.summary())
    return 0
