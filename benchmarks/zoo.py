"""Train the model zoo and package it into ``src/crystalgnn/zoo/<name>/`` (resumable).

Each zoo model is trained on its task's whole dataset except a seeded held-out test split
(90/5/5 after one shuffle with seed 123; the 5 % validation split picks the best epoch), within a
stated budget, then packaged: weights (safetensors + JSON), config.json, the test ids and the
model's test predictions, and a model card (card.json, card.md) with the test metrics.

    python benchmarks/zoo.py                 # train what is missing (run dirs under benchmarks/results/zoo/runs), package all
    python benchmarks/zoo.py --package-only  # package the finished runs again
    python benchmarks/zoo.py --only log10_K  # one model

A finished run (metrics.json) is never retrained; a killed one is resumed (its time budget too). Check a card afterwards with
``crystalgnn evaluate zoo:NAME DATA --test-split``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "zoo" / "runs"
ZOO = ROOT / "src" / "crystalgnn" / "zoo"
DATA = ROOT.parent / "shared" / "data"

#: Reference CGCNN's pre-trained models, as its paper reports them (Table I; ../shared/data/README.md).
REFERENCE_CGCNN = {"formation_energy": 0.039, "band_gap": 0.388, "log10_K": 0.054, "log10_G": 0.087}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    task: str
    model: str
    target_label: str
    epochs: int
    minutes: float
    batch_size: int = 128
    threads: int = 2
    data_help: str = ""
    #: How a user gets the data and reproduces the card's test metrics.
    evaluate: str = ""


ENTRIES = [
    # the schedule is fitted to the minutes (TrainConfig.schedule_to_budget): epochs is an upper bound
    ZooEntry("formation_energy", "mp37k_formation_energy", "cgcnn", "formation energy per atom", epochs=300, minutes=60.0,
             batch_size=64, threads=1,
             data_help="the mp37k id_prop.csv (column 0) with its CIFs extracted from cifs_data.tar.gz",
             evaluate="mkdir -p mp37k && tar xzf ../shared/data/mp37k/cifs_data.tar.gz -C mp37k && cp ../shared/data/mp37k/id_prop.csv mp37k/ && crystalgnn evaluate zoo:formation_energy mp37k -t 0 --test-split"),
    ZooEntry("band_gap", "mp37k_band_gap", "cgcnn", "PBE band gap", epochs=300, minutes=60.0, batch_size=64, threads=1,
             data_help="the mp37k id_prop.csv (column 1) with its CIFs extracted from cifs_data.tar.gz",
             evaluate="mkdir -p mp37k && tar xzf ../shared/data/mp37k/cifs_data.tar.gz -C mp37k && cp ../shared/data/mp37k/id_prop.csv mp37k/ && crystalgnn evaluate zoo:band_gap mp37k -t 1 --test-split"),
    ZooEntry("log10_K", "mp_elasticity3k_log10_K", "cgcnn", "log10 of the VRH bulk modulus", epochs=60, minutes=8.0, batch_size=64,
             threads=1, data_help="../shared/data/mp_elasticity3k (column 0, GPa; the model learns log10)",
             evaluate="crystalgnn evaluate zoo:log10_K ../shared/data/mp_elasticity3k -t 0 --test-split"),
    ZooEntry("log10_G", "mp_elasticity3k_log10_G", "cgcnn", "log10 of the VRH shear modulus", epochs=60, minutes=8.0, batch_size=64,
             threads=1, data_help="../shared/data/mp_elasticity3k (column 1, GPa; the model learns log10)",
             evaluate="crystalgnn evaluate zoo:log10_G ../shared/data/mp_elasticity3k -t 1 --test-split"),
]


def run_config(entry: ZooEntry):
    from crystalgnn.benchmark import get_task
    from crystalgnn.config import DataConfig, defaults_for

    task = get_task(entry.task)
    cfg = defaults_for(entry.model)
    train = dataclasses.replace(cfg.train, epochs=entry.epochs, batch_size=entry.batch_size, max_minutes=entry.minutes,
                                split_fractions=(0.9, 0.05, 0.05), seed=123, threads=entry.threads)
    data = DataConfig(source=entry.task, targets=(task.target,), transform=task.transform)
    return task, dataclasses.replace(cfg, data=data, train=train)


def train_entry(entry: ZooEntry) -> Path:
    from crystalgnn.training.run import train

    run_dir = RUNS / entry.name
    if (run_dir / "metrics.json").exists():
        print(f"{entry.name}: finished run in {run_dir}, kept", file=sys.stderr)
        return run_dir
    task, cfg = run_config(entry)
    dataset = task.load(DATA)
    # a killed run (a session's end) continues from its last epoch, its clock included, so a
    # budget longer than one session is trained over several
    resume = (run_dir / "checkpoints" / "last.safetensors").exists()
    print(f"{entry.name}: {'resuming' if resume else 'training'} {entry.model} on {len(dataset)} crystals of {entry.task} "
          f"({entry.epochs} epochs, ≤ {entry.minutes:g} min)", file=sys.stderr)
    train(dataset, run_dir, cfg, resume=resume)
    return run_dir


def package(entry: ZooEntry) -> dict:
    from crystalgnn.benchmark import get_task
    from crystalgnn.benchmark.runner import csv_rows, learned_columns
    from crystalgnn.config import RunConfig
    from crystalgnn.reports.metrics import regression_metrics

    run_dir = RUNS / entry.name
    if not (run_dir / "metrics.json").exists():
        raise FileNotFoundError(f"{run_dir}: not finished; run `python benchmarks/zoo.py --only {entry.name}` first")
    task = get_task(entry.task)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = RunConfig.load(run_dir / "config.json")
    test = pd.read_csv(run_dir / "predictions_test.csv", dtype={"id": str})
    true_col, pred_col = learned_columns(test, cfg.data.transform)
    scores = regression_metrics(test[true_col].to_numpy(float), test[pred_col].to_numpy(float))
    n_train, n_val = csv_rows(run_dir / "predictions_train.csv"), csv_rows(run_dir / "predictions_val.csv")
    out = ZOO / entry.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # The saved config names the data by task, not by a path on this machine.
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=f"task {entry.task}"))
    cfg.save(out / "config.json")
    for name in ("model.safetensors", "model.safetensors.json"):
        shutil.copyfile(run_dir / name, out / name)
    test[["id"]].to_csv(out / "test_ids.csv", index=False)
    test[["id", true_col, pred_col]].to_csv(out / "test_predictions.csv", index=False, float_format="%.8g")
    unit = task.unit or ""
    card = {
        "name": entry.name, "model": entry.model, "task": entry.task, "target": entry.target_label, "unit": unit,
        "transform": cfg.data.transform,
        "dataset": task.description or entry.task,
        "data_to_reproduce": entry.data_help,
        "evaluate_command": entry.evaluate,
        "split": {"kind": "fractions 90/5/5 after one shuffle", "seed": 123, "n_train": n_train, "n_val": n_val, "n_test": len(test),
                  "test_ids": "test_ids.csv"},
        "n_test": len(test),
        "test_metrics": {k: float(v) for k, v in scores.items()},
        "training": {"epochs": entry.epochs, "epochs_run": metrics.get("epochs_run"), "best_epoch": metrics.get("best_epoch"),
                     "stop_reason": metrics.get("stop_reason"), "max_minutes": entry.minutes, "batch_size": entry.batch_size,
                     "threads": entry.threads, "wall_minutes": round(float(metrics.get("wall_seconds", 0)) / 60, 1),
                     "optimizer": cfg.train.optimizer, "lr": cfg.train.lr, "scheduler": cfg.train.scheduler,
                     "n_parameters": metrics.get("n_parameters"),
                     "command": f"python benchmarks/zoo.py --only {entry.name}"},
        "reference_cgcnn_paper_mae": REFERENCE_CGCNN.get(entry.name),
        "created": time.strftime("%Y-%m-%d"),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "card.md").write_text(card_markdown(card) + "\n")
    return card


def card_markdown(c: dict) -> str:
    m, s, t = c["test_metrics"], c["split"], c["training"]
    unit = f" {c['unit']}" if c["unit"] else ""
    ref = c.get("reference_cgcnn_paper_mae")
    lines = [
        f"# zoo:{c['name']} — {c['model']} for {c['target']}",
        "",
        f"**Data**: task `{c['task']}`: {c['dataset']} ({c['data_to_reproduce']}).",
        f"**Split**: {s['kind']}, seed {s['seed']}: {s['n_train']} training, {s['n_val']} validation (best epoch), "
        f"{s['n_test']} test crystals (ids in test_ids.csv).",
        f"**Test metrics** ({s['n_test']} held-out crystals{', in log10 units' if c['transform'] == 'log10' else ''}): "
        f"MAE {m['mae']:.4g}{unit}, RMSE {m['rmse']:.4g}{unit}, R² {m['r2']:.3f}.",
        f"**Training**: {t['epochs']} epochs scheduled, {t['epochs_run']} run ({t['stop_reason']}), best epoch {t['best_epoch']}, "
        f"{t['wall_minutes']} min on {t['threads']} CPU thread(s) of a 2-core machine, batch {t['batch_size']}, "
        f"{t['optimizer']} lr {t['lr']} {t['scheduler']}, {t['n_parameters']} parameters. Command: `{t['command']}`.",
        "",
        "**Limits**: trained on Materials Project PBE data: relaxed, ordered crystals with elements up to Z = 100; it knows "
        "nothing of partial occupancy, surfaces, molecules or strongly correlated physics beyond PBE. Its errors grow for "
        "chemistries and structure types rare in Materials Project, and it was trained within a small CPU budget",
    ]
    if ref is not None:
        relation = "below" if m["mae"] < ref else "above"
        lines[-1] += (f". For comparison, the CGCNN paper reports test MAE {ref}{unit} for the model its repository ships "
                      f"(another split of a similar Materials Project set, trained without a time limit); this card's MAE is "
                      f"{relation} it, on its own {s['n_test']} test crystals.")
    else:
        lines[-1] += "."
    lines += ["", f"Reproduce the test metrics: `{c['evaluate_command']}`."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="zoo model(s) to train / package")
    parser.add_argument("--package-only", action="store_true", help="package finished runs; train nothing")
    args = parser.parse_args()
    entries = [e for e in ENTRIES if not args.only or e.name in args.only]
    for entry in entries:
        if not args.package_only:
            train_entry(entry)
        if (RUNS / entry.name / "metrics.json").exists():
            card = package(entry)
            print(f"zoo:{entry.name}: test MAE {card['test_metrics']['mae']:.4g} {card['unit']}, R² {card['test_metrics']['r2']:.3f} "
                  f"({card['n_test']} crystals)")
    total = sum(f.stat().st_size for f in ZOO.rglob("*") if f.is_file())
    print(f"zoo size: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
