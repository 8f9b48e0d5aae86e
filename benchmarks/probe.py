"""Learnability probe on mp37k (Gong et al., Fig. 2): test R² of CGCNN or ALIGNN per descriptor.

The paper's low-symmetry-biased subset (each structure removed with probability sg/(sg+15)),
then a seeded random 10,000 of it, split 80/10/10. CGCNN is trained once on all numeric
descriptors (standardized multi-output), once on the crystal system (7 classes), and a random
forest on Magpie composition statistics gives the composition-only baseline.

Paper's pattern (Fig. 2a/b): local descriptors R² ≈ 0.8 or higher (lower for max_rela_bond_len,
std_avg_bond_ang and the Voronoi CN); vpa, density, packing fraction, natoms high; structural
complexity per cell and the lattice lengths and angles low. Crystal system accuracy ≈ 0.6 for
both CGCNN and the composition-only model (Fig. 2c).

Usage::

    python benchmarks/probe.py --max-structures 10000 --epochs 20
    python benchmarks/probe.py --model alignn --hidden 64 --max-structures 1500 --out benchmarks/results/probe-1500-alignn
    python benchmarks/probe.py --model cgcnn --max-structures 1500 --out benchmarks/results/probe-1500-cgcnn

The same ``--max-structures`` and ``--seed`` give the same structures and split for every model,
so two runs compare directly (the paper finds ALIGNN better on the lattice lengths a, b, c).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import extracted_mp37k, machine_info, write_results  # noqa: E402

from crystalgnn.analysis.probe import ProbeSettings, run_probe  # noqa: E402
from crystalgnn.cli.common import add_model_args, add_model_choice, model_config_from_args  # noqa: E402
from crystalgnn.io import load_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-structures", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    add_model_choice(parser, default="cgcnn")
    add_model_args(parser)  # every registered model's settings, e.g. --hidden 64 --norm batch for alignn
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32", help="training precision")
    parser.add_argument("--no-crystal-system", action="store_true", help="skip the crystal-system classifier (half the cost)")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe")
    args = parser.parse_args()

    folder = extracted_mp37k(None)
    data = load_dataset(folder / "id_prop.csv", targets=[], structures_dir=folder / "data")
    data.meta["source"] = str(folder)
    try:
        cfg = model_config_from_args(args)  # a flag of another model is an error
    except ValueError as err:
        parser.error(str(err))
    cfg = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, threads=args.threads, precision=args.precision),
    )
    settings = ProbeSettings(max_structures=args.max_structures, seed=args.seed, crystal_system=not args.no_crystal_system)
    start = time.perf_counter()
    table = run_probe(data, args.out, settings, cfg, progress=False)
    seconds = time.perf_counter() - start
    summary = json.loads((args.out / "probe.json").read_text())
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(json.dumps(summary, indent=2))
    print(f"total {seconds / 60:.1f} min")
    name = args.out.name if args.model in args.out.name else f"{args.out.name}-{args.model}"
    write_results(f"{name}.json", {"machine": machine_info(), "seconds": seconds, "summary": summary,
                                          "table": table.to_dict(orient="records")})


if __name__ == "__main__":
    main()
