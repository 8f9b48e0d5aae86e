"""OCrystalNet beside CGCNN and ALIGNN: accuracy under one time budget, the atom-input ablation,
mp37k, and training speed — each model on the same seeded split, in its own process.

Studies (``--study``; each is a list of *cells*, one training run each):

* ``accuracy``: ``mp_elasticity3k``, log10 K_VRH and log10 G_VRH learned together (two targets of one
  run: half the CPU time of two runs; the paper trains one model per property), 60/20/20 split
  seed 123. Cells: ``ocrystalnet`` (OFM + CFID atoms), ``cgcnn``, ``alignn64`` (ALIGNN at width 64),
  ``cgcnn-ofm-cfid`` (CGCNN on OCrystalNet's 1494-dim atoms). Paper (5,830 MP crystals, one model
  per property): OCrystalNet 0.041 / 0.073, CGCNN 0.054 / 0.087. Variants of OCrystalNet on the
  same split and budget, run with ``--cells``: ``ocrystalnet-drop0.1`` / ``-drop0.3``
  (``message_dropout``), ``ocrystalnet-depth2`` / ``-depth4``.
* ``accuracy-G``: log10 G alone (one model per property, the paper's protocol), OCrystalNet beside
  CGCNN, same split and budget.
* ``tune-budget``: width, peak rate, batch and norm placement under a ``--minutes`` budget
  (validation MAE; schedules sized to the budget with ``--epochs-of``).
* ``ablation`` (the paper's Fig. 4): OCrystalNet with ``cgcnn`` one-hot, ``ofm``, ``cfid`` and
  ``ofm+cfid`` atoms (the last is the ``accuracy`` cell), same split and budget.
* ``mp37k``: formation energy and band gap of ``mp37k`` learned together, OCrystalNet beside CGCNN
  (paper, 60,000 training crystals: 0.027 eV/atom and 0.252 eV).
* ``mp37k-eform`` / ``mp37k-gap``: the same, one model per property (the paper's protocol), so a
  60-minute budget is 60 minutes per property and model.
* ``tune``: the choices the paper leaves open (Eq. 5's aggregate, a layer norm, the width) on the
  ``accuracy`` split, judged by the validation MAE (``--epochs`` short, no time budget needed).
* ``speed`` (no training to convergence): crystals/s over ``--speed-epochs`` training epochs and the
  peak RSS of the process, per model at its default size, on ``mp_elasticity3k``.

Every cell runs in a subprocess of this script (its peak RSS is its own; ``--jobs 2`` runs two at
once with one thread each), writes a normal run directory under
``benchmarks/results/ocrystalnet/<study>/<cell>`` and a one-line summary beside it; finished cells are
skipped, so a study resumes where it stopped. The collected table goes to
``benchmarks/results/ocrystalnet-<study>.json`` and a bar chart to ``…-<study>.png``.

Budget: ``--minutes`` per cell (the issue's is 30 for mp_elasticity3k and 60 for mp37k; say which
one ran). ``--epochs`` is the schedule length of every model (its learning-rate schedule is laid
out over it); the minute budget stops a run early, keeping its best validation epoch.

Usage::

    python benchmarks/ocrystalnet.py --study speed
    python benchmarks/ocrystalnet.py --study accuracy --minutes 30 --jobs 2
    python benchmarks/ocrystalnet.py --study ablation --minutes 30 --jobs 2
    python benchmarks/ocrystalnet.py --study mp37k --minutes 60 --jobs 2
    python benchmarks/ocrystalnet.py --study mp37k-eform --minutes 60 --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import epoch_timer, run_processes, training_rate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"

#: cell name → (model, atom features, model settings overrides (and ``dropout``), train overrides)
CELLS: dict[str, tuple[str, str | None, dict[str, Any], dict[str, Any]]] = {
    "ocrystalnet": ("ocrystalnet", None, {}, {}),
    "cgcnn": ("cgcnn", None, {}, {"batch_size": 64}),
    "alignn64": ("alignn", None, {"hidden_features": 64}, {}),
    "cgcnn-ofm-cfid": ("cgcnn", "ofm+cfid", {}, {"batch_size": 64}),
    "ocrystalnet-onehot": ("ocrystalnet", "cgcnn", {}, {}),
    "ocrystalnet-ofm": ("ocrystalnet", "ofm", {}, {}),
    "ocrystalnet-cfid": ("ocrystalnet", "cfid", {}, {}),
    # its best epoch is ~17 of 70 without: dropout on the bond states (chemprop's place), accuracy split and budget
    "ocrystalnet-drop0.1": ("ocrystalnet", None, {"message_dropout": 0.1}, {}),
    "ocrystalnet-drop0.3": ("ocrystalnet", None, {"message_dropout": 0.3}, {}),
    "ocrystalnet-depth2": ("ocrystalnet", None, {"depth": 2}, {}),
    "ocrystalnet-depth4": ("ocrystalnet", None, {"depth": 4}, {}),
    # the tuning of the defaults the paper does not give (validation MAE decides)
    "ocn-summax": ("ocrystalnet", None, {"aggregate": "sum*max", "norm": "none"}, {}),
    "ocn-summax-ln": ("ocrystalnet", None, {"aggregate": "sum*max", "norm": "layer"}, {}),
    "ocn-meanmax": ("ocrystalnet", None, {"aggregate": "mean*max", "norm": "none"}, {}),
    "ocn-meanmax-ln": ("ocrystalnet", None, {"aggregate": "mean*max", "norm": "layer"}, {}),
    "ocn-h128": ("ocrystalnet", None, {"hidden": 128}, {}),
    "ocn-dropout": ("ocrystalnet", None, {"dropout": 0.2}, {}),
    "ocn-wd": ("ocrystalnet", None, {}, {"weight_decay": 1e-4}),
    # width and peak learning rate under a minute budget (a narrower model runs more epochs; ocn-h128 is above)
    "ocn-h300": ("ocrystalnet", None, {}, {}),
    "ocn-h300-lr1e3": ("ocrystalnet", None, {}, {"lr": 1e-3}),
    "ocn-h128-lr1e3": ("ocrystalnet", None, {"hidden": 128}, {"lr": 1e-3}),
    "ocn-h300-msgnorm": ("ocrystalnet", None, {"norm": "message"}, {}),
    "ocn-h300-b32": ("ocrystalnet", None, {}, {"batch_size": 32}),
}
STUDIES: dict[str, tuple[str, ...]] = {
    "accuracy": ("ocrystalnet", "cgcnn", "alignn64", "cgcnn-ofm-cfid"),
    "accuracy-G": ("ocrystalnet", "cgcnn"),
    "ablation": ("ocrystalnet-onehot", "ocrystalnet-ofm", "ocrystalnet-cfid", "ocrystalnet"),
    "mp37k": ("ocrystalnet", "cgcnn"),
    "mp37k-eform": ("ocrystalnet", "cgcnn"),
    "mp37k-gap": ("ocrystalnet", "cgcnn"),
    "speed": ("ocrystalnet", "cgcnn", "alignn64", "cgcnn-ofm-cfid"),
    "tune": ("ocn-summax", "ocn-meanmax", "ocn-meanmax-ln", "ocn-summax-ln", "ocn-h128", "ocn-dropout", "ocn-wd"),
    "tune-budget": ("ocn-h300", "ocn-h300-lr1e3", "ocn-h128", "ocn-h128-lr1e3", "ocn-h300-msgnorm", "ocn-h300-b32"),
}
PAPER = {
    "accuracy": {"ocrystalnet": {"log10_target0": 0.041, "log10_target1": 0.073}, "cgcnn": {"log10_target0": 0.054, "log10_target1": 0.087}},
    "mp37k": {"ocrystalnet": {"target0": 0.027, "target1": 0.252}, "cgcnn": {"target0": 0.039, "target1": 0.388}},
    "accuracy-G": {"ocrystalnet": {"log10_target1": 0.073}, "cgcnn": {"log10_target1": 0.087}},
    "mp37k-eform": {"ocrystalnet": {"target0": 0.027}, "cgcnn": {"target0": 0.039}},
    "mp37k-gap": {"ocrystalnet": {"target1": 0.252}, "cgcnn": {"target1": 0.388}},
}
#: study → (dataset, the id_prop target columns it learns); the studies not listed learn K and G
#: (columns 0, 1) of mp_elasticity3k. mp37k's columns: 0 formation energy per atom, 1 band gap.
STUDY_DATA: dict[str, tuple[str, list[int]]] = {
    "accuracy-G": ("mp_elasticity3k", [1]),
    "mp37k": ("mp37k", [0, 1]), "mp37k-eform": ("mp37k", [0]), "mp37k-gap": ("mp37k", [1]),
}


def study_data(study: str) -> tuple[str, list[int]]:
    return STUDY_DATA.get(study, ("mp_elasticity3k", [0, 1]))
TARGET_NAMES = {"accuracy": ("log10 K", "log10 G"), "accuracy-G": ("log10 G",), "ablation": ("log10 K", "log10 G"), "speed": ("log10 K", "log10 G"),
                "tune": ("log10 K", "log10 G"), "tune-budget": ("log10 K", "log10 G"),
                "mp37k": ("formation energy (eV/atom)", "band gap (eV)"),
                "mp37k-eform": ("formation energy (eV/atom)",), "mp37k-gap": ("band gap (eV)",)}


def cell_config(study: str, cell: str, args: argparse.Namespace):
    from crystalgnn.config import DataConfig, defaults_for

    model, features, arch, train = CELLS[cell]
    arch = dict(arch)
    shared = {k: arch.pop(k) for k in list(arch) if k in ("dropout",)}  # ModelConfig fields, not the model's own
    cfg = defaults_for(model)
    epochs = args.speed_epochs if study == "speed" else epochs_of(args).get(cell, args.epochs)
    cfg = dataclasses.replace(
        cfg,
        data=DataConfig(transform="none" if study_data(study)[0] == "mp37k" else "log10"),
        features=cfg.features if features is None else dataclasses.replace(cfg.features, atom_features=features),
        model=dataclasses.replace(cfg.model, **shared, arch=dataclasses.replace(cfg.model.arch, **arch)),
        train=dataclasses.replace(cfg.train, **train, epochs=epochs, max_minutes=0.0 if study == "speed" else args.minutes,
                                  seed=args.seed, threads=args.threads),
    )
    if args.noam_warmup_epochs is not None and cfg.train.scheduler == "noam":
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, noam_warmup_epochs=args.noam_warmup_epochs))
    if study == "speed":  # every crystal of every epoch counts: no early stop, no validation-only effects
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, early_stopping_patience=0))
    return cfg


def epochs_of(args: argparse.Namespace) -> dict[str, int]:
    """``--epochs-of cell=N,...``: a schedule length per cell (so that each model's schedule ends
    within the same minute budget: the models differ 2-4x in speed)."""
    pairs = [p.split("=") for p in args.epochs_of.split(",") if p] if args.epochs_of else []
    return {cell: int(n) for cell, n in pairs}


def dataset(study: str, args: argparse.Namespace):
    from crystalgnn.io import load_dataset

    name, columns = study_data(study)
    if name == "mp37k":
        from _common import extracted_mp37k

        folder = extracted_mp37k(args.data_cache)
        return load_dataset(folder / "id_prop.csv", targets=columns, structures_dir=folder / "data")
    return load_dataset(DATA / name, targets=columns, transform="log10")


def run_cell(study: str, cell: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one cell in this process; return its summary."""
    from crystalgnn.training.run import train

    load_at_start = list(os.getloadavg())
    out = args.out / study / cell
    cfg = cell_config(study, cell, args)
    data = dataset(study, args)
    timer = epoch_timer()
    start = time.perf_counter()
    result = train(data, out, cfg, cache_dir=args.graph_cache, workers=1, progress=False, callbacks=[timer])
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    n_train = next(iter(metrics["train"].values()))["n"]
    epochs_run = int(metrics.get("epochs_run", 0))
    rate = training_rate(timer)  # the first epoch (allocator warm-up) left out when there are more
    return {
        "study": study, "cell": cell, "model": cfg.model.name, "atom_features": cfg.features.atom_features,
        "test_mae": {name: m["mae"] for name, m in metrics["test"].items()},
        "val_mae": {name: m["mae"] for name, m in metrics["val"].items()},
        "train_mae": {name: m["mae"] for name, m in metrics["train"].items()},
        "n_train": n_train, "epochs_run": epochs_run, "best_epoch": metrics.get("best_epoch"),
        "stop_reason": metrics.get("stop_reason"), "parameters": metrics.get("n_parameters"),
        "wall_seconds": round(wall, 1), "epoch_seconds": [round(x, 2) for x in timer.seconds],
        "train_crystals_per_s": round(rate, 1) if rate == rate else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_at_start": load_at_start, "load_at_end": list(os.getloadavg()),
        "settings": {"epochs": cfg.train.epochs, "minutes": cfg.train.max_minutes, "batch_size": cfg.train.batch_size,
                     "lr": cfg.train.lr, "scheduler": cfg.train.scheduler, "threads": cfg.train.threads,
                     "arch": dataclasses.asdict(cfg.model.arch), "graph": dataclasses.asdict(cfg.graph_inputs())},
        "result_dir": str(result.run_dir),
    }


