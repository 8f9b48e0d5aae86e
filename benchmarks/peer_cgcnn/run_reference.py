"""Peer side of ``benchmarks/cgcnn_peer.py``: the reference CGCNN's own ``main.py``, instrumented.

This file is ours; it holds no reference code. It runs the reference's unmodified
``main.py`` / ``cgcnn/data.py`` / ``cgcnn/model.py`` from a scratch copy (``--reference``, made by
``cgcnn_peer.py`` outside the repository) on a dataset folder in the reference's layout
(``id_prop.csv`` without header, ``atom_init.json``, ``<id>.cif``), in this process:

1. sets the torch threads and seeds torch's generator (the reference never seeds torch, so its
   initial weights would differ from run to run; its own ``random.seed(123)`` shuffle is kept);
2. sets ``sys.argv`` to the reference command line (``--train-size/--val-size/--test-size`` so
   the split is the shared one, see ``cgcnn_peer.py``; SGD, lr, momentum, milestones, batch,
   epochs, widths as given) and imports ``main.py`` as a module (it parses its arguments at import);
3. wraps, without changing what they compute: ``CIFData.__getitem__`` (its lru_cache: a call that
   adds a cache miss is a graph being built — CIF read, ``get_all_neighbors``, Gaussian expansion —
   and is timed as graph building), ``main.train`` and ``main.validate`` (wall time per call, and
   which call builds how much); then calls ``main.main()``: training, validation per epoch,
   checkpoints in the working directory, the best-validation checkpoint tested;
4. checks that the reference's shuffle put the split's train/val/test ids where its loaders take
   them, reads its ``test_results.csv`` (id, target, prediction) for the test MAE, and writes one
   JSON (times, builds, peak RSS ``ru_maxrss``).

Usage (normally started by ``benchmarks/cgcnn_peer.py``)::

    python benchmarks/peer_cgcnn/run_reference.py --reference REF_DIR --data DATA_DIR \\
        --split split.csv --workdir RUN_DIR --epochs 20 --threads 1 --out peer.json
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path


def read_split(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return [(r[0], r[1]) for r in rows[1:] if r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, required=True, help="folder holding main.py and cgcnn/")
    parser.add_argument("--data", type=Path, required=True, help="dataset folder in the reference's layout")
    parser.add_argument("--split", type=Path, required=True, help="id,split file (train/val/test)")
    parser.add_argument("--workdir", type=Path, required=True, help="working directory (checkpoints, test_results.csv)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--milestones", type=int, nargs="+", default=[100])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=123, help="torch.manual_seed before the model is built")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    process_start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    split = read_split(args.split)
    parts = {p: [i for i, s in split if s == p] for p in ("train", "val", "test")}

    sys.path.insert(0, str(args.reference.resolve()))
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)
    ref_argv = [
        "main.py", str(args.data.resolve()),
        "--disable-cuda", "--workers", "0",
        "--train-size", str(len(parts["train"])), "--val-size", str(len(parts["val"])),
        "--test-size", str(len(parts["test"])),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--lr", str(args.lr), "--momentum", str(args.momentum), "--lr-milestones", *map(str, args.milestones),
        "--optim", "SGD", "--atom-fea-len", "64", "--h-fea-len", "128", "--n-conv", "3", "--n-h", "1",
    ]

    import cgcnn.data as ref_data

    # ---- instrumentation (wrappers only; what the reference computes is unchanged)
    cached = ref_data.CIFData.__getitem__
    builds = {"phase": "setup", "seconds": {}, "count": {}}

    def timed_getitem(self, idx):
        misses = cached.cache_info().misses
        begin = time.perf_counter()
        out = cached(self, idx)
        if cached.cache_info().misses > misses:
            phase = builds["phase"]
            builds["seconds"][phase] = builds["seconds"].get(phase, 0.0) + time.perf_counter() - begin
            builds["count"][phase] = builds["count"].get(phase, 0) + 1
        return out

    timed_getitem.cache_info = cached.cache_info  # type: ignore[attr-defined]
    ref_data.CIFData.__getitem__ = timed_getitem

    sys.argv = ref_argv
    ref_main = importlib.import_module("main")
    epochs: list[dict] = []
    validations: list[dict] = []
    original_train, original_validate, original_main_fn = ref_main.train, ref_main.validate, ref_main.main
    timeline: dict = {}

    def train(train_loader, *a, **k):
        builds["phase"] = f"train{len(epochs) + 1}"
        begin = time.perf_counter()
        out = original_train(train_loader, *a, **k)
        seconds = time.perf_counter() - begin
        n = len(train_loader.sampler)
        built = builds["seconds"].get(builds["phase"], 0.0)
        epochs.append({"epoch": len(epochs) + 1, "seconds": seconds, "crystals": n, "crystals_per_s": n / seconds,
                       "graph_build_seconds": built, "graphs_built": builds["count"].get(builds["phase"], 0),
                       "load_average_1": os.getloadavg()[0], "time": time.time()})
        print(f"[peer] epoch {len(epochs)}: {n / seconds:.0f} crystals/s ({seconds:.1f} s, of which building "
              f"graphs {built:.1f} s)", flush=True)
        return out

    def validate(loader, *a, test=False, **k):
        builds["phase"] = "test" if test else f"val{len(validations) + 1}"
        begin = time.perf_counter()
        out = original_validate(loader, *a, test=test, **k)
        record = {"seconds": time.perf_counter() - begin, "crystals": len(loader.sampler), "mae": float(out),
                  "graph_build_seconds": builds["seconds"].get(builds["phase"], 0.0)}
        if test:
            timeline["test"] = record
        else:
            validations.append(record)
        return out

    ref_main.train, ref_main.validate = train, validate

    # The split: CIFData shuffles id_prop.csv with random.seed(123); cgcnn_peer.py wrote the rows so
    # that the shuffled order is train | val | test. Check it on the reference's own dataset object.
    original_cifdata = ref_main.CIFData

    def checked_cifdata(*a, **k):
        dataset = original_cifdata(*a, **k)
        order = [row[0] for row in dataset.id_prop_data]
        expected = parts["train"] + parts["val"] + parts["test"]
        if order != expected:
            raise SystemExit("the reference's shuffle does not give the split order: the id_prop.csv was not "
                             "written for this split (seed or length differ)")
        return dataset

    ref_main.CIFData = checked_cifdata
    builds["phase"] = "normalizer_sample"

    main_start = time.perf_counter()
    original_main_fn()
    main_seconds = time.perf_counter() - main_start

    with open(args.workdir / "test_results.csv", newline="") as handle:
        rows = [r for r in csv.reader(handle) if r]
    test_ids = {r[0] for r in rows}
    if test_ids != set(parts["test"]):
        raise SystemExit("test_results.csv does not hold exactly the split's test ids")
    test_mae = sum(abs(float(r[1]) - float(r[2])) for r in rows) / len(rows)
    graph_seconds = sum(builds["seconds"].values())
    steady = epochs[1:] or epochs
    out = {
        "side": "reference",
        "reference_argv": ref_argv,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_test": len(parts["test"]),
        "epochs": epochs,
        "validations": validations,
        "test": timeline.get("test"),
        "graph_build_seconds_by_phase": builds["seconds"],
        "graphs_built_by_phase": builds["count"],
        "graph_build_seconds": graph_seconds,
        "train_seconds": sum(e["seconds"] for e in epochs),
        "val_seconds": sum(v["seconds"] for v in validations),
        "first_epoch_crystals_per_s": epochs[0]["crystals_per_s"],
        "first_epoch_crystals_per_s_without_graph_building":
            epochs[0]["crystals"] / (epochs[0]["seconds"] - epochs[0]["graph_build_seconds"]),
        "steady_crystals_per_s": sum(e["crystals"] for e in steady) / sum(e["seconds"] for e in steady),
        "train_crystals_per_s_all_epochs": sum(e["crystals"] for e in epochs) / sum(e["seconds"] for e in epochs),
        "end_to_end_seconds": main_seconds,
        "process_seconds": time.perf_counter() - process_start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "test_mae": test_mae,
        "best_val_mae": min(v["mae"] for v in validations),
        "val_mae": [v["mae"] for v in validations],
        "load_average_1_5_15_end": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"[peer] test MAE {test_mae:.4f}; steady {out['steady_crystals_per_s']:.0f} crystals/s; "
          f"graphs {graph_seconds:.1f} s; end to end {main_seconds:.1f} s; peak RSS {out['peak_rss_mb']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
