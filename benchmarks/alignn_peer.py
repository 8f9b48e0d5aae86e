"""Our ALIGNN (crystalgnn) against the public ``alignn`` package's pure-torch ALIGNN, side by side.

Task: mp_elasticity3k (``/work/shared/data/mp_elasticity3k``, CGCNN folder, id_prop.csv columns
id, K_VRH, G_VRH, Poisson), target log10 G_VRH (GPa). Rows with G <= 0 or a non-numeric G are
dropped and listed; one seeded 60/20/20 split of the rest (``--max-items``: a seeded subset
first) is written to ``benchmarks/results/alignn_peer/split.csv`` (``id,split``) and both sides
train, validate and test on exactly those ids; each side reports the CIFs it could not use.

Both sides: the same widths and depths (``--hidden``, ``--embedding``, ``--alignn-layers``,
``--gcn-layers``), batch size, AdamW (lr, weight decay) with a one-cycle schedule, MSE loss,
epochs, torch threads (``--threads``), seed; validation MAE every epoch, test MAE of the
best-validation weights. Each side runs in its own process, so peak RSS (``ru_maxrss``) is
measured the same way:

* peer: ``benchmarks/peer_alignn/train_pure.py`` in a separate venv
  (``~/.cache/crystalgnn/alignn-peer-venv``, created once by this script with
  ``pip install torch==2.13.0 alignn==2026.8.11``, checked to have no DGL): jarvis-tools reads the
  CIFs, ``build_pure_torch_graph`` (8 Å, 12 nearest per atom) builds graph + line graph,
  ``ALIGNNAtomWisePure`` trains with the recipe of ``alignn/train.py`` (see that script);
* ours: ``crystalgnn.training.run.train`` with ``defaults_for(--ours-model)`` in a subprocess
  of this script (``--ours-only``); graphs are built first by ``crystalgnn.data.prepared.prepare``
  into a fresh cache (timed: graph building), then ``train`` reuses that cache.

Reported per side: graph-building time (reading + graphs of all crystals), training throughput
(n_train x epochs / seconds of the training loop, per-epoch validation included, graph building
excluded), peak RSS, test MAE (log10 GPa) and end-to-end time (graph building + training + test
evaluation, from the first file read to the test MAE; interpreter start-up and imports are
reported apart as process time); then ours/peer ratios. The issue's goal: ours at least as
accurate and >= 1.5x faster end to end.

Caveats:

* graphs differ: the peer keeps at most 12 neighbours within 8 Å per atom (top-k by distance,
  directed, so in-degrees vary) and every bond pair at an atom forms a triplet; ours keeps every
  neighbour up to the 12th-neighbour distance (ties included) with a cutoff that grows past
  8 Å when needed, with every bond in both directions. Average atoms, edges and triplets per
  crystal are reported for both (triplets = sum over atoms of in-degree x out-degree);
* ours builds graphs in ``--threads`` worker processes (their memory is reported apart as
  ``peak_rss_children_mb``), the peer in one process; training uses ``--threads`` torch threads on
  both sides. Other jobs on the machine change the times: compare ratios from one invocation;
* ours standardizes the target (train mean/std), the peer learns log10 G directly; ours'
  end-to-end time also writes its run directory (predictions of every split, plots);
* with ``--ours-model cgcnn`` the "ours" side is CGCNN (a pipeline check while ALIGNN is
  being written; the ALIGNN widths and depths do not apply to it).

Usage::

    python benchmarks/alignn_peer.py                                 # 20 epochs, all 3,191 crystals
    python benchmarks/alignn_peer.py --only ours --precision bf16-mixed  # reuse the matching peer run
    python benchmarks/alignn_peer.py --max-items 200 --epochs 2 --hidden 64 \\
        --alignn-layers 1 --gcn-layers 1 --threads 1 --ours-model cgcnn   # smoke test

Results: ``benchmarks/results/alignn_peer-<size>-<precision>.json`` (table + both sides' JSON;
size = ``h<hidden>-l<alignn>+<gcn>-e<epochs>-n<max items>``) and, per side,
``benchmarks/results/alignn_peer/{peer-<size>,ours-<model>-<size>-<precision>}.json``; ours' run
directory is ``benchmarks/results/alignn_peer/run-ours-<model>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, RESULTS, machine_info, peak_rss_mb, print_table, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
#: Separate environment of the peer; never a dependency of crystalgnn, never inside the repository.
PEER_VENV = Path.home() / ".cache" / "crystalgnn" / "alignn-peer-venv"
#: torch pinned in the same pip command: otherwise pip resolves alignn's ``torch>=2.2.1`` to a CUDA
#: build and downloads gigabytes of NVIDIA wheels this CPU benchmark never uses.
PEER_PINS = ("torch==2.13.0", "alignn==2026.8.11")
PEER_MARKER = ".crystalgnn-peer-ok"
PEER_SCRIPT = HERE / "peer_alignn" / "train_pure.py"

#: Run inside the peer venv after installation: DGL must be absent (the pure-torch path is the point)
#: and the pure-torch model and graph builder must import.
_PEER_CHECK = """
import importlib.util, json, sys
dgl = True
try:
    import dgl  # noqa: F401