#: Studies that reuse another study's finished cell of the same name (same data, split and budget).
SHARES_CELLS_OF = {"ablation": "accuracy"}


def _summary_path(args: argparse.Namespace, study: str, cell: str) -> Path:
    """Where the cell's summary is; the ablation's ``ocrystalnet`` cell is the accuracy study's."""
    own = args.out / study / f"{cell}.json"
    other = SHARES_CELLS_OF.get(study)
    if not own.exists() and other and cell in STUDIES[other] and (args.out / other / f"{cell}.json").exists():
        return args.out / other / f"{cell}.json"
    return own


def launch(study: str, cells: list[str], args: argparse.Namespace) -> None:
    """Run the unfinished cells, ``--jobs`` at a time, each in its own process."""
    pending = [c for c in cells if not _summary_path(args, study, c).exists()]
    for done in sorted(set(cells) - set(pending)):
        print(f"[{study}] {done}: finished earlier, kept")
    base = [sys.executable, __file__, "--study", study, "--epochs", str(args.epochs), "--minutes", str(args.minutes),
            "--speed-epochs", str(args.speed_epochs), "--epochs-of", args.epochs_of, "--seed", str(args.seed), "--threads", str(args.threads),
            *(["--noam-warmup-epochs", str(args.noam_warmup_epochs)] if args.noam_warmup_epochs is not None else []),
            "--out", str(args.out), "--data-cache", str(args.data_cache), "--graph-cache", str(args.graph_cache)]
    run_processes(study, [(cell, [*base, "--cell", cell], args.out / study / f"{cell}.log") for cell in pending], args.jobs)


