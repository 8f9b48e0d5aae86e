"""``crystalgnn featurize``: the Gong et al. structural descriptors of a dataset, as a CSV.

Wired into :mod:`crystalgnn.cli` with ``add_parser(subparsers)``; ``run(args)`` does the work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HELP = "compute the structural descriptors (Gong et al.; matminer definitions) of every structure, as a CSV"

DESCRIPTION = """\
Compute the structural descriptor bank of Gong et al. for every structure of DATA and write
them to a CSV: an 'id' column, then one column per descriptor. Definitions are matminer 0.10.1's
(StructuralHeterogeneity, SiteStatsFingerprint of AverageBondLength / AverageBondAngle /
CoordinationNumber with VoronoiNN, DensityFeatures, StructuralComplexity, GlobalSymmetryFeatures)
plus the Niggli-reduced lattice; see the crystalgnn.descriptors.bank docstring for the equations.

Descriptors (column order):
  {names}

Units: lengths Å, angles of the lattice in degrees, bond angles in radians, density g/cm³,
vpa Å³/atom, structural complexity in bits. Categorical columns are integers:
space_group_num 1-230, and crys_sys {crys}.

A descriptor that cannot be computed (e.g. a structure whose Voronoi cells are unbounded, or
whose symmetry spglib cannot find) is left empty (NaN) and listed, with the reason, in
<output stem>_problems.csv (columns id, stage, reason), as are structures that cannot be read.
Results are cached by structure content, so a second run over the same files is instant.
"""


def add_parser(subparsers, full: bool = True) -> argparse.ArgumentParser:
    """Register ``featurize`` on an ``argparse`` sub-parsers object; returns the new parser
    (``full=False``: its one-line help only, without importing the descriptor bank)."""
    if not full:
        return subparsers.add_parser("featurize", help=HELP)
    from crystalgnn.descriptors import CRYSTAL_SYSTEMS, DESCRIPTOR_NAMES

    crys = ", ".join(f"{k}={name}" for k, name in enumerate(CRYSTAL_SYSTEMS))
    names = "\n  ".join(", ".join(DESCRIPTOR_NAMES[i : i + 6]) for i in range(0, len(DESCRIPTOR_NAMES), 6))
    p = subparsers.add_parser("featurize", help=HELP, description=DESCRIPTION.format(names=names, crys=crys),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="dataset: CGCNN folder (id_prop.csv + CIFs), folder of structure files, CSV with a CIF column, "
                                "MatBench JSON, extxyz, ... (see crystalgnn --help); targets are not needed")
    p.add_argument("-o", "--output", required=True, help="CSV to write (id + one column per descriptor)")
    p.add_argument("--descriptors", metavar="NAMES", help="comma-separated descriptor names to write (default: all)")
    p.add_argument("--workers", type=int, default=0, help="processes computing descriptors (0: one per core; 1: this process)")
    p.add_argument("--cache-dir", default="default", help="descriptor cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the descriptor cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run)
    return p


def _names(spec: str | None) -> tuple[str, ...]:
    from crystalgnn.descriptors import DESCRIPTOR_NAMES

    if not spec:
        return tuple(DESCRIPTOR_NAMES)
    names = tuple(n.strip() for n in spec.split(",") if n.strip())
    unknown = [n for n in names if n not in DESCRIPTOR_NAMES]
    if unknown:
        raise SystemExit(f"featurize: unknown descriptor(s) {', '.join(unknown)}; available: {', '.join(DESCRIPTOR_NAMES)}")
    if len(set(names)) != len(names):
        raise SystemExit("featurize: --descriptors repeats a name")
    return names


def problems_path(output: str | Path) -> Path:
    """``<output stem>_problems.csv`` beside the output."""
    out = Path(output)
    return out.with_name(f"{out.stem}_problems.csv")


def run(args: argparse.Namespace) -> int:
    """Compute the descriptors of ``args.data`` and write ``args.output`` (+ the problems CSV)."""
    import numpy as np

    from crystalgnn.descriptors import compute_descriptors
    from crystalgnn.errors import write_problems
    from crystalgnn.io import load_dataset

    names = _names(getattr(args, "descriptors", None))
    quiet = bool(getattr(args, "quiet", False))
    start = time.perf_counter()
    dataset = load_dataset(args.data, targets=[])
    cache = None if getattr(args, "no_cache", False) else getattr(args, "cache_dir", "default")
    table = compute_descriptors(dataset.ids, dataset.sources, cache_dir=cache, workers=getattr(args, "workers", 0),
                                progress=not quiet).select(names)
    output = Path(args.output)
    if output.parent != Path(""):
        output.parent.mkdir(parents=True, exist_ok=True)
    table.to_frame().to_csv(output, index=False)
    problems = list(dataset.problems) + list(table.problems)
    report = problems_path(output)
    if problems:
        write_problems(problems, report)
    elif report.exists():
        report.unlink()  # a stale report of an earlier run would mislead
    elapsed = time.perf_counter() - start
    if not quiet:
        n_nan = int(np.isnan(table.values).sum())
        rows_nan = int(np.isnan(table.values).any(axis=1).sum())
        print(f"wrote {len(table)} structure(s) x {len(names)} descriptor(s) to {output} in {elapsed:.1f} s; "
              f"{n_nan} NaN cell(s) in {rows_nan} structure(s)", file=sys.stderr)
        if dataset.problems:
            print(f"{len(dataset.problems)} item(s) of {args.data} could not be read", file=sys.stderr)
        if problems:
            print(f"problems (id, stage, reason): {report}", file=sys.stderr)
    return 0
