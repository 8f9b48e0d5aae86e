"""Peer side of ``benchmarks/alignn_peer.py``: the public ``alignn`` package's pure-torch ALIGNN.

Runs inside the peer's own virtual environment (``torch`` + ``alignn``, no DGL); it imports
nothing from crystalgnn or pymatgen. Given a CGCNN folder (``<id>.cif`` + ``id_prop.csv`` without
header) and a split file (``id,split``), it

1. reads every CIF of the split with jarvis-tools' own parser, the cell as written
   (``Atoms.from_cif(path, use_cif2cell=False, get_primitive_atoms=False)``), and builds ``(g, lg)`` with
   ``alignn.torch_graph_builder.build_pure_torch_graph`` (8 Å, the 12 nearest neighbours per atom,
   CGCNN atom features; matscipy is not installed, so the package's torch neighbour search runs),
   timing all of it;
2. trains ``ALIGNNAtomWisePure`` as a plain property model (mean readout, no forces, stress,
   penalty or ZBL) with the recipe of ``alignn/train.py``: AdamW on ``group_decay`` parameter
   groups (no decay on biases and norms), OneCycleLR stepped per batch (pct_start 0.3), batches
   of ``batch_torch_graph_pairs``, the training set shuffled each epoch with the seed and its
   last partial batch dropped;
3. evaluates the validation MAE after every epoch, keeps the best weights in memory, and
   reports the test MAE of those weights;
4. writes one JSON with times, peak RSS, graph sizes, metrics and the skipped ids.

Differences from ``alignn/train.py``, on purpose: the loss is MSE (``--loss``; the package's
loop uses ``nn.L1Loss`` for every ``alignn_*`` model whatever ``criterion`` says), the whole
validation set is scored (its loader drops the last partial batch), and the test set is scored
with the best-validation weights (its loop keeps ``best_model = net``, the live model, so its
"best" model is the last one). No LMDB: graphs stay in memory. CIFs: ``Atoms.from_cif(path)``
as the package calls it first shells out to ``cif2cell`` (absent here: a failing ``sh`` and a
printed error per file), then parses the file itself and reduces it to spglib's primitive cell;
on mp_elasticity3k that reduction takes ~20 s (1.2 s without), changes the atom count of 48
crystals and, for ~20 slightly distorted cells, the structure itself (spglib symmetrizes), so
the cell is read as written unless ``--primitive``.

Usage (normally started by ``benchmarks/alignn_peer.py``)::

    ~/.cache/crystalgnn/alignn-peer-venv/bin/python benchmarks/peer_alignn/train_pure.py \\
        --data /work/shared/data/mp_elasticity3k --split split.csv --target-column 2 \\
        --transform log10 --epochs 20 --out peer.json
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from alignn.models.alignn_atomwise_pure import (
    ALIGNNAtomWisePure,
    ALIGNNAtomWisePureConfig,
)
from alignn.torch_graph_builder import batch_torch_graph_pairs, build_pure_torch_graph
from alignn.utils import group_decay
from jarvis.core.atoms import Atoms


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def read_targets(data_dir: Path, column: int) -> dict[str, str]:
    """``id -> raw text`` of 0-based ``column`` of ``id_prop.csv`` (column 0 is the id)."""
    values: dict[str, str] = {}
    with open(data_dir / "id_prop.csv", newline="") as handle:
        for row in csv.reader(handle):
            if row and not row[0].startswith("#"):
                values[row[0].strip()] = row[column].strip() if len(row) > column else ""
    return values


def read_split(path: Path) -> list[tuple[str, str]]:
    """``(id, split)`` rows of an ``id,split`` file; a header row ``id,...`` is skipped."""
    rows = []
    with open(path, newline="") as handle:
        for k, row in enumerate(csv.reader(handle)):
            if not row or row[0].startswith("#") or (k == 0 and row[0].strip().lower() == "id"):
                continue
            split = row[1].strip().lower()
            split = {"valid": "val", "validation": "val"}.get(split, split)
            if split not in ("train", "val", "test"):
                raise ValueError(f"{path}: unknown split {row[1]!r} for id {row[0]!r}")
            rows.append((row[0].strip(), split))
    return rows


def transformed(text: str, transform: str) -> float | str:
    """The target value, or a string saying why it is unusable."""
    try:
        value = float(text)
    except ValueError:
        return f"target {text!r} is not a number"
    if not math.isfinite(value):
        return f"target {text!r} is not finite"
    if transform == "log10":
        if value <= 0:
            return f"target {value} <= 0 has no log10"
        return math.log10(value)
    return value


def line_graph_pairs(src: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> int:
    """Number of (u→v, v→w) bond pairs, sum over atoms of in-degree × out-degree (DGL's
    ``line_graph`` with backtracking, as ALIGNN's line graph) — the formula both sides use."""
    indeg = torch.bincount(dst, minlength=num_nodes)
    outdeg = torch.bincount(src, minlength=num_nodes)
    return int((indeg * outdeg).sum())


def build_all(args: argparse.Namespace, split_rows: list[tuple[str, str]], targets: dict[str, str]):
    """Read and graph every crystal of the split; returns items per split and the skipped ids."""
    items: dict[str, list] = {"train": [], "val": [], "test": []}
    skipped: list[dict[str, str]] = []
    sizes = {"atoms": [], "edges": [], "triplets": []}
    three_body = args.three_body_cutoff if args.three_body_cutoff > 0 else None
    for crystal_id, split in split_rows:
        if crystal_id not in targets:
            skipped.append({"id": crystal_id, "reason": "not in id_prop.csv"})
            continue
        y = transformed(targets[crystal_id], args.transform)
        if isinstance(y, str):
            skipped.append({"id": crystal_id, "reason": y})
            continue
        cif = args.data / f"{crystal_id}.cif"
        try:
            atoms = Atoms.from_cif(str(cif), use_cif2cell=False, get_primitive_atoms=args.primitive)
            if atoms.num_atoms == 0:
                raise ValueError("no atoms read")
            g, lg = build_pure_torch_graph(
                atoms,
                two_body_cutoff=args.cutoff,
                three_body_cutoff=three_body,
                max_neighbors=args.max_neighbors,
                atom_features="cgcnn",
                use_matscipy_topology=True,
            )
        except Exception as err:  # noqa: BLE001 — any failure to read or graph is a skip with its reason
            skipped.append({"id": crystal_id, "reason": f"{type(err).__name__}: {err}"[:300]})
            continue
        if g.num_edges == 0:
            skipped.append({"id": crystal_id, "reason": f"no neighbour within {args.cutoff} Å"})
            continue
        items[split].append((crystal_id, g, lg, float(y)))
        sizes["atoms"].append(g.num_nodes)
        sizes["edges"].append(g.num_edges)
        sizes["triplets"].append(lg.num_edges)
    return items, skipped, sizes


def predict(model: torch.nn.Module, items: list, batch_size: int) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            g, lg = batch_torch_graph_pairs([(it[1], it[2]) for it in chunk])
            pred = model((g, lg, None))["out"].reshape(-1)
            out.append(pred.detach().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="CGCNN folder: <id>.cif + id_prop.csv (no header)")
    parser.add_argument("--split", type=Path, required=True, help="CSV id,split (train/val/test)")
    parser.add_argument("--target-column", type=int, default=2, help="0-based column of id_prop.csv (0 is the id)")
    parser.add_argument("--transform", choices=["none", "log10"], default="log10")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--loss", choices=["mse", "l1"], default="mse", help="mse (as ours); the package's loop uses l1")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--embedding", type=int, default=64)
    parser.add_argument("--alignn-layers", type=int, default=4)
    parser.add_argument("--gcn-layers", type=int, default=4)
    parser.add_argument("--cutoff", type=float, default=8.0, help="two-body cutoff (Å)")
    parser.add_argument("--max-neighbors", type=int, default=12)
    parser.add_argument("--three-body-cutoff", type=float, default=0.0,
                        help="only bonds this short form triplets; 0: the two-body cutoff, i.e. every bond "
                             "(the builder's default; the package's training config uses 3.5)")
    parser.add_argument("--primitive", action="store_true",
                        help="reduce each cell to spglib's primitive cell, as Atoms.from_cif does by default "
                             "(default here: the cell as written, the structure our side reads)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    # 1. Structures and graphs.
    split_rows = read_split(args.split)
    targets = read_targets(args.data, args.target_column)
    items, skipped, sizes = build_all(args, split_rows, targets)
    graph_seconds = time.perf_counter() - start
    train_items, val_items, test_items = items["train"], items["val"], items["test"]
    print(f"peer: graphs for {sum(len(v) for v in items.values())} crystals in {graph_seconds:.1f} s "
          f"({len(skipped)} skipped); train {len(train_items)}, val {len(val_items)}, test {len(test_items)}", flush=True)
    if len(train_items) < args.batch_size or not val_items or not test_items:
        sys.exit(f"peer: too few usable crystals (train {len(train_items)} < batch {args.batch_size}, or empty val/test)")

    # 2. Model, optimizer, schedule.
    setup_start = time.perf_counter()
    config = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure",
        alignn_layers=args.alignn_layers,
        gcn_layers=args.gcn_layers,
        atom_input_features=92,
        hidden_features=args.hidden,
        embedding_features=args.embedding,
        output_features=1,
        calculate_gradient=False,
        gradwise_weight=0.0,
        atomwise_weight=0.0,
        stresswise_weight=0.0,
        energy_mult_natoms=False,
        use_penalty=False,
        use_zbl=False,
    )
    model = ALIGNNAtomWisePure(config)
    n_parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(group_decay(model), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(train_items) // args.batch_size  # the reference's drop_last=True
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.3
    )
    loss_fn = F.mse_loss if args.loss == "mse" else F.l1_loss
    val_true = np.array([it[3] for it in val_items])
    setup_seconds = time.perf_counter() - setup_start

    # 3. Training with a validation pass per epoch; best weights kept in memory.
    rng = np.random.default_rng(args.seed)
    train_start = time.perf_counter()
    train_only = val_time = 0.0
    val_curve, loss_curve = [], []
    best_val, best_epoch, best_state = math.inf, -1, None
    for epoch in range(args.epochs):
        epoch_start = time.perf_counter()
        model.train()
        order = rng.permutation(len(train_items))
        total_loss = 0.0
        for step in range(steps_per_epoch):
            chunk = [train_items[i] for i in order[step * args.batch_size : (step + 1) * args.batch_size]]
            g, lg = batch_torch_graph_pairs([(it[1], it[2]) for it in chunk])
            y = torch.tensor([it[3] for it in chunk], dtype=torch.float32)
            optimizer.zero_grad()
            out = model((g, lg, None))["out"].reshape(-1)
            loss = loss_fn(out, y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach())
        train_only += time.perf_counter() - epoch_start
        val_start = time.perf_counter()
        val_mae = float(np.abs(predict(model, val_items, args.batch_size) - val_true).mean())
        val_time += time.perf_counter() - val_start
        val_curve.append(val_mae)
        loss_curve.append(total_loss / max(steps_per_epoch, 1))
        if val_mae < best_val:
            best_val, best_epoch = val_mae, epoch
            best_state = copy.deepcopy(model.state_dict())
        print(f"peer: epoch {epoch + 1}/{args.epochs}  train {args.loss} {loss_curve[-1]:.4f}  val MAE {val_mae:.4f}  "
              f"({time.perf_counter() - epoch_start:.1f} s)", flush=True)
    train_seconds = time.perf_counter() - train_start

    # 4. Test with the best-validation weights.
    eval_start = time.perf_counter()
    model.load_state_dict(best_state)
    test_true = np.array([it[3] for it in test_items])
    test_pred = predict(model, test_items, args.batch_size)
    test_mae = float(np.abs(test_pred - test_true).mean())
    eval_seconds = time.perf_counter() - eval_start
    total_seconds = time.perf_counter() - start
    print(f"peer: test MAE {test_mae:.4f} (best val {best_val:.4f} at epoch {best_epoch + 1}); "
          f"graphs {graph_seconds:.1f} s, training {train_seconds:.1f} s, total {total_seconds:.1f} s", flush=True)

    from importlib.metadata import version

    n_train = len(train_items)
    result = {
        "side": "peer",
        "package": {"alignn": version("alignn"), "torch": torch.__version__, "jarvis-tools": version("jarvis-tools")},
        "model": "alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure",
        "model_config": config.model_dump() if hasattr(config, "model_dump") else config.dict(),
        "graph": {"builder": "alignn.torch_graph_builder.build_pure_torch_graph",
                  "reader": f"jarvis Atoms.from_cif(use_cif2cell=False, get_primitive_atoms={args.primitive})", "two_body_cutoff": args.cutoff,
                  "three_body_cutoff": args.three_body_cutoff or args.cutoff, "max_neighbors": args.max_neighbors,
                  "atom_features": "cgcnn", "neighbour_search": "torch (matscipy absent)"},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "n_train": n_train,
        "n_val": len(val_items),
        "n_test": len(test_items),
        "n_parameters": int(n_parameters),
        "atoms_per_crystal": float(np.mean(sizes["atoms"])),
        "edges_per_crystal": float(np.mean(sizes["edges"])),
        "triplets_per_crystal": float(np.mean(sizes["triplets"])),
        "edges_per_atom": float(np.sum(sizes["edges"]) / np.sum(sizes["atoms"])),
        "triplets_per_atom": float(np.sum(sizes["triplets"]) / np.sum(sizes["atoms"])),
        "graph_seconds": graph_seconds,
        "setup_seconds": setup_seconds,
        "train_seconds": train_seconds,
        "train_step_seconds": train_only,
        "val_seconds": val_time,
        "train_crystals_per_s": n_train * args.epochs / train_seconds,
        "eval_seconds": eval_seconds,
        "total_seconds": total_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "test_mae": test_mae,
        "best_val_mae": best_val,
        "best_epoch": best_epoch + 1,
        "val_mae": val_curve,
        "train_loss": loss_curve,
        "test_predictions": {"ids": [it[0] for it in test_items], "true": test_true.tolist(), "pred": test_pred.tolist()},
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
