"""Train the model zoo and package it into ``src/crystalgnn/zoo/<name>/`` (resumable).

Each zoo model is trained on its task's whole dataset except a seeded held-out test split
(90/5/5 after one shuffle with seed 123; the 5 % validation split picks the best epoch), within a
stated budget, then packaged: weights (safetensors + JSON), config.json, the test ids and the
model's test predictions, and a model card (card.json, card.md) with the test metrics. An entry
with ``ensemble=N`` is a deep ensemble of N members (seeds 123, 124, ...; all on the one split),
each within the entry's minutes: the zoo model predicts their mean and spread. After
``benchmarks/zoo_vs_reference.py`` has run, ``--package-only`` adds its comparison with the
reference's shipped model on the same test crystals to each card.

    python benchmarks/zoo.py                 # train what is missing (run dirs under benchmarks/results/zoo/runs), package all
    python benchmarks/zoo.py --package-only  # package the finished runs again
    python benchmarks/zoo.py --only log10_K  # one model
    python benchmarks/zoo.py --only band_gap --member 1   # one member of an ensemble (run one per core), then
    python benchmarks/zoo.py --only band_gap              # the ensemble: keeps the finished members, predicts, packages

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
REFERENCE_CGCNN = {"formation_energy": 0.039, "band_gap": 0.388, "band_gap_nonmetal": 0.388, "log10_K": 0.054, "log10_G": 0.087}


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
    #: Members of a deep ensemble (seeds 123, 124, ...; one split): the zoo model predicts their mean and spread.
    ensemble: int = 1
    data_help: str = ""
    #: How a user gets the data and reproduces the card's test metrics.
    evaluate: str = ""
    #: What this model, beyond the zoo's common limits, must not be used for.
    limits: str = ""


ENTRIES = [
    # the schedule is fitted to the minutes (TrainConfig.schedule_to_budget): epochs is an upper bound
    ZooEntry("formation_energy", "mp37k_formation_energy", "cgcnn", "formation energy per atom", epochs=400, minutes=135.0,
             batch_size=64, threads=1,
             data_help="the mp37k id_prop.csv (column 0) with its CIFs extracted from cifs_data.tar.gz",
             evaluate="mkdir -p mp37k && tar xzf ../shared/data/mp37k/cifs_data.tar.gz -C mp37k && cp ../shared/data/mp37k/id_prop.csv mp37k/ && crystalgnn evaluate zoo:formation_energy mp37k -t 0 --test-split"),
    ZooEntry("band_gap", "mp37k_band_gap", "cgcnn", "PBE band gap", epochs=300, minutes=100.0, batch_size=64, threads=1, ensemble=2,
             data_help="the mp37k id_prop.csv (column 1) with its CIFs extracted from cifs_data.tar.gz",
             evaluate="mkdir -p mp37k && tar xzf ../shared/data/mp37k/cifs_data.tar.gz -C mp37k && cp ../shared/data/mp37k/id_prop.csv mp37k/ && crystalgnn evaluate zoo:band_gap mp37k -t 1 --test-split"),
    # non-metals only, as the reference's band-gap model (and the CGCNN paper's 0.388 eV) is trained: the like-for-like
    # comparison, and the model to use for a crystal known to have a gap
    ZooEntry("band_gap_nonmetal", "mp37k_band_gap_nonmetal", "cgcnn", "PBE band gap of a non-metal", epochs=300, minutes=100.0,
             batch_size=64, threads=1, ensemble=2,
             data_help="the mp37k id_prop.csv rows with a gap > 0 (column 1) with their CIFs extracted from cifs_data.tar.gz",
             evaluate="mkdir -p mp37k && tar xzf ../shared/data/mp37k/cifs_data.tar.gz -C mp37k && cp ../shared/data/mp37k/id_prop.csv "
                      "mp37k/ && crystalgnn evaluate zoo:band_gap_nonmetal mp37k -t 1 --test-split",
             limits="It has seen no metal, so it predicts a gap for every crystal: use it for crystals known to have one "
                    "(zoo:band_gap predicts metals too)"),
    ZooEntry("log10_K", "mp_elasticity3k_log10_K", "cgcnn", "log10 of the VRH bulk modulus", epochs=400, minutes=8.0, batch_size=64, ensemble=5,
             threads=1, data_help="../shared/data/mp_elasticity3k (column 0, GPa; the model learns log10)",
             evaluate="crystalgnn evaluate zoo:log10_K ../shared/data/mp_elasticity3k -t 0 --test-split"),
    ZooEntry("log10_G", "mp_elasticity3k_log10_G", "cgcnn", "log10 of the VRH shear modulus", epochs=400, minutes=8.0, batch_size=64, ensemble=5,
             threads=1, data_help="../shared/data/mp_elasticity3k (column 1, GPa; the model learns log10)",
             evaluate="crystalgnn evaluate zoo:log10_G ../shared/data/mp_elasticity3k -t 1 --test-split"),
]


def run_config(entry: ZooEntry):
    from crystalgnn.benchmark import get_task
    from crystalgnn.config import DataConfig, defaults_for

    task = get_task(entry.task)
    cfg = defaults_for(entry.model)
    train = dataclasses.replace(cfg.train, epochs=entry.epochs, batch_size=entry.batch_size, max_minutes=entry.minutes,
                                split_fractions=(0.9, 0.05, 0.05), seed=123, threads=entry.threads,
                                ensemble=entry.ensemble)
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


def train_member(entry: ZooEntry, k: int) -> None:
    """Member ``k`` of the ensemble ``entry`` alone, in the directory the ensemble's training uses
    (``members/<k>``), so that members can be trained by parallel processes (one core each); the
    ensemble run afterwards keeps them and only predicts and scores."""
    from crystalgnn.training.ensemble import member_config, member_dir
    from crystalgnn.training.resume import last_checkpoint
    from crystalgnn.training.run import train

    if not 0 <= k < entry.ensemble:
        raise SystemExit(f"--member {k}: {entry.name} has {entry.ensemble} member(s) (0..{entry.ensemble - 1})")
    member = member_dir(RUNS / entry.name, k)
    if (member / "metrics.json").exists():
        print(f"{entry.name} member {k}: finished in {member}, kept", file=sys.stderr)
        return
    task, cfg = run_config(entry)
    resume = last_checkpoint(member).exists()
    print(f"{entry.name} member {k}: {'resuming' if resume else 'training'} (≤ {entry.minutes:g} min)", file=sys.stderr)
    train(task.load(DATA), member, member_config(cfg, k), resume=resume)


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
    copy_model(run_dir, out, f"task {entry.task}")
    test[["id"]].to_csv(out / "test_ids.csv", index=False)
    spread_col = f"{pred_col}_std"
    columns = ["id", true_col, pred_col] + ([spread_col] if spread_col in test.columns else [])
    test[columns].to_csv(out / "test_predictions.csv", index=False, float_format="%.8g")
    unit = task.unit or ""
    # an ensemble's epochs, stop and size are its members' (the first member's size: they are alike)
    runs = [metrics] if entry.ensemble == 1 else [json.loads((run_dir / m["dir"] / "metrics.json").read_text()) for m in metrics["members"]]
    per_run = {key: [r.get(key) for r in runs] for key in ("epochs_run", "best_epoch", "stop_reason")}
    if entry.ensemble == 1:
        per_run = {key: values[0] for key, values in per_run.items()}
    # an ensemble's time is its members' (they may have been trained by parallel processes, --member)
    wall_seconds = float(metrics.get("wall_seconds", 0)) if entry.ensemble == 1 else sum(float(r.get("wall_seconds", 0)) for r in runs)
    card = {
        "name": entry.name, "model": entry.model, "task": entry.task, "target": entry.target_label, "unit": unit,
        "transform": cfg.data.transform,
        "dataset": task.description or entry.task,
        "limits": entry.limits,
        "data_to_reproduce": entry.data_help,
        "evaluate_command": entry.evaluate,
        "split": {"kind": "fractions 90/5/5 after one shuffle", "seed": 123, "n_train": n_train, "n_val": n_val, "n_test": len(test),
                  "test_ids": "test_ids.csv"},
        "n_test": len(test),
        "test_metrics": {k: float(v) for k, v in scores.items()},
        "training": {"epochs": entry.epochs, **per_run, "max_minutes": entry.minutes, "batch_size": entry.batch_size,
                     "threads": entry.threads, "wall_minutes": round(wall_seconds / 60, 1),
                     "optimizer": cfg.train.optimizer, "lr": cfg.train.lr, "scheduler": cfg.train.scheduler,
                     "n_parameters": runs[0].get("n_parameters"),
                     "command": f"python benchmarks/zoo.py --only {entry.name}"},
        "ensemble": ensemble_summary(metrics, test, spread_col, true_col) if entry.ensemble > 1 else None,
        "reference_cgcnn_paper_mae": REFERENCE_CGCNN.get(entry.name),
        "reference_cgcnn_same_crystals": same_crystals(entry.name, float(scores["mae"])),
        "created": time.strftime("%Y-%m-%d"),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "card.md").write_text(card_markdown(card) + "\n")
    return card


def same_crystals(name: str, mae: float) -> dict | None:
    """The reference's shipped model on this card's test crystals (``benchmarks/zoo_vs_reference.py``), when that
    comparison was run on these very predictions (its MAE of ours equals the card's)."""
    path = ROOT / "benchmarks" / "results" / "zoo-vs-reference.json"
    results = json.loads(path.read_text()) if path.exists() else {}

    def of_this_model(part: str) -> dict | None:
        found = results.get(part, {}).get(name)
        ok = found and found.get("returncode") == 0 and abs(found["zoo_card_test_mae"] - mae) <= 1e-6 * max(mae, 1e-12)
        return found if ok else None

    found, unseen = of_this_model("models"), of_this_model("unseen_by_both")
    if not found:
        return None
    keys = ("reference_checkpoint", "reference_training_list", "n_test", "mae_ours_all", "mae_reference_all", "n_unseen_by_reference",
            "mae_ours_unseen", "mae_reference_unseen", "mae_ours_seen", "mae_reference_seen")
    both = {k: unseen[k] for k in ("source", "n_unseen_by_both", "mae_ours", "mae_reference")} if unseen else None
    return {k: found[k] for k in keys} | {"unseen_by_both": both, "command": "python benchmarks/zoo_vs_reference.py"}


def copy_model(run_dir: Path, out: Path, source: str) -> None:
    """What prediction needs from ``run_dir`` (an ensemble: each member's, under ``members/<k>``), into ``out``."""
    from crystalgnn.config import RunConfig
    from crystalgnn.training.ensemble import ensemble_size, member_dir

    out.mkdir(parents=True)
    cfg = RunConfig.load(run_dir / "config.json")
    # The saved config names the data by task, not by a path on this machine.
    dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=source)).save(out / "config.json")
    members = ensemble_size(run_dir)
    if members > 1:
        for k in range(members):
            copy_model(member_dir(run_dir, k), member_dir(out, k), source)
        return
    for name in ("model.safetensors", "model.safetensors.json"):
        shutil.copyfile(run_dir / name, out / name)


