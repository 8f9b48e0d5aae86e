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

A third score is on crystals **neither model trained on**: the matminer 2018 datasets in
``../shared/data/matminer2018`` hold Materials Project crystals that are in neither the reference's
lists nor our data (``UNSEEN``: ``flla_2015`` for formation energy, 964 crystals, most of them
above the convex hull; ``dielectric_constant``'s PBE band gaps, 144 non-metals;
``elastic_tensor``'s VRH moduli, 84 crystals). Their structures are written as CIFs which both
models read (the reference through its predict.py, ours through ``load_model("zoo:NAME")``); the
values are the 2015–2018 Materials Project's of those papers. For the band-gap models (``band_gap``,
trained on metals and non-metals; ``band_gap_nonmetal``, on non-metals as the reference's is) their
errors there are also given by bin of the true gap.

The reference's moduli are "log(GPa)" by its README; the script checks which logarithm from the
predictions (the median prediction against the median log10 truth) and converts to log10.
``torch.load`` of the shipped checkpoints needs their pickled metadata (``weights_only=False``,
by ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the peer's environment only: our own checkpoints
never unpickle).

Usage::

    python benchmarks/zoo_vs_reference.py                      # every zoo model
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
    "band_gap_nonmetal": ("band-gap", "mp-ids-27430.csv", "mp37k", 1, False),
    "log10_K": ("bulk-moduli", "mp-ids-3402.csv", "mp_elasticity3k", 0, True),
    "log10_G": ("shear-moduli", "mp-ids-3402.csv", "mp_elasticity3k", 1, True),
}


