"""CrysToGraph beside CGCNN and ALIGNN: cell size (the paper's Fig. 13), QMOF band gaps, log10 G
with and without the pretrained embedding and with lab-frame edge features, training speed.
Every model of a study trains on the same seeded split under the same minute budget, each in its
own process (``--jobs 2`` runs two at once, one thread each).

Studies (``--study``; each a list of *cells*, one training run each):

* ``size-small`` / ``size-medium`` / ``size-large``: 5,000 ``mp37k`` crystals with 1–12, 13–30 and
  31+ atoms (UnconvBench's bulk_s / bulk_m / bulk_l: a seeded sample of each bin, seed 42),
  formation energy, test fold 0 of ``KFold(5, shuffle=True, random_state=42)`` (1,000 crystals);
  a seeded 10 % of the other 4,000 is the validation set (UnconvBench has none and keeps the last
  epoch). Cells: ``crystograph``, its ``-nogwt``, ``-noline`` and ``-sumbroadcast`` variants,
  ``cgcnn``, ``alignn64``. Finding to test: the gain from the GwT grows with cell size.
* ``qmof5k``: QMOF PBE band gap, a seeded sample (seed 42) of 5,106 of the 20,374 MOFs (the size of
  UnconvBench's QMOF set), split by the file's own ``split`` column. Cells: ``crystograph``,
  ``cgcnn``, ``alignn64``. Anchor (full set, 80 % train): CGCNN 0.255 eV, ALIGNN about 0.20 eV.
* ``elastic-G``: log10 G_VRH of ``mp_elasticity3k`` (60/20/20, seed 123). Cells: ``crystograph``,
  ``crystograph-reference`` (lab-frame spherical edge features), ``crystograph-pretrained``
  (CGCNN's 92 ⊕ the 64-dim masked-atom embedding, ``--pretrained RUN``), ``cgcnn``, and
  ``crystograph-ens5``: a 5-member ensemble (seeds 123–127, the budget is per member), whose
  summary adds each member's test MAE and the calibration (Spearman σ vs |error|, ±1σ/±2σ coverage).
* ``rotation`` (no training; after ``elastic-G``): 100 random test crystals of elastic-G, each
  rotated by a random proper rotation (seed 0), predicted by the ``crystograph`` (invariant edge
  features) and ``crystograph-reference`` (lab-frame angles) runs: the largest and the mean change
  of the prediction, beside each run's test MAE.
* ``qmof-steps`` (no training to convergence): training crystals/s of each qmof5k model on 64 MOFs,
  i.e. what one QMOF epoch costs here.
* ``speed``: training crystals/s and peak RSS over ``--speed-epochs`` epochs on mp_elasticity3k,
  fp32 and bf16-mixed, CrysToGraph beside CGCNN and ALIGNN-64.

Each cell writes a normal run directory under ``benchmarks/results/crystograph/<study>/<cell>`` and
a one-line summary beside it; finished cells are skipped, so a study resumes where it stopped. The
run directories stay out of git, but the collected tables below are kept: a fresh clone takes the
finished cells' summaries back from them and runs only the rest (``--rerun CELLS`` drops cells'
results so that they train again).
The collected table goes to ``benchmarks/results/crystograph-<study>.json`` (and a bar chart
``….png``); ``--study size`` collects the three size bins into one chart.

Usage::

    python benchmarks/crystograph.py --study speed --jobs 2 --threads 1
    python benchmarks/crystograph.py --study size-small --minutes 8 --jobs 2 --threads 1
    python benchmarks/crystograph.py --study size          # table + chart of the three bins
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, DEFAULT_DATA_CACHE, DEFAULT_GRAPH_CACHE, RESULTS, epoch_timer, extracted_mp37k, peak_rss_mb, run_processes, training_rate  # noqa: E402

#: cell → (model, atom features or None, model settings, train settings)
CELLS: dict[str, tuple[str, str | None, dict[str, Any], dict[str, Any]]] = {
    "crystograph": ("crystograph", None, {}, {}),
    "crystograph-nogwt": ("crystograph", None, {"gwt": "none"}, {}),
    "crystograph-noline": ("crystograph", None, {"line_graph": False}, {}),
    "crystograph-sumbroadcast": ("crystograph", None, {"gwt": "sum-broadcast"}, {}),
    "crystograph-reference": ("crystograph", None, {"edge_features": "reference"}, {}),
    "crystograph-pretrained": ("crystograph", "cgcnn+pretrained:{pretrained}", {}, {}),
    "crystograph-ens5": ("crystograph", None, {}, {"ensemble": 5}),
    "cgcnn": ("cgcnn", None, {}, {"batch_size": 64}),
    "alignn64": ("alignn", None, {"hidden_features": 64}, {}),
    "crystograph-bf16": ("crystograph", None, {}, {"precision": "bf16-mixed"}),
    "cgcnn-bf16": ("cgcnn", None, {}, {"batch_size": 64, "precision": "bf16-mixed"}),
    "alignn64-bf16": ("alignn", None, {"hidden_features": 64}, {"precision": "bf16-mixed"}),
}
SIZE_CELLS = ("crystograph", "crystograph-nogwt", "crystograph-sumbroadcast", "cgcnn", "crystograph-noline", "alignn64")
STUDIES: dict[str, tuple[str, ...]] = {
    "size-small": SIZE_CELLS, "size-medium": SIZE_CELLS, "size-large": SIZE_CELLS,
    "qmof5k": ("crystograph", "cgcnn", "alignn64"),
    "elastic-G": ("crystograph-ens5", "crystograph", "crystograph-reference", "crystograph-pretrained", "cgcnn"),
    "speed": ("crystograph", "crystograph-bf16", "cgcnn", "cgcnn-bf16", "alignn64", "alignn64-bf16"),
}
#: size bins of mp37k (atoms per cell, inclusive), UnconvBench's bulk_s / bulk_m / bulk_l
SIZE_BINS = {"size-small": (1, 12), "size-medium": (13, 30), "size-large": (31, 10_000)}
TARGET_NAMES = {"size-small": "formation energy (eV/atom)", "size-medium": "formation energy (eV/atom)",
                "size-large": "formation energy (eV/atom)", "qmof5k": "band gap (eV)", "elastic-G": "log10 G (GPa)", "speed": "log10 G (GPa)"}


# ------------------------------------------------------------------------------ data
def mp37k_atom_counts(data_cache: Path) -> dict[str, int]:
    """Atoms per cell of every mp37k crystal, counted once (parsing 36,737 CIFs) and kept beside the
    extracted data."""
    folder = extracted_mp37k(data_cache)
    path = folder / "atom_counts.json"
    if path.exists():
        return json.loads(path.read_text())
    from crystalgnn.structures.parse import parse_structure

    ids = [line.split(",")[0] for line in (folder / "id_prop.csv").read_text().splitlines() if line.strip()]
    start = time.perf_counter()
    counts = {i: len(parse_structure(folder / "data" / f"{i}.cif")) for i in ids}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts))
    tmp.rename(path)
    print(f"counted the atoms of {len(counts)} mp37k crystals in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return counts


def size_bin_split(study: str, data_cache: Path, out: Path) -> tuple[Path, list[str]]:
    """5,000 crystals of the bin (seed 42) and a split file: test = fold 0 of KFold(5, shuffle, 42)
    over them, validation = a seeded 10 % of the rest. Returns (split file, ids)."""
    import numpy as np
    from sklearn.model_selection import KFold

    low, high = SIZE_BINS[study]
    counts = mp37k_atom_counts(data_cache)
    members = sorted(i for i, n in counts.items() if low <= n <= high)
    chosen = [members[k] for k in np.sort(np.random.default_rng(42).choice(len(members), size=min(5000, len(members)), replace=False))]
    train_idx, test_idx = next(iter(KFold(5, shuffle=True, random_state=42).split(np.arange(len(chosen)))))
    val_idx = set(np.random.default_rng(42).choice(train_idx, size=len(train_idx) // 10, replace=False).tolist())
    roles = {int(k): "test" for k in test_idx} | {int(k): ("val" if k in val_idx else "train") for k in train_idx}
    path = out / study / "split.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id,split\n" + "".join(f"{chosen[k]},{roles[k]}\n" for k in range(len(chosen))))
    return path, chosen


def extracted_qmof(data_cache: Path) -> Path:
    """The QMOF CIFs extracted once into ``<data_cache>/qmof20k`` (``structures/<id>.cif``)."""
    import shutil
    import tarfile

    folder = data_cache / "qmof20k"
    if (folder / ".extracted-ok").exists():
        return folder
    tmp = data_cache / f".qmof20k.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    print(f"extracting {DATA / 'qmof20k' / 'qmof_structures.tar.xz'} -> {folder} (once) ...", file=sys.stderr, flush=True)
    with tarfile.open(DATA / "qmof20k" / "qmof_structures.tar.xz") as archive:
        archive.extractall(tmp, filter="data")
    shutil.copyfile(DATA / "qmof20k" / "id_prop.csv", tmp / "id_prop.csv")
    (tmp / ".extracted-ok").write_text(f"{time.perf_counter() - start:.0f} s\n")
    os.rename(tmp, folder)
    return folder


def qmof_subset(data_cache: Path, out: Path) -> tuple[Path, list[str]]:
    """5,106 MOFs (seed 42) and a split file from the file's own split column."""
    import numpy as np
    import pandas as pd

    table = pd.read_csv(extracted_qmof(data_cache) / "id_prop.csv")
    chosen = table.iloc[np.sort(np.random.default_rng(42).choice(len(table), size=5106, replace=False))]
    path = out / "qmof5k" / "split.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    chosen[["id", "split"]].to_csv(path, index=False)
    return path, chosen["id"].tolist()