def ensemble_summary(metrics: dict, test: pd.DataFrame, spread_col: str, true_col: str) -> dict:
    """The members' own test MAEs beside the ensemble's, and how its spread follows its errors."""
    members = metrics["members"]
    member_mae = [float(next(iter(m["test"].values()))["mae"]) for m in members]
    errors = (test[true_col] - test[spread_col.removesuffix("_std")]).abs()
    # (the members' epochs run and best epochs are the card's "training" lists)
    return {"members": len(members), "seeds": [m["seed"] for m in members],
            "member_test_mae": member_mae, "mean_member_test_mae": sum(member_mae) / len(member_mae),
            "mean_spread": float(test[spread_col].mean()),
            "spearman_spread_vs_abs_error": float(test[spread_col].corr(errors, method="spearman"))}


def card_markdown(c: dict) -> str:
    m, s = c["test_metrics"], c["split"]
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
        training_line(c),
        "",
        "**Limits**: trained on Materials Project PBE data: relaxed, ordered crystals with elements up to Z = 100; it knows "
        "nothing of partial occupancy, surfaces, molecules or strongly correlated physics beyond PBE. Its errors grow for "
        "chemistries and structure types rare in Materials Project, and it was trained within a small CPU budget",
    ]
    if c.get("limits"):
        lines[-1] += f". {c['limits']}"
    if ref is not None:
        relation = "below" if m["mae"] < ref else "above"
        lines[-1] += (f". For comparison, the CGCNN paper reports test MAE {ref}{unit} for the model its repository ships "
                      f"(another split of a similar Materials Project set, trained without a time limit); this card's MAE is "
                      f"{relation} it, on its own {s['n_test']} test crystals.")
    else:
        lines[-1] += "."
    same = c.get("reference_cgcnn_same_crystals")
    if same:
        lines += ["", f"**Against the reference's shipped model on these {same['n_test']} test crystals** "
                  f"(`{same['reference_checkpoint']}` of txie-93/cgcnn, through its own predict.py; `{same['command']}`): "
                  f"MAE {same['mae_ours_all']:.4g} (this model) vs {same['mae_reference_all']:.4g}{unit} (reference)."]
        if same["n_unseen_by_reference"]:
            lines[-1] += (f" On the {same['n_unseen_by_reference']} not in the reference's training list "
                          f"(`{same['reference_training_list']}`): {same['mae_ours_unseen']:.4g} vs {same['mae_reference_unseen']:.4g}; "
                          f"on the others: {same['mae_ours_seen']:.4g} vs {same['mae_reference_seen']:.4g}.")
        else:
            lines[-1] += (f" Every one of them is in the reference's training list (`{same['reference_training_list']}`), so the "
                          "reference has probably trained on most of them; this model has trained on none.")
        both = same.get("unseen_by_both")
        if both:
            lines[-1] += (f" On {both['n_unseen_by_both']} crystals neither model trained on ({both['source']}, in none of the "
                          f"reference's lists nor our data): MAE {both['mae_ours']:.4g} (this model) vs "
                          f"{both['mae_reference']:.4g}{unit} (reference).")
    lines += ["", f"Reproduce the test metrics: `{c['evaluate_command']}`."]
    return "\n".join(lines)