def collect(study: str, cells: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = [json.loads(_summary_path(args, study, c).read_text()) for c in cells if _summary_path(args, study, c).exists()]
    names = TARGET_NAMES[study]
    split = "val" if study.startswith("tune") else "test"
    budget = f"{args.epochs} epochs per cell" if study == "tune" else f"budget {args.minutes:g} min per cell"
    print(f"\n{study}: {'validation' if split == 'val' else 'test'} MAE ({', '.join(names)}), same split (seed {args.seed}), {budget}"
          if study != "speed" else f"\n{study}: {args.speed_epochs} training epochs per model")
    for r in rows:
        maes = list(r[f"{split}_mae"].values())
        paper = PAPER.get(study, {}).get(r["cell"])
        paper_text = f"   paper {' / '.join(f'{v:.3f}' for v in paper.values())}" if paper else ""
        print(f"  {r['cell']:22s} {' / '.join(f'{m:.4f}' for m in maes)}   epochs {r['epochs_run']:4d}  "
              f"{r['train_crystals_per_s'] or 0:8.1f} crystals/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
              f"{r['parameters'] or 0:>9} params{paper_text}")
    out = RESULTS / f"ocrystalnet-{study}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"study": study, "rows": rows, "paper": PAPER.get(study, {}), "machine_load_now": list(os.getloadavg())},
                              indent=2) + "\n")
    if rows and study != "speed":
        _bar_chart(study, rows, names, RESULTS / f"ocrystalnet-{study}.png", split)
    print(f"wrote {out}")
    return rows