def dataset(study: str, args: argparse.Namespace):
    """(dataset, split file or None, transform) of a study."""
    from crystalgnn.io import load_dataset

    if study in SIZE_BINS:
        split, ids = size_bin_split(study, args.data_cache, args.out)
        folder = extracted_mp37k(args.data_cache)
        full = load_dataset(folder / "id_prop.csv", targets=[0], structures_dir=folder / "data")
        position = {i: k for k, i in enumerate(full.ids)}
        return full.subset([position[i] for i in ids]), split, "none"
    if study == "qmof5k":
        split, ids = qmof_subset(args.data_cache, args.out)
        folder = extracted_qmof(args.data_cache)
        full = load_dataset(folder / "id_prop.csv", targets=["target"], structures_dir=folder / "structures")
        position = {i: k for k, i in enumerate(full.ids)}
        return full.subset([position[i] for i in ids]), split, "none"
    return load_dataset(DATA / "mp_elasticity3k", targets=[1], transform="log10"), None, "log10"


# ------------------------------------------------------------------------------ cells
def cell_config(study: str, cell: str, args: argparse.Namespace, split: Path | None, transform: str):
    from crystalgnn.config import DataConfig, defaults_for

    model, features, arch, train = CELLS[cell]
    cfg = defaults_for(model)
    if features is not None:
        if "{pretrained}" in features and not args.pretrained:
            raise SystemExit(f"cell {cell} needs --pretrained RUN (a run directory of `crystalgnn pretrain`)")
        cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, atom_features=features.format(pretrained=args.pretrained)))
    epochs = args.speed_epochs if study == "speed" else epochs_of(args).get(cell, args.epochs)
    return dataclasses.replace(
        cfg,
        data=DataConfig(transform=transform),
        model=dataclasses.replace(cfg.model, arch=dataclasses.replace(cfg.model.arch, **arch)),
        train=dataclasses.replace(cfg.train, **train, epochs=epochs, max_minutes=0.0 if study == "speed" else args.minutes,
                                  seed=args.seed, threads=args.threads, split_file=str(split) if split else "",
                                  early_stopping_patience=0),
    )


