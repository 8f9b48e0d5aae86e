"""``crystalgnn periodicity``: the 1D-chain periodicity study of Gong et al. (Fig. 3e–h, S3).

``add_parser(subparsers)`` registers the command; ``run(args)`` runs it (returns the exit code).
"""

from __future__ import annotations

import argparse
import sys

from crystalgnn.cli.common import add_model_args, model_config_from_args

HELP = "periodicity study: learn the lattice length a of 1D carbon chains (Gong et al. Fig. 3)"

def _description(variants: dict, defaults) -> str:
    """The command's --help text, from the study's variants and defaults."""
    return f"""\
Train a model per dataset x variant cell on generated quasi-1D carbon chains (target: the
length a of the periodic lattice vector) and compare test R², as in Gong et al. Fig. 3e-h and S3.

datasets ({defaults.n_structures} chains each by default, split 80/10/10):
  short-single   2-8 atoms per chain: periodicity shorter than the receptive field
  short-mixed    short chains, half of them double chains (twice the atoms, same a)
  long-single    37-50 atoms per chain: periodicity longer than the receptive field
  long-mixed     long chains, half of them double chains

variants (* = run by default):
""" + "".join(f"  {name + (' *' if name in defaults.variants else ''):<14} {v.description}\n"
              for name, v in variants.items()) + """
paper's findings: default R² > 0.8 on short chains, clearly worse on long ones; more neighbours
help short chains; sum pooling beats mean pooling on long single chains, less so once double
chains are mixed in.

Writes OUT/<dataset>/<variant>/ (a normal run directory per cell), OUT/periodicity.csv,
OUT/periodicity.md (R² table), OUT/parity_grid.png, OUT/r2_bars.png, OUT/study.json.
Finished cells are skipped, so rerunning the same command resumes an interrupted study.
Time: a long-chain cell costs 5-10 times a short one (37-50 atoms vs 2-8); on 2 shared CPU
cores the full study took 46 min at 25 epochs with --threads 1 (use 1 thread when other
processes are busy: 2 threads then ran 7x slower).

example:
  crystalgnn periodicity --out runs/periodicity --epochs 25 --threads 1
  crystalgnn periodicity --out runs/p-small --datasets short-single long-single --variants default sum
"""


def add_parser(subparsers, full: bool = True) -> argparse.ArgumentParser:
    """Register ``periodicity`` on an ``argparse`` subparsers object and return its parser
    (``full=False``: its one-line help only, without importing the study)."""
    if not full:
        return subparsers.add_parser("periodicity", help=HELP)
    from crystalgnn.analysis.periodicity import DATASETS, VARIANTS, PeriodicityStudy

    _DEFAULTS = PeriodicityStudy()
    DESCRIPTION = _description(VARIANTS, _DEFAULTS)
    p = subparsers.add_parser("periodicity", help=HELP, description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder of the study (resumable)")
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(_DEFAULTS.datasets), metavar="NAME",
                   help=f"datasets to run (default: all: {' '.join(DATASETS)})")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(_DEFAULTS.variants), metavar="NAME",
                   help=f"model variants to run (default: {' '.join(_DEFAULTS.variants)}; also: "
                        f"{' '.join(v for v in VARIANTS if v not in _DEFAULTS.variants)})")
    p.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help=f"training epochs per cell ({_DEFAULTS.epochs})")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help=f"crystals per batch ({_DEFAULTS.batch_size})")
    p.add_argument("--n-structures", type=int, default=_DEFAULTS.n_structures, help=f"chains per dataset ({_DEFAULTS.n_structures})")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help=f"seed of the split and the training ({_DEFAULTS.seed})")
    p.add_argument("--data-seed", type=int, default=_DEFAULTS.data_seed, help=f"seed of the chain generator ({_DEFAULTS.data_seed})")
    p.add_argument("--model", default=_DEFAULTS.model,
                   help=f"a registered model ({_DEFAULTS.model}; built in: cgcnn, alignn); alignn runs the variants default, nbr18, sum, site-sum")
    p.add_argument("--threads", type=int, default=_DEFAULTS.threads, help="torch CPU threads (0: all cores)")
    p.add_argument("--cache-dir", default="default", help="graph cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (one line per cell is still printed)")
    if full:
        add_model_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from crystalgnn.analysis.periodicity import PeriodicityStudy, markdown_table, run_periodicity
    try:
        study = PeriodicityStudy(
            datasets=tuple(args.datasets), variants=tuple(args.variants), n_structures=args.n_structures,
            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, data_seed=args.data_seed,
            model=args.model, threads=args.threads,
        )
        table = run_periodicity(args.out, study, cache_dir=args.cache_dir, progress=not args.quiet, echo=True,
                                base_config=model_config_from_args(args))
    except ValueError as err:
        print(f"crystalgnn periodicity: error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(table, study))
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m crystalgnn.cli.periodicity ...``)."""
    parser = argparse.ArgumentParser(prog="crystalgnn")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["periodicity", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
