"""Our model zoo against the reference CGCNN's shipped pre-trained models, on our zoo's test crystals.

The reference repository (txie-93/cgcnn) ships ``pre-trained/*.pth.tar`` models trained by its
authors on Materials Project lists it publishes (``data/material-data/mp-ids-46744.csv`` for the
energies, ``mp-ids-27430.csv`` for the band gap, ``mp-ids-3402.csv`` for the elastic moduli:
the CGCNN paper's 60 % training shares of these are 28,046, 16,458 and 2,041 crystals). Each
zoo model's held-out test crystals (``src/crystalgnn/zoo/<name>/test_ids.csv``) are written as a
CGCNN folder (the CIFs, ``id_prop.csv`` with the true value in the learned units, the
reference's ``atom_init.json``) and predicted by the reference's own ``predict.py``, unmodified,
in a subprocess (exported from a git directory, ``--reference-git``; never imported here).
Ours: the card's test predictions (``test_predictions.csv``), reproduced by
``crystalgnn evaluate zoo:NAME ... --test-split``.

Two scores per model, on the same crystals:

* **all test crystals** — but the reference has probably *trained* on many of them: our
  datasets are subsets of the same Materials Project lists;
* **unseen by the reference** — the test crystals whose mp-id (``material_id_hash.csv``) is not
  in the reference's list, so neither model trained on them (none for the elastic sets, which are
  subsets of the reference's 3,402). Its own property values are those
  of an older Materials Project release, so some of the gap on these is data drift, not model.

The reference's moduli are "log(GPa)" by its README; the script checks which logarithm from the
predictions (the median prediction against the median log10 truth) and converts to log10.
``torch.load`` of the shipped checkpoints needs their pickled metadata (``weights_only=False``,
by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the peer's environment only: our own checkpoints
never unpickle).

Usage::

    python benchmarks/zoo_vs_reference.py                      # all four zoo models
    python benchmarks/zoo_vs_reference.py --only log10_K,log10_G

Results: ``benchmarks/results/zoo-vs-reference.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import extracted_mp37k, machine_info, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ZOO = ROOT / "src" / "crystalgnn" / "zoo"

#: zoo model → (reference checkpoint, its training list, our data, target column, log10 learned)
MODELS = {
    "formation_energy": ("formation-energy-per-atom", "mp-ids-46744.csv", "mp37k", 0, False),
    "band_gap": ("band-gap", "mp-ids-27430.csv", "mp37k", 1, False),
    "log10_K": ("bulk-moduli", "mp-ids-3402.csv", "mp_elasticity3k", 0, True),
    "log10_G": ("shear-moduli", "mp-ids-3402.csv", "mp_elasticity3k", 1, True),
}


def export_reference(git_dir: Path, work: Path) -> tuple[Path, str]:
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    target = work / f"reference-{commit[:7]}"
    if not (target / "predict.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(git_dir), "archive", "HEAD"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, commit


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return [r for r in csv.reader(fh) if r]


def run_one(name: str, reference: Path, work: Path, threads: int) -> dict:
    checkpoint, id_list, dataset, column, logged = MODELS[name]
    folder = extracted_mp37k() / "data" if dataset == "mp37k" else DATA / dataset
    id_map = dict(_rows(DATA / dataset / "material_id_hash.csv"))
    seen_by_reference = {r[0] for r in _rows(reference / "data" / "material-data" / id_list)}
    ours = {r[0]: (float(r[1]), float(r[2])) for r in _rows(ZOO / name / "test_predictions.csv")[1:]}

    cell = work / name
    cifs = cell / "cifs"
    cifs.mkdir(parents=True, exist_ok=True)
    with open(cifs / "id_prop.csv", "w") as fh:
        for item, (truth, _) in ours.items():
            link = cifs / f"{item}.cif"
            if not link.exists():
                link.symlink_to(folder / f"{item}.cif")
            fh.write(f"{item},{truth}\n")
    (cifs / "atom_init.json").write_bytes((reference / "data" / "sample-regression" / "atom_init.json").read_bytes())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
               PYTHONPATH=str(reference))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(reference / "predict.py"), str(reference / "pre-trained" / f"{checkpoint}.pth.tar"),
                           str(cifs), "--disable-cuda"], cwd=cell, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return {"returncode": done.returncode, "stderr_tail": done.stderr[-3000:]}
    theirs = {r[0]: float(r[2]) for r in _rows(cell / "test_results.csv")}
    ids = sorted(ours)
    truth = np.array([ours[i][0] for i in ids])
    pred_ours = np.array([ours[i][1] for i in ids])
    pred_ref = np.array([theirs[i] for i in ids])
    log_base = None
    if logged:  # "log(GPa)": natural or decimal? the medians tell (ln is 2.30 x log10)
        ratio = float(np.median(pred_ref) / np.median(truth))
        log_base = "e" if abs(ratio - math.log(10)) < abs(ratio - 1.0) else "10"
        if log_base == "e":
            pred_ref = pred_ref / math.log(10)
    unseen = np.array([id_map.get(i, "") not in seen_by_reference for i in ids])

    def mae(pred: np.ndarray, mask: np.ndarray) -> float | None:
        return float(np.mean(np.abs(pred[mask] - truth[mask]))) if mask.any() else None

    everyone = np.ones(len(ids), dtype=bool)
    return {"returncode": 0, "n_test": len(ids), "n_unseen_by_reference": int(unseen.sum()),
            "reference_checkpoint": f"pre-trained/{checkpoint}.pth.tar", "reference_training_list": id_list,
            "reference_log_base": log_base, "reference_predict_seconds": round(seconds, 1),
            "mae_ours_all": mae(pred_ours, everyone), "mae_reference_all": mae(pred_ref, everyone),
            "mae_ours_unseen": mae(pred_ours, unseen), "mae_reference_unseen": mae(pred_ref, unseen),
            "mae_ours_seen": mae(pred_ours, ~unseen), "mae_reference_seen": mae(pred_ref, ~unseen),
            "zoo_card_test_mae": json.loads((ZOO / name / "card.json").read_text())["test_metrics"]["mae"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(MODELS), help="zoo models, comma-separated (all four)")
    parser.add_argument("--reference-git", type=Path, default=Path("/work/.mirror/txie-93+cgcnn/repo"),
                        help="git directory of txie-93/cgcnn (a clone's .git, or a bare mirror)")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "crystalgnn" / "zoo-vs-reference")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="zoo-vs-reference.json")
    args = parser.parse_args()
    if not (args.reference_git / "HEAD").exists():
        raise SystemExit(f"{args.reference_git} is not a git directory of txie-93/cgcnn; pass --reference-git")
    reference, commit = export_reference(args.reference_git, args.work)
    path = ROOT / "benchmarks" / "results" / args.out
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update({"machine": machine_info(), "reference_commit": commit, "models": results.get("models", {})})
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in MODELS:
            raise SystemExit(f"unknown zoo model {name!r}; choose from {', '.join(MODELS)}")
        print(f"{name}: reference {MODELS[name][0]} on our zoo test crystals ...", flush=True)
        r = run_one(name, reference, args.work, args.threads)
        results["models"][name] = r
        write_results(args.out, results)
        if r["returncode"] != 0:
            print(r["stderr_tail"], file=sys.stderr)
            continue
        unseen = (f"ours {r['mae_ours_unseen']:.4f}, reference {r['mae_reference_unseen']:.4f}" if r["n_unseen_by_reference"]
                  else "none: every test crystal is in the reference's list")
        print(f"  all {r['n_test']}: ours {r['mae_ours_all']:.4f}, reference {r['mae_reference_all']:.4f}; "
              f"unseen by the reference ({r['n_unseen_by_reference']}): {unseen}"
              + (f"; reference log base {r['reference_log_base']}" if r["reference_log_base"] else ""), flush=True)


if __name__ == "__main__":
    main()