def epochs_of(args: argparse.Namespace) -> dict[str, int]:
    """``--epochs-of cell=N,...``: a schedule length per cell, so that each model's schedule can end
    within the budget (the models differ several-fold in speed)."""
    return {c: int(n) for c, n in (p.split("=") for p in args.epochs_of.split(",") if p)} if args.epochs_of else {}


def run_cell(study: str, cell: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one cell in this process; return its summary."""
    from crystalgnn.training.run import train

    load_at_start = list(os.getloadavg())
    data, split, transform = dataset(study, args)
    cfg = cell_config(study, cell, args, split, transform)
    timer = epoch_timer()
    start = time.perf_counter()
    out = args.out / study / cell
    train(data, out, cfg, cache_dir=args.graph_cache, workers=1, progress=False, callbacks=[timer])
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    first = next(iter(metrics["test"]))
    n_train = metrics["train"][first]["n"]
    rate = training_rate(timer)
    return {
        "study": study, "cell": cell, "model": cfg.model.name, "atom_features": cfg.features.atom_features,
        "test_mae": metrics["test"][first]["mae"], "val_mae": metrics["val"][first]["mae"], "train_mae": metrics["train"][first]["mae"],
        "n_train": n_train, "n_test": metrics["test"][first]["n"], "epochs_run": int(metrics.get("epochs_run", 0)),
        "epochs_trained": round(sum(timer.crystals) / n_train, 3),  # fractional: the budget can end an epoch early
        "best_epoch": metrics.get("best_epoch"), "stop_reason": metrics.get("stop_reason"), "parameters": metrics.get("n_parameters"),
        "wall_seconds": round(wall, 1), "epoch_seconds": [round(x, 2) for x in timer.seconds],
        "train_crystals_per_s": round(rate, 2) if rate == rate else None,
        "peak_rss_mb": round(peak_rss_mb(), 1), "load_at_start": load_at_start, "load_at_end": list(os.getloadavg()),
        "ensemble": {k: metrics[k] for k in ("calibration", "ensemble") if k in metrics},
        "settings": {"epochs": cfg.train.epochs, "minutes": cfg.train.max_minutes, "batch_size": cfg.train.batch_size,
                     "lr": cfg.train.lr, "precision": cfg.train.precision, "threads": cfg.train.threads,
                     "arch": dataclasses.asdict(cfg.model.arch), "graph": dataclasses.asdict(cfg.graph_inputs())},
    }


def kept_tables(study: str) -> list[Path]:
    """The collected tables in git that can hold rows of ``study``."""
    return [t for t in (RESULTS / f"crystograph-{study}.json", RESULTS / "crystograph-size.json") if t.exists()]


def restore_summaries(study: str, args: argparse.Namespace) -> None:
    """Bring back, from the tables kept in git, the summaries of cells that finished in an earlier
    checkout (the run directories beside them are not kept), so that a fresh clone neither re-runs
    those cells nor drops them from the table it writes."""
    for table in kept_tables(study):
        for row in json.loads(table.read_text())["rows"]:
            path = args.out / study / f"{row['cell']}.json"
            if row.get("study") == study and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(row, indent=2) + "\n")


def forget_cells(study: str, cells: list[str], args: argparse.Namespace) -> None:
    """``--rerun``: drop these cells' results (run directory, summary, rows of the kept tables), so
    that they train again (say, after a change that makes a model faster under the same budget)."""
    import shutil

    for table in kept_tables(study):
        content = json.loads(table.read_text())
        content["rows"] = [r for r in content["rows"] if not (r.get("study") == study and r["cell"] in cells)]
        table.write_text(json.dumps(content, indent=2) + "\n")
    for cell in cells:
        shutil.rmtree(args.out / study / cell, ignore_errors=True)
        (args.out / study / f"{cell}.json").unlink(missing_ok=True)
        print(f"[{study}] {cell}: earlier result dropped, trains again")


def launch(study: str, cells: list[str], args: argparse.Namespace) -> None:
    if args.rerun:
        forget_cells(study, args.rerun.split(","), args)
    restore_summaries(study, args)
    pending = [c for c in cells if not (args.out / study / f"{c}.json").exists()]
    for done in sorted(set(cells) - set(pending)):
        print(f"[{study}] {done}: finished earlier, kept")
    base = [sys.executable, __file__, "--study", study, "--epochs", str(args.epochs), "--minutes", str(args.minutes),
            "--speed-epochs", str(args.speed_epochs), "--epochs-of", args.epochs_of, "--seed", str(args.seed), "--threads", str(args.threads),
            "--pretrained", args.pretrained, "--out", str(args.out), "--data-cache", str(args.data_cache), "--graph-cache", str(args.graph_cache)]
    if pending:
        prebuild(study, pending, args)
    run_processes(study, [(c, [*base, "--cell", c], args.out / study / f"{c}.log") for c in pending], args.jobs)


def prebuild(study: str, cells: list[str], args: argparse.Namespace) -> None:
    """Extract the data, write the split and build every graph kind the cells need, once, with
    both cores, before the cells start side by side (which would otherwise build the same graphs
    twice, and inside their budgets)."""
    from crystalgnn.data.prepared import prepare
    from crystalgnn.paths import resolve_cache_dir

    data, split, transform = dataset(study, args)
    seen = set()
    for cell in cells:
        cfg = cell_config(study, cell, args, split, transform)
        graph = cfg.graph_inputs()
        if (graph, cfg.features.atom_features.split(":")[0]) in seen:
            continue
        seen.add((graph, cfg.features.atom_features.split(":")[0]))
        start = time.perf_counter()
        prepared = prepare(data, graph, cfg.features, resolve_cache_dir(args.graph_cache), workers=2, progress=False)
        print(f"[{study}] graphs for {cell} ({graph.strategy}, line graph {graph.line_graph}, add-ons {list(graph.addons)}): "
              f"{len(prepared.ids)} usable, {len(prepared.problems)} problems, {time.perf_counter() - start:.0f} s", flush=True)


def collect(studies: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for study in studies:
        restore_summaries(study, args)
        for cell in STUDIES[study]:
            path = args.out / study / f"{cell}.json"
            if path.exists():
                rows.append(with_epochs_trained(json.loads(path.read_text()), args.out / study / cell))
    title = "size" if len(studies) > 1 else studies[0]
    budget = f"{args.speed_epochs} training epochs per model" if title == "speed" else f"budget {args.minutes:g} min per cell"
    print(f"\n{title}: test MAE, same split and {budget}")
    for r in rows:
        print(f"  {r['study']:12s} {r['cell']:26s} {r['test_mae']:.4f}  val {r['val_mae']:.4f}  epochs {r.get('epochs_trained', r['epochs_run']):7.2f} "
              f"(best {r['best_epoch']})  {r['train_crystals_per_s'] or 0:7.1f} crystals/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
              f"{r['parameters'] or 0:>9} params")
    table: dict[str, Any] = {"studies": studies, "rows": rows}
    if title == "size":
        table["gwt_gain"] = gwt_gain(studies, rows)
    out = RESULTS / f"crystograph-{title}.json"
    out.write_text(json.dumps({**table, "machine_load_now": list(os.getloadavg())}, indent=2) + "\n")
    if rows and title != "speed":
        _bar_chart(studies, rows, RESULTS / f"crystograph-{title}.png")
    print(f"wrote {out}")
    return rows


def with_epochs_trained(row: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A summary written before ``epochs_trained`` was recorded gets it from its run directory's
    training steps (when the directory is still there): steps / steps per epoch."""
    log = run_dir / "logs" / "metrics.csv"
    if "epochs_trained" in row or not log.exists():
        return row
    import pandas as pd

    steps = int(pd.read_csv(log)["step"].max()) + 1  # Lightning logs an epoch's metrics at its last step's index
    per_epoch = math.ceil(row["n_train"] / row["settings"]["batch_size"])
    epochs = steps / per_epoch
    # that summary's rate took every epoch as whole and its timer counted validation: redo the first
    rate = epochs * row["n_train"] / sum(row["epoch_seconds"]) if row["epoch_seconds"] else None
    return {**row, "epochs_trained": round(epochs, 3), "epochs_trained_from": "training steps in logs/metrics.csv",
            "train_crystals_per_s": round(rate, 2) if rate else None,
            "train_crystals_per_s_from": "crystals trained / epoch seconds including validation (older timer)"}


def gwt_gain(studies: list[str], rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The finding the size study tests, per bin: how much lower the test MAE is with the GwT
    (attention, and the reference's sum-broadcast) than without it, in eV/atom and as a fraction of
    the no-GwT MAE; positive = the GwT helps. Printed and stored with the table."""
    gains: dict[str, dict[str, float]] = {}
    for study in studies:
        mae = {r["cell"]: r["test_mae"] for r in rows if r["study"] == study}
        if "crystograph-nogwt" not in mae:
            continue
        base = mae["crystograph-nogwt"]
        gains[study] = {}
        for cell in ("crystograph", "crystograph-sumbroadcast"):
            if cell in mae:
                gains[study] |= {f"{cell}_minus": round(base - mae[cell], 4), f"{cell}_relative": round((base - mae[cell]) / base, 3)}
        print(f"  GwT gain {study:12s} " + "  ".join(f"{k} {v:+.4f}" for k, v in gains[study].items()))
    return gains


def _bar_chart(studies: list[str], rows: list[dict[str, Any]], path: Path) -> None:
    """Test MAE per cell, one group of bars per study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = list(dict.fromkeys(r["cell"] for r in rows))
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * len(studies) * max(len(cells), 1) / 3, 3.8))
    width = 0.8 / len(cells)
    for k, cell in enumerate(cells):
        found = [next((r for r in rows if r["study"] == s and r["cell"] == cell), None) for s in studies]
        values = [r["test_mae"] if r else np.nan for r in found]
        bars = ax.bar(np.arange(len(studies)) + k * width, values, width, label=cell)
        # the epochs each model got within the budget are half the story: label every bar with them
        ax.bar_label(bars, labels=[f"{r['test_mae']:.3f}\n{r.get('epochs_trained', r['epochs_run']):.3g} ep" if r else "" for r in found], fontsize=5)
    ax.set_xticks(np.arange(len(studies)) + 0.4 - width / 2, studies)
    ax.set_ylabel(f"test MAE, {TARGET_NAMES[studies[0]]}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rotation_study(args: argparse.Namespace) -> dict[str, Any]:
    """Predictions of the elastic-G runs for 100 rotated test crystals (module docstring)."""
    import numpy as np
    import pandas as pd
    from pymatgen.core.operations import SymmOp

    from crystalgnn.predict import load_model
    from crystalgnn.structures.parse import parse_structure

    rng = np.random.default_rng(0)
    runs = {cell: args.out / "elastic-G" / cell for cell in ("crystograph", "crystograph-reference")}
    tests = pd.read_csv(runs["crystograph"] / "predictions_test.csv")["id"].astype(str).tolist()
    chosen = [tests[k] for k in np.sort(rng.choice(len(tests), size=min(100, len(tests)), replace=False))]
    originals = [parse_structure(DATA / "mp_elasticity3k" / f"{i}.cif") for i in chosen]
    rotated = []
    for structure in originals:
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))  # a proper rotation
        turned = structure.copy()
        turned.apply_operation(SymmOp.from_rotation_and_translation(q, [0.0, 0.0, 0.0]))
        rotated.append(turned)
    result: dict[str, Any] = {"crystals": len(chosen), "rows": []}
    for cell, run in runs.items():
        model = load_model(run)
        frames = [model.predict(structures, ids=chosen) for structures in (originals, rotated)]
        column = next(c for c in frames[0].columns if c.startswith("log10_"))  # the learned units
        before, after = (frame[column].to_numpy() for frame in frames)
        change = np.abs(after - before)
        summary = json.loads((args.out / "elastic-G" / f"{cell}.json").read_text())
        row = {"cell": cell, "edge_features": summary["settings"]["arch"]["edge_features"], "max_change": float(change.max()),
               "mean_change": float(change.mean()), "test_mae": summary["test_mae"]}
        result["rows"].append(row)
        print(f"  {cell:24s} ({row['edge_features']:9s}) max |Δ prediction| {row['max_change']:.2e}  mean {row['mean_change']:.2e}  "
              f"(log10 GPa; test MAE {row['test_mae']:.4f})")
    (RESULTS / "crystograph-rotation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def qmof_step_rate(args: argparse.Namespace, crystals: int = 64, batch_size: int = 16) -> dict[str, Any]:
    """Training crystals/s of each model on ``crystals`` MOFs of the qmof5k subset (forward,
    backward and an AdamW step per batch of ``batch_size``, after one warm-up batch, one thread):
    what a QMOF epoch costs each model on this machine, without training one."""
    import numpy as np
    import torch

    from crystalgnn.data.prepared import prepare
    from crystalgnn.models import build_model
    from crystalgnn.paths import resolve_cache_dir

    torch.set_num_threads(max(args.threads, 1))
    data, _, _ = dataset("qmof5k", args)
    data = data.subset(list(range(crystals)))
    rows = []
    for cell in STUDIES["qmof5k"]:
        cfg = cell_config("qmof5k", cell, args, None, "none")
        prepared = prepare(data, cfg.graph_inputs(), cfg.features, resolve_cache_dir(args.graph_cache), workers=1, progress=False)
        torch.manual_seed(0)
        model = build_model(cfg).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = [prepared.store.collate(np.arange(k, min(k + batch_size, len(prepared.ids)))) for k in range(0, len(prepared.ids), batch_size)]
        seconds = []
        for batch in batches:
            start = time.perf_counter()
            model(batch).prediction.square().mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - start)
        rate = batch_size * (len(batches) - 1) / sum(seconds[1:])
        store = prepared.store
        rows.append({"cell": cell, "crystals_per_s": round(rate, 2), "atoms": int(store.node_ptr[-1]), "bonds": int(store.edge_ptr[-1]),
                     "bond_pairs": int(store.line_ptr[-1]),
                     "epoch_minutes_4085_train": round(4085 / rate / 60, 1), "peak_rss_mb": round(peak_rss_mb(), 1)})
        print(f"  {cell:14s} {rate:7.2f} crystals/s  (an epoch of the ~4,085 training MOFs: {4085 / rate / 60:.1f} min)", flush=True)
    result = {"crystals": crystals, "batch_size": batch_size, "threads": max(args.threads, 1), "rows": rows, "load": list(os.getloadavg())}
    (RESULTS / "crystograph-qmof-steps.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", choices=[*sorted(STUDIES), "size", "rotation", "qmof-steps"], required=True,
                        help="a study; 'size' collects the three size bins; 'rotation' reads the elastic-G runs; "
                             "'qmof-steps' times training steps on 64 MOFs")
    parser.add_argument("--cells", help="comma-separated cells of the study (default: all)")
    parser.add_argument("--rerun", default="", help="comma-separated cells whose earlier results are dropped, so they train again")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: run one cell in this process
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per cell (10)")
    parser.add_argument("--epochs", type=int, default=100, help="schedule length of every model (100; the budget usually stops it first)")
    parser.add_argument("--epochs-of", default="", help="schedule length per cell, e.g. cgcnn=60,crystograph=10")
    parser.add_argument("--speed-epochs", type=int, default=2, help="epochs of the speed study (2)")
    parser.add_argument("--pretrained", default="", help="run directory of `crystalgnn pretrain` for the -pretrained cell")
    parser.add_argument("--jobs", type=int, default=1, help="cells at once (1; 2 on a 2-core machine with --threads 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per cell (0: the free cores)")
    parser.add_argument("--seed", type=int, default=123, help="training seed, and the split seed of elastic-G and speed (123)")
    parser.add_argument("--out", type=Path, default=RESULTS / "crystograph", help="run directories of the cells")
    parser.add_argument("--data-cache", type=Path, default=DEFAULT_DATA_CACHE)
    parser.add_argument("--graph-cache", type=Path, default=DEFAULT_GRAPH_CACHE)
    args = parser.parse_args()
    if args.cell:
        summary = run_cell(args.study, args.cell, args)
        (args.out / args.study / f"{args.cell}.json").write_text(json.dumps(summary, indent=2) + "\n")
        return
    if args.study == "size":
        collect(list(SIZE_BINS), args)
        return
    if args.study == "rotation":
        rotation_study(args)
        return
    if args.study == "qmof-steps":
        qmof_step_rate(args)
        return
    cells = args.cells.split(",") if args.cells else list(STUDIES[args.study])
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        parser.error(f"unknown cells {unknown}; choose from {sorted(CELLS)}")
    launch(args.study, cells, args)
    collect([args.study], args)


if __name__ == "__main__":
    main()