def training_line(c: dict) -> str:
    t, e = c["training"], c.get("ensemble")
    common = (f"{t['threads']} CPU thread(s) of a 2-core machine, batch {t['batch_size']}, {t['optimizer']} lr {t['lr']} "
              f"{t['scheduler']} (schedule fitted to ≤ {t['max_minutes']:g} min)")
    if not e:
        return (f"**Training**: {t['epochs']} epochs scheduled, {t['epochs_run']} run ({t['stop_reason']}), best epoch "
                f"{t['best_epoch']}, {t['wall_minutes']} min on {common}, {t['n_parameters']} parameters. Command: `{t['command']}`.")
    spread = (f"Its spread σ (standard deviation over members) averages {e['mean_spread']:.3g} on the test crystals; Spearman "
              f"ρ(σ, |error|) = {e['spearman_spread_vs_abs_error']:.2f}.")
    return (f"**Training**: a deep ensemble of {e['members']} {c['model']} models (seeds {', '.join(map(str, e['seeds']))}; one split), "
            f"predicting their mean. Each member: ≤ {t['max_minutes']:g} min on {common}, {t['n_parameters']} parameters; "
            f"epochs run {', '.join(map(str, t['epochs_run']))}, best epochs {', '.join(map(str, t['best_epoch']))}. "
            f"{t['wall_minutes']} min in all. Members' own test MAEs: {', '.join(f'{v:.4g}' for v in e['member_test_mae'])} "
            f"(mean {e['mean_member_test_mae']:.4g}). {spread} Command: `{t['command']}`.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", help="zoo model(s) to train / package")
    parser.add_argument("--package-only", action="store_true", help="package finished runs; train nothing")
    parser.add_argument("--member", type=int, help="train only this member of the --only ensemble, then stop (parallel "
                        "processes train the members; a run without --member then assembles the ensemble)")
    args = parser.parse_args()
    entries = [e for e in ENTRIES if not args.only or e.name in args.only]
    if args.member is not None:
        if len(entries) != 1:
            raise SystemExit("--member needs exactly one --only NAME")
        train_member(entries[0], args.member)
        return 0
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