except Exception:
    dgl = False
if dgl:
    sys.exit("dgl is importable in the peer venv; the benchmark needs the DGL-free path")
from alignn.models.alignn_atomwise_pure import ALIGNNAtomWisePure, ALIGNNAtomWisePureConfig  # noqa: F401
from alignn.torch_graph_builder import build_pure_torch_graph, batch_torch_graph_pairs  # noqa: F401
import alignn, torch
from importlib.metadata import version
print(json.dumps({"alignn": version("alignn"), "torch": torch.__version__, "jarvis-tools": version("jarvis-tools"),
                  "ase": version("ase"), "matscipy": importlib.util.find_spec("matscipy") is not None}))
"""


def peer_python(venv: Path = PEER_VENV) -> Path:
    return venv / "bin" / "python"


def ensure_peer_venv(venv: Path = PEER_VENV, verbose: bool = True) -> dict[str, Any]:
    """Create the peer venv once (``python -m venv`` + one pinned ``pip install``) and check it.

    A marker file written last says the venv is complete and which pins it holds; a venv without
    it (an interrupted install) or with other pins is removed and made again. Returns the
    marker's content: pins, package versions, install seconds, and ``reused``.
    """
    marker = venv / PEER_MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("pins") == list(PEER_PINS) and peer_python(venv).exists():
            return {**info, "reused": True}
    if venv.exists():
        if verbose:
            print(f"removing incomplete or outdated peer venv {venv}", file=sys.stderr, flush=True)
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"creating the peer venv {venv}: pip install {' '.join(PEER_PINS)} (once) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(peer_python(venv)), "-m", "pip", "install", "--quiet", *PEER_PINS], check=True)
    install_seconds = time.perf_counter() - start
    check = subprocess.run([str(peer_python(venv)), "-c", _PEER_CHECK], check=False, capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"the peer venv {venv} failed its check:\n{check.stdout}{check.stderr}")
    info = {"pins": list(PEER_PINS), "versions": json.loads(check.stdout.strip().splitlines()[-1]),
            "install_seconds": round(install_seconds, 1), "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    marker.write_text(json.dumps(info, indent=2) + "\n")
    if verbose:
        print(f"peer venv ready in {install_seconds:.0f} s: {info['versions']}", file=sys.stderr, flush=True)
    return {**info, "reused": False}


DATASET = DATA / "mp_elasticity3k"
OUT = RESULTS / "alignn_peer"
#: 0-based column of id_prop.csv (0 is the id) and the same column among the targets.
G_COLUMN = 2
G_TARGET = G_COLUMN - 1
#: Settings that must agree for a saved side to be compared with a new run of the other side.
SHARED = ("epochs", "hidden", "embedding", "alignn_layers", "gcn_layers", "batch_size", "lr", "weight_decay",
          "threads", "max_items", "seed")


# --------------------------------------------------------------------------------------------
# Split


def make_split(max_items: int, seed: int, path: Path) -> dict[str, Any]:
    """Seeded 60/20/20 split of the id_prop rows with a usable G (> 0), written as ``id,split``.

    ``max_items > 0``: a seeded random subset of that many rows is split instead. Returns the
    counts and the dropped rows with their reason.
    """
    import csv

    import numpy as np

    usable, dropped = [], []
    with open(DATASET / "id_prop.csv", newline="") as handle:
        for row in csv.reader(handle):
            if not row:
                continue
            try:
                g = float(row[G_COLUMN])
            except (IndexError, ValueError):
                dropped.append({"id": row[0], "reason": f"G_VRH {row[G_COLUMN:G_COLUMN + 1]} is not a number"})
                continue
            if not np.isfinite(g) or g <= 0:
                dropped.append({"id": row[0], "reason": f"G_VRH = {g} has no log10"})
                continue
            usable.append(row[0])
    ids = usable
    if 0 < max_items < len(usable):
        pick = np.sort(np.random.default_rng(seed).choice(len(usable), size=max_items, replace=False))
        ids = [usable[i] for i in pick]
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train, n_val = round(0.6 * len(ids)), round(0.2 * len(ids))
    names = np.empty(len(ids), dtype=object)
    names[order[:n_train]] = "train"
    names[order[n_train : n_train + n_val]] = "val"
    names[order[n_train + n_val :]] = "test"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "split"])
        writer.writerows(zip(ids, names))
    counts = {part: int((names == part).sum()) for part in ("train", "val", "test")}
    return {"file": str(path), "n_rows": len(usable) + len(dropped), "n_usable": len(usable), "n_split": len(ids),
            **counts, "seed": seed, "dropped": dropped}


def read_split(path: Path) -> list[tuple[str, str]]:
    lines = Path(path).read_text().splitlines()
    return [tuple(line.split(",")[:2]) for line in lines[1:] if line.strip()]  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Our side (runs in a subprocess: ``--ours-only``)


def ours_config(args: argparse.Namespace, split_file: Path) -> Any:
    import dataclasses

    from crystalgnn.config import DataConfig, defaults_for

    cfg = defaults_for(args.ours_model)
    if args.ours_model == "alignn":
        arch = dataclasses.replace(cfg.model.arch, hidden_features=args.hidden, embedding_features=args.embedding,
                                   alignn_layers=args.alignn_layers, gcn_layers=args.gcn_layers,
                                   norm=args.norm or cfg.model.arch.norm)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch))
    return dataclasses.replace(
        cfg,
        data=DataConfig(transform="log10", on_error="skip"),
        train=dataclasses.replace(cfg.train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  weight_decay=args.weight_decay, threads=args.threads, split_file=str(split_file),
                                  seed=args.seed, precision=args.precision),
    )


def read_val_curve(metrics_csv: Path) -> list[float]:
    """Validation MAE per epoch from Lightning's CSV log (the sanity check is not logged)."""
    import csv

    if not metrics_csv.exists():
        return []
    by_epoch: dict[int, float] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("val_mae") not in (None, ""):
                by_epoch[int(row["epoch"])] = float(row["val_mae"])
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Our side: graphs into a fresh cache (timed), then ``train`` on the shared split."""
    import dataclasses
    import resource

    import lightning
    import torch

    from crystalgnn.data.prepared import prepare
    from crystalgnn.io import load_dataset
    from crystalgnn.training.run import train

    torch.set_num_threads(args.threads)
    tag = f"ours-{args.ours_model}"
    cache = OUT / f"graph-cache-{tag}"
    run_dir = OUT / f"run-{tag}"
    for folder in (cache, run_dir):
        if folder.exists():
            shutil.rmtree(folder)
    split_rows = read_split(args.split_file)

    # Training time = Lightning's fit (epochs with their validation passes); train() exposes no timing.
    fit_seconds: list[float] = []
    original_fit = lightning.pytorch.Trainer.fit

    def timed_fit(self: Any, *a: Any, **k: Any) -> Any:
        begin = time.perf_counter()
        try:
            return original_fit(self, *a, **k)
        finally:
            fit_seconds.append(time.perf_counter() - begin)

    lightning.pytorch.Trainer.fit = timed_fit  # type: ignore[method-assign]

    start = time.perf_counter()
    # 1. Reading + graphs of every crystal of the split into an empty cache.
    data = load_dataset(DATASET, targets=[G_TARGET], transform="log10")
    position = {str(i): k for k, i in enumerate(data.ids)}
    skipped = [{"id": p.id, "reason": p.reason} for p in data.problems if str(p.id) in dict(split_rows)]
    data = data.subset([position[i] for i, _ in split_rows if i in position])
    cfg = ours_config(args, args.split_file)
    prepared = prepare(data, cfg.graph, cfg.features, cache, workers=args.threads, progress=False)
    graph_seconds = time.perf_counter() - start
    skipped += [{"id": p.id, "reason": p.reason} for p in prepared.problems if p not in data.problems]
    usable = set(prepared.ids)
    split_file = args.split_file
    if any(i not in usable for i, _ in split_rows):
        # The split file may only name usable ids (file_split raises otherwise): drop the skipped ones.
        split_file = OUT / f"split-{tag}.csv"
        split_file.write_text("id,split\n" + "".join(f"{i},{s}\n" for i, s in split_rows if i in usable))
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, split_file=str(split_file)))
    store = prepared.store
    triplets = store.num_line_edges if cfg.graph.line_graph else None  # the cached line graph's size
    print(f"ours: graphs for {len(prepared)} crystals in {graph_seconds:.1f} s ({len(skipped)} skipped)", flush=True)

    # 2. Training, validation per epoch, test (train() reuses the cache filled above).
    train_start = time.perf_counter()
    result = train(data, run_dir, cfg, cache_dir=cache, workers=args.threads, progress=False)
    train_call_seconds = time.perf_counter() - train_start
    total_seconds = time.perf_counter() - start
    train_seconds = fit_seconds[-1] if fit_seconds else train_call_seconds
    metrics = result.metrics
    test = next(iter(metrics["test"].values()))
    val_curve = read_val_curve(run_dir / "logs" / "metrics.csv")
    n_split = {part: sum(1 for i, s in split_rows if s == part and i in usable) for part in ("train", "val", "test")}
    n_atoms = store.num_atoms.sum()
    shutil.rmtree(cache, ignore_errors=True)
    out = {
        "side": "ours",
        "model": args.ours_model,
        "config": json.loads(cfg.to_json()),
        "graph": {"strategy": cfg.graph.strategy, "cutoff": cfg.graph.cutoff, "max_neighbors": cfg.graph.max_neighbors,
                  "line_graph": cfg.graph.line_graph, "builder": "crystalgnn.data.prepared.prepare (fresh cache)"},
        "threads": torch.get_num_threads(),
        "n_train": n_split["train"],
        "n_val": n_split["val"],
        "n_test": n_split["test"],
        "n_parameters": metrics.get("n_parameters"),
        "atoms_per_crystal": float(store.num_atoms.mean()),
        "edges_per_crystal": float(store.num_edges.mean()),
        "triplets_per_crystal": None if triplets is None else float(triplets.mean()),
        "edges_per_atom": float(store.num_edges.sum() / n_atoms),
        "triplets_per_atom": None if triplets is None else float(triplets.sum() / n_atoms),
        "cached_bytes_per_crystal": store.nbytes_per_graph(),
        "graph_seconds": graph_seconds,
        "train_seconds": train_seconds,
        "train_seconds_source": "Lightning Trainer.fit" if fit_seconds else "whole train() call",
        "train_crystals_per_s": n_split["train"] * args.epochs / train_seconds,
        "eval_seconds": train_call_seconds - train_seconds,
        "eval_seconds_note": "train() minus fit: cache load, model set-up, predictions of every split, run-directory outputs",
        "total_seconds": total_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
        "test_mae": float(test["mae"]),
        "test_metrics": test,
        "best_val_mae": min(val_curve) if val_curve else None,
        "best_epoch": metrics.get("best_epoch"),
        "val_mae": val_curve,
        "run_dir": str(run_dir),
        "skipped": skipped,
    }
    print(f"ours: test MAE {out['test_mae']:.4f}; graphs {graph_seconds:.1f} s, training {train_seconds:.1f} s, "
          f"total {total_seconds:.1f} s", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# Orchestration


def side_command(args: argparse.Namespace, side: str, out: Path) -> list[str]:
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
              "--weight-decay", str(args.weight_decay), "--threads", str(args.threads), "--seed", str(args.seed)]
    widths = ["--hidden", str(args.hidden), "--embedding", str(args.embedding),
              "--alignn-layers", str(args.alignn_layers), "--gcn-layers", str(args.gcn_layers)]
    if side == "peer":
        return [str(peer_python()), str(PEER_SCRIPT), "--data", str(DATASET), "--split", str(args.split_file),
                "--target-column", str(G_COLUMN), "--transform", "log10", *common, *widths, "--out", str(out)]
    return [sys.executable, str(Path(__file__).resolve()), "--ours-only", "--ours-out", str(out),
            "--split-file", str(args.split_file), "--ours-model", args.ours_model, "--max-items", str(args.max_items),
            "--precision", args.precision, *(["--norm", args.norm] if args.norm else []),
            *common, *widths]


def run_side(args: argparse.Namespace, side: str, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Run one side in its own process (output streamed); its JSON plus the process wall time."""
    if out.exists():
        out.unlink()
    print(f"\n=== {side}: {' '.join(side_command(args, side, out))}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    begin = time.perf_counter()
    done = subprocess.run(side_command(args, side, out), check=False, env=env)
    process_seconds = time.perf_counter() - begin
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"{side} side failed (exit status {done.returncode}); see its output above")
    result = json.loads(out.read_text())
    result.update(process_seconds=process_seconds, settings_of_benchmark=settings)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def saved_side(out: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """A side saved by an earlier run with the same shared settings and split, else None."""
    if not out.exists():
        return None
    result = json.loads(out.read_text())
    if result.get("settings_of_benchmark") != settings:
        return None
    return {**result, "reused_from": str(out)}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def compare(ours: dict[str, Any] | None, peer: dict[str, Any] | None) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """Table rows (metric, ours, peer, ours/peer) and the ratios."""
    metrics = [
        ("crystals train/val/test", None, 0),
        ("atoms per crystal", "atoms_per_crystal", 1),
        ("edges per crystal", "edges_per_crystal", 1),
        ("triplets per crystal", "triplets_per_crystal", 0),
        ("graph building (s)", "graph_seconds", 1),
        ("model set-up (s)", "setup_seconds", 1),
        ("training (s)", "train_seconds", 1),
        ("training throughput (crystals/s)", "train_crystals_per_s", 1),
        ("test evaluation etc. (s)", "eval_seconds", 1),
        ("end to end (s)", "total_seconds", 1),
        ("process incl. start-up (s)", "process_seconds", 1),
        ("peak RSS (MB)", "peak_rss_mb", 0),
        ("test MAE (log10 GPa)", "test_mae", 4),
        ("best val MAE (log10 GPa)", "best_val_mae", 4),
        ("parameters", "n_parameters", 0),
    ]
    rows, ratios = [], {}
    for label, key, digits in metrics:
        if key is None:
            cells = [f"{s['n_train']}/{s['n_val']}/{s['n_test']}" if s else "—" for s in (ours, peer)]
            rows.append((label, *cells, ""))
            continue
        a = ours.get(key) if ours else None
        b = peer.get(key) if peer else None
        ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        if ratio is not None:
            ratios[key] = ratio
        rows.append((label, fmt(a, digits), fmt(b, digits), fmt(ratio, 3 if key == "test_mae" else 2)))
    verdict: dict[str, Any] = {"ratios_ours_over_peer": ratios}
    if ours and peer:
        speedup = peer["total_seconds"] / ours["total_seconds"]
        verdict.update(
            speedup_end_to_end=speedup,
            at_least_as_accurate=ours["test_mae"] <= peer["test_mae"],
            faster_1_5x_end_to_end=speedup >= 1.5,
        )
        verdict["goal_met"] = verdict["at_least_as_accurate"] and verdict["faster_1_5x_end_to_end"]
    return rows, verdict


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256, help="hidden features of both ALIGNNs")
    parser.add_argument("--embedding", type=int, default=64, help="embedding features of the bond/angle expansions")
    parser.add_argument("--alignn-layers", type=int, default=4)
    parser.add_argument("--gcn-layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate = one-cycle maximum")
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides; our graph-building workers")
    parser.add_argument("--max-items", type=int, default=0, help="seeded random subset of the crystals (0: all 3,191)")
    parser.add_argument("--seed", type=int, default=123, help="split, subset, initialization and shuffling")
    parser.add_argument("--only", choices=["ours", "peer", "both"], default="both",
                        help="run one side; the other is taken from its saved JSON if that used the same settings")
    parser.add_argument("--ours-model", choices=["alignn", "cgcnn"], default="alignn",
                        help="our model (cgcnn: a pipeline check while ours' ALIGNN is not ready)")
    parser.add_argument("--precision", choices=["32", "bf16-mixed"], default="32",
                        help="our training precision (the peer trains in float32; bf16-mixed: autocast to bfloat16)")
    parser.add_argument("--norm", choices=["batch", "layer"],
                        help="our ALIGNN's normalization (default: ALIGNNConfig's; the peer always uses layer norm)")
    parser.add_argument("--ours-only", action="store_true", help="internal: run our side in this process")
    parser.add_argument("--ours-out", type=Path, help="internal: JSON written by --ours-only")
    parser.add_argument("--split-file", type=Path, default=OUT / "split.csv", help="internal: the id,split file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.ours_only:
        result = run_ours(args)
        args.ours_out.parent.mkdir(parents=True, exist_ok=True)
        args.ours_out.write_text(json.dumps(result, indent=2, default=float) + "\n")
        return

    split = make_split(args.max_items, args.seed, args.split_file)
    print(f"split: {split['train']}/{split['val']}/{split['test']} of {split['n_split']} crystals "
          f"({len(split['dropped'])} of {split['n_rows']} rows dropped: G <= 0 or not a number) -> {args.split_file}")
    shared = {k: getattr(args, k) for k in SHARED}
    split_ids = args.split_file.read_text()
    import hashlib

    shared["split_sha1"] = hashlib.sha1(split_ids.encode()).hexdigest()
    size = f"h{args.hidden}-l{args.alignn_layers}+{args.gcn_layers}-e{args.epochs}-n{args.max_items}"
    peer_out, ours_out = OUT / f"peer-{size}.json", OUT / f"ours-{args.ours_model}-{size}-{args.precision}.json"
    results: dict[str, Any] = {"machine": machine_info(), "settings": {**vars(args), "shared": shared}, "split": split}
    results["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in results["settings"].items()}

    peer = ours = None
    if args.only in ("peer", "both"):
        results["peer_venv"] = ensure_peer_venv()
        peer = run_side(args, "peer", peer_out, shared)
    else:
        peer = saved_side(peer_out, shared)
    if args.only in ("ours", "both"):
        ours = run_side(args, "ours", ours_out, shared)
    else:
        ours = saved_side(ours_out, shared)

    rows, verdict = compare(ours, peer)
    print()
    print(f"log10 G_VRH, mp_elasticity3k: ours = crystalgnn {args.ours_model}, peer = alignn "
          f"{PEER_PINS[1].split('==')[1]} ALIGNNAtomWisePure; {args.epochs} epochs, {args.threads} thread(s)")
    print_table(rows, ("", f"ours ({args.ours_model})", "peer (alignn)", "ours/peer"))
    if "speedup_end_to_end" in verdict:
        print(f"\nend-to-end speed-up (peer/ours): {verdict['speedup_end_to_end']:.2f}x; "
              f"ours at least as accurate: {verdict['at_least_as_accurate']}; "
              f"goal (as accurate and >= 1.5x faster) met: {verdict['goal_met']}"
              + (" (ours is CGCNN: a pipeline check, not the ALIGNN comparison)" if ours and ours["model"] != "alignn" else ""))
    for name, side in (("ours", ours), ("peer", peer)):
        if side and side.get("skipped"):
            print(f"{name} skipped {len(side['skipped'])}: {side['skipped'][:5]}")
        if side and side.get("reused_from"):
            print(f"{name}: reused {side['reused_from']} (same settings and split)")
    results.update(ours=ours, peer=peer, comparison=verdict, table=[list(r) for r in rows],
                   peak_rss_mb_orchestrator=peak_rss_mb())
    path = write_results(f"alignn_peer-{size}-{args.precision}.json", results)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
