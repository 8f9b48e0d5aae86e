"""``crystalgnn probe``: the learnability probe of Gong et al. (Fig. 2)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from crystalgnn.cli.common import add_model_args, add_model_choice, model_config_from_args

HELP = "learnability probe: test R² of the model on each structural descriptor (Gong et al. Fig. 2)"


def add_parser(sub, full: bool = True) -> argparse.ArgumentParser:
    pb = sub.add_parser("probe", help=HELP,
                        description="Train the model to predict each structural descriptor (80/10/10), classify the crystal system, "
                                    "and compare with a composition-only random forest. Writes probe.csv, probe.json and probe_r2.png "
                                    "(local vs global descriptors). By default the paper's low-symmetry-biased subset is used: each "
                                    "structure is removed with probability sg/(sg+15).")
    pb.add_argument("data", help="structures (any dataset layout; targets are ignored)")
    pb.add_argument("--out", required=True, help="output folder")
    if full:  # the registry imports the model files (torch): only for the command being run
        add_model_choice(pb, default="cgcnn", help_tail=": the model to probe")
    pb.add_argument("--descriptors", metavar="NAMES", help="comma-separated descriptors to probe (default: all but the crystal system)")
    pb.add_argument("--max-structures", type=int, default=0, help="random subset of this size after the low-symmetry filter (0: all)")
    pb.add_argument("--all-symmetries", action="store_true", help="skip the low-symmetry-biased subset")
    pb.add_argument("--separate", action="store_true", help="one model per descriptor (the paper's way; N× the cost) instead of one multi-output model")
    pb.add_argument("--no-crystal-system", action="store_true", help="skip the crystal-system classification")
    pb.add_argument("--no-composition", action="store_true", help="skip the composition-only baseline")
    pb.add_argument("--epochs", type=int, default=None, help="training epochs (100)")
    pb.add_argument("--batch-size", type=int, default=None, help="crystals per batch (256)")
    pb.add_argument("--seed", type=int, default=123, help="seed of the subset, split and training (123)")
    pb.add_argument("--threads", type=int, default=None, help="torch CPU threads (0: all cores)")
    pb.add_argument("--cache-dir", default="default", help="graph and descriptor cache folder")
    pb.add_argument("--workers", type=int, default=0, help="processes for graphs and descriptors (0: one per core)")
    pb.add_argument("--quiet", action="store_true", help="no progress bars")
    if full:
        add_model_args(pb)
    pb.set_defaults(func=run)
    return pb


def run(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.probe import ProbeSettings, run_probe
    from crystalgnn.config import replace
    from crystalgnn.training.hybrid import resolve_descriptor_names

    cfg = model_config_from_args(args)
    cfg = dataclasses.replace(cfg, train=replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, threads=args.threads))
    settings = ProbeSettings(
        descriptors=resolve_descriptor_names(args.descriptors) if args.descriptors else (),
        low_symmetry=not args.all_symmetries, max_structures=args.max_structures, seed=args.seed, joint=not args.separate,
        crystal_system=not args.no_crystal_system, composition_baseline=not args.no_composition,
    )
    table = run_probe(args.data, args.out, settings, cfg, cache_dir=args.cache_dir, workers=args.workers, progress=not args.quiet)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print((Path(args.out) / "probe.json").read_text())
    return 0