#: zoo model → (matminer2018 file, value column) of crystals in neither the reference's list nor our data
UNSEEN = {
    "formation_energy": ("flla_2015", "formation_energy_per_atom"),
    "band_gap": ("dielectric_constant", "band_gap"),
    "band_gap_nonmetal": ("dielectric_constant", "band_gap"),
    "log10_K": ("elastic_tensor", "K_VRH"),
    "log10_G": ("elastic_tensor", "G_VRH"),
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
    start = time.perf_counter()
    theirs = _reference_predictions(reference, checkpoint, cifs, cell, threads)
    seconds = time.perf_counter() - start
    if isinstance(theirs, str):
        return {"returncode": 1, "stderr_tail": theirs}
    ids = sorted(ours)
    truth = np.array([ours[i][0] for i in ids])
    pred_ours = np.array([ours[i][1] for i in ids])
    pred_ref, log_base = _as_log10(np.array([theirs[i] for i in ids]), truth) if logged else (np.array([theirs[i] for i in ids]), None)
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


def _structure(text: str):
    """A matminer2018 ``structure`` cell: CIF text, or (flla_2015) the repr of a pymatgen Structure dict."""
    import ast

    from pymatgen.core import Structure

    from crystalgnn.structures.parse import structure_from_dict

    text = text.strip()
    return structure_from_dict(ast.literal_eval(text)) if text.startswith("{") else Structure.from_str(text, fmt="cif")


def _as_log10(pred_ref: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, str]:
    """The reference's "log(GPa)" in log10: natural or decimal? The medians tell (ln is 2.30 × log10)."""
    ratio = float(np.median(pred_ref) / np.median(truth))
    base = "e" if abs(ratio - math.log(10)) < abs(ratio - 1.0) else "10"
    return (pred_ref / math.log(10) if base == "e" else pred_ref), base


def _reference_predictions(reference: Path, checkpoint: str, cifs: Path, cell: Path, threads: int) -> dict[str, float] | str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1",
               PYTHONPATH=str(reference))
    done = subprocess.run([sys.executable, str(reference / "predict.py"), str(reference / "pre-trained" / f"{checkpoint}.pth.tar"),
                           str(cifs), "--disable-cuda"], cwd=cell, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return done.stderr[-3000:]
    return {r[0]: float(r[2]) for r in _rows(cell / "test_results.csv")}


def run_unseen(name: str, reference: Path, work: Path, threads: int) -> dict:
    """Both models on the matminer2018 crystals that neither has trained on (``UNSEEN``)."""
    import pandas as pd

    import crystalgnn
    from crystalgnn import transforms

    checkpoint, id_list, dataset, _, logged = MODELS[name]
    source, column = UNSEEN[name]
    listed = {r[0] for r in _rows(reference / "data" / "material-data" / id_list)}
    ours_data = {r[1] for r in _rows(DATA / dataset / "material_id_hash.csv")}
    frame = pd.read_csv(DATA / "matminer2018" / f"{source}.csv.gz", comment="#", usecols=["material_id", column, "structure"])
    frame = frame[~frame.material_id.isin(listed | ours_data)]
    frame = frame[np.isfinite(frame[column]) & (frame[column] > 0 if logged else True)]
    cell = work / f"{name}-unseen"
    cifs = cell / "cifs"
    cifs.mkdir(parents=True, exist_ok=True)
    truth = {}
    for material, value, text in zip(frame.material_id, frame[column], frame.structure):
        path = cifs / f"{material}.cif"
        if not path.exists():
            _structure(text).to(filename=str(path))
        truth[material] = math.log10(value) if logged else float(value)
    with open(cifs / "id_prop.csv", "w") as fh:
        fh.writelines(f"{m},{v}\n" for m, v in truth.items())
    (cifs / "atom_init.json").write_bytes((reference / "data" / "sample-regression" / "atom_init.json").read_bytes())
    theirs = _reference_predictions(reference, checkpoint, cifs, cell, threads)
    if isinstance(theirs, str):
        return {"returncode": 1, "stderr_tail": theirs}
    model = crystalgnn.load_model(f"zoo:{name}")
    ids = sorted(truth)
    predicted = model.predict([str(cifs / f"{m}.cif") for m in ids], ids=ids, on_error="skip")
    learned = transforms.learned_name(model.target_names[0], model.cfg.data.transform)
    ours = dict(zip(predicted["id"], predicted[learned]))
    both = [m for m in ids if m in theirs and np.isfinite(ours.get(m, np.nan))]
    true = np.array([truth[m] for m in both])
    pred_ours, pred_ref = np.array([ours[m] for m in both]), np.array([theirs[m] for m in both])
    if logged:
        pred_ref, _ = _as_log10(pred_ref, true)
    result = {"returncode": 0, "source": f"matminer2018/{source}.csv.gz ({column})", "n_unseen_by_both": len(both),
              "n_unusable": len(ids) - len(both), "mae_ours": float(np.mean(np.abs(pred_ours - true))),
              "mae_reference": float(np.mean(np.abs(pred_ref - true))), "mad": float(np.mean(np.abs(true - true.mean()))),
              "zoo_card_test_mae": json.loads((ZOO / name / "card.json").read_text())["test_metrics"]["mae"]}
    if MODELS[name][0] == "band-gap":
        result["by_true_gap"] = _by_bin(true, pred_ours, pred_ref, GAP_BINS)
        result["n_predicted_below_0.2_eV"] = {"ours": int((pred_ours < 0.2).sum()), "reference": int((pred_ref < 0.2).sum())}
    return result


#: Bins of the true band gap (eV) for the band-gap models' errors on the unseen crystals.
GAP_BINS = (0.0, 1.0, 2.0, 5.0, math.inf)


def _by_bin(true: np.ndarray, pred_ours: np.ndarray, pred_ref: np.ndarray, edges: tuple[float, ...]) -> list[dict]:
    """MAE of both models per bin [lo, hi) of the true value: where one model is ahead."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (true >= lo) & (true < hi)
        if mask.any():
            rows.append({"from": lo, "to": hi if math.isfinite(hi) else None, "n": int(mask.sum()),
                         "mae_ours": float(np.mean(np.abs(pred_ours[mask] - true[mask]))),
                         "mae_reference": float(np.mean(np.abs(pred_ref[mask] - true[mask])))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(MODELS), help="zoo models, comma-separated (all)")
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
        u = run_unseen(name, reference, args.work, args.threads)
        results.setdefault("unseen_by_both", {})[name] = u
        write_results(args.out, results)
        if u["returncode"] != 0:
            print(u["stderr_tail"], file=sys.stderr)
            continue
        print(f"  unseen by both ({u['n_unseen_by_both']} of {u['source']}): ours {u['mae_ours']:.4f}, "
              f"reference {u['mae_reference']:.4f}", flush=True)
        for b in u.get("by_true_gap", []):
            print(f"    true gap {b['from']:g}–{'∞' if b['to'] is None else format(b['to'], 'g')} eV ({b['n']}): ours {b['mae_ours']:.3f}, "
                  f"reference {b['mae_reference']:.3f}", flush=True)


if __name__ == "__main__":
    main()
