"""Command line: ``crystalgnn check | train | predict | evaluate | pretrain | featurize | baseline | probe |
periodicity | importance | graphs | cache``. One module per command, each ``add_parser(subparsers)`` + ``run(args)``; the
modules parse arguments and call the library, nothing more. ``crystalgnn COMMAND --help``
explains each."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

DESCRIPTION = """\
crystalgnn: graph neural networks for crystal properties (CGCNN, ALIGNN, ... on one cached, fast core).

  crystalgnn check DATA --target NAME                      what a model will not see: extensive target, outliers, ...
  crystalgnn train DATA --target NAME --run-dir runs/x     train, write a run directory (--model alignn, ...)
  crystalgnn train --resume runs/x                         continue a killed run
  crystalgnn predict runs/x new_cifs/ -o predictions.csv   predict new structures
  crystalgnn evaluate runs/x labelled_data/                metrics of a run on labelled data
  crystalgnn graphs DATA [--shard i/N]                     build the graphs ahead of training (a slice per cluster job)
  crystalgnn graphs merge DEST SRC...                      one cache from caches built apart
  crystalgnn cache list | prune | clear                    the graph and descriptor cache

Benchmarks and ready-trained models:
  crystalgnn benchmark --profile quick --out bench/quick   every model on MatBench-style / UnconvBench tasks
  crystalgnn benchmark list                                the tasks (yours too: --tasks-file)
  crystalgnn zoo list                                      models trained here, for data without labels
  crystalgnn predict zoo:formation_energy my.cif           predict with one of them

CrysToGraph (masked-atom pretraining of an element embedding, for any model):
  crystalgnn pretrain DATA --run-dir runs/pre              learn element vectors from structures alone
  crystalgnn train DATA -t NAME --run-dir d --atom-features cgcnn+pretrained:runs/pre

Gong et al. (descriptors, learnability, periodicity):
  crystalgnn featurize DATA -o descriptors.csv              structural descriptor bank
  crystalgnn train DATA -t NAME --run-dir d --descriptors   de-CGCNN (Eq. 14); --hybrid frozen: Eq. S5;
                                                          --hybrid stacked | blend | blend-plain: forest + network
  crystalgnn baseline DATA -t NAME --run-dir rf             random forest on descriptors / composition
  crystalgnn probe DATA --out probe/                        R² of the model on each descriptor (Fig. 2)
  crystalgnn periodicity --out periodicity/                 1D chain study (Fig. 3e-h, S3)
  crystalgnn importance runs/de --plain runs/plain          feature importance, representation R² (Fig. 4c, S6a)

DATA is a CGCNN folder (id_prop.csv + <id>.cif), an ALIGNN folder (POSCAR files), a CSV(.gz)
with a CIF column, a MatBench-style JSON(.gz), an extxyz file, or a generated dataset
'chains:short' / 'chains:long' (1D carbon chains of Gong et al., target 'a').
"""

#: Command modules, in the order of ``crystalgnn --help``.
COMMANDS = ("check", "train", "predict", "evaluate", "benchmark", "zoo", "pretrain", "featurize", "baseline", "probe", "periodicity", "importance",
            "graphs", "cache")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. Only ``command``'s parser is built in full (the others get their
    one-line help): the model options come from the registry, which imports every model file
    (torch), and some descriptions list what heavy modules define, so ``crystalgnn --help`` and
    ``crystalgnn predict`` import only what they use."""
    import importlib

    parser = argparse.ArgumentParser(prog="crystalgnn", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="more log output")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"crystalgnn.cli.{name}").add_parser(sub, full=name == command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from crystalgnn.errors import CrystalGNNError

    try:
        return args.func(args)
    except (CrystalGNNError, FileNotFoundError, ValueError) as err:
        print(f"crystalgnn {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