def _bar_chart(study: str, rows: list[dict[str, Any]], names: tuple[str, ...], path: Path, split: str = "test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6))
    for k, (ax, name) in enumerate(zip(np.atleast_1d(axes), names)):
        values = [list(r[f"{split}_mae"].values())[k] for r in rows]
        ax.bar(range(len(rows)), values, color="tab:blue")
        ax.set_xticks(range(len(rows)), [r["cell"] for r in rows], rotation=30, ha="right")
        ax.set_title(f"{name}: {'validation' if split == 'val' else 'test'} MAE")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=sorted(STUDIES), required=True)
    parser.add_argument("--cells", help="comma-separated cells of the study (default: all)")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell in this process
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per cell (30)")
    parser.add_argument("--epochs", type=int, default=100, help="schedule length of every model (100)")
    parser.add_argument("--epochs-of", default="", help="schedule length per cell, e.g. cgcnn=90,ocrystalnet=35 (default: --epochs)")
    parser.add_argument("--noam-warmup-epochs", type=float, help="warm-up of the Noam-scheduled cells (default: the model's, 2)")
    parser.add_argument("--speed-epochs", type=int, default=2, help="epochs of the speed study (2)")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once (1; 2 on a 2-core machine with --threads 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per cell (0: the free cores)")
    parser.add_argument("--seed", type=int, default=123, help="split and training seed (123)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ocrystalnet", help="run directories of the cells")
    parser.add_argument("--data-cache", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "datasets")
    parser.add_argument("--graph-cache", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "benchmark-graphs")
    args = parser.parse_args()
    if args.cell:
        summary = run_cell(args.study, args.cell, args)
        _summary_path(args, args.study, args.cell).write_text(json.dumps(summary, indent=2) + "\n")
        return
    cells = args.cells.split(",") if args.cells else list(STUDIES[args.study])
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {sorted(CELLS)}")
    launch(args.study, cells, args)
    collect(args.study, cells, args)


if __name__ == "__main__":
    main()
