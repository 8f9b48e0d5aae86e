"""Descriptor hybridization on real properties (Gong et al., Table 1 / S1 and Table 2).

For each task, on one seeded 60/20/20 split (CGCNN's, seed 123), the same crystals are learned by
(``--model`` picks the network, CGCNN by default; every variant of one task gets the same epochs,
batch size and time budget):

* ``rf``        — random forest on the structural descriptors only ("descriptors + RF");
* ``plain``     — the plain network (mean pooling);
* ``de``        — the network with the standardized descriptors concatenated before the head
                  (Eq. 14, end to end: the hybrid *before* issue 13);
* ``residual``  — the residual hybrid (``--hybrid residual``): the forest above, cross-fitted,
                  and the Eq. 14 network, which also reads the forest's prediction, learning
                  what the forest misses;
* ``stacked``   — the stacked hybrid (``--hybrid stacked``): the same cross-fitted forest's
                  prediction is one more input of the Eq. 14 head, no offset;
* ``blend``     — the blend hybrid (``--hybrid blend``): the Eq. 14 network and the forest,
                  trained apart, predict ``w · network + (1 − w) · forest`` with ``w`` chosen
                  on the validation split;
* ``blend-plain`` — ``--hybrid blend-plain``: the same blend with the plain network as its
                  network part (the descriptors feed only the forest); ``--blend-from-parts``
                  computes it from the finished ``plain`` and ``rf`` runs where it was not run;
* ``frozen``    — Eq. S5: the plain run's representation, frozen, with a new head on
                  representation ⊕ descriptors (on request);
* for extensive per-cell targets also ``sum`` (sum pooling, Eq. 13) and ``per-atom`` (learn
  target / atoms, mean pooling, report per cell) — Table 2 — and ``residual-per-atom``.

Tasks (paper MAE/MAD, Table S1, CGCNN → de-CGCNN, where it has one):

* extensive, per cell: ``volume`` (mp37k cell volume, Å³), ``magnetization`` (mp37k total
  magnetization, μB; paper 0.412 → 0.340 per formula unit on all of MP; listed per cell by issue
  13, but ``crystalgnn check`` finds it does not grow with the cell: see README), ``perovskite-heat``
  (perov5_partial heat of formation, eV per 5-atom cell; its test part);
* intensive: ``refractive`` (matminer2018 n; 0.240 → 0.205), ``elasticity-K`` / ``elasticity-G``
  (mp_elasticity3k log10 K_VRH / G_VRH; 0.217 → 0.215, 0.397 → 0.362), ``band-gap`` (mp37k PBE
  gap; 0.231 → 0.218), ``piezo`` (matminer2018 eij_max; 0.813 → 0.762).

mp37k and perovskite tasks use a seeded random subset of ``--max-items`` (default 2,000).

Usage::

    python benchmarks/hybrid.py volume magnetization perovskite-heat refractive elasticity-K elasticity-G --epochs 60
    python benchmarks/hybrid.py refractive --model ocrystalnet --variants rf,plain,de,residual --epochs 30
    python benchmarks/hybrid.py elasticity-K --model alignn --alignn-hidden 64 --epochs 40

Run directories go to ``benchmarks/results/hybrid/<model>/<task>/<variant>`` (CGCNN: without the
model level, as the first version of this benchmark wrote them); a finished variant (its
``metrics.json`` exists) is reused, so an interrupted benchmark resumes. The table is printed and
written to ``benchmarks/results/<--results>`` (default ``hybrid-<model>.json``); with
``--collect`` only finished runs are read (no training) and a bar chart of MAE/MAD per task is
drawn beside the JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import extracted_mp37k, machine_info, print_table, write_results  # noqa: E402

from crystalgnn.baselines import ForestConfig, train_forest  # noqa: E402
from crystalgnn.config import DataConfig, RunConfig, defaults_for  # noqa: E402
from crystalgnn.io import load_dataset  # noqa: E402
from crystalgnn.training.hybrid import default_hybrid_descriptors  # noqa: E402
from crystalgnn.training.run import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

#: Paper MAE/MAD, Table S1: (CGCNN, de-CGCNN, descriptors + RF).
PAPER = {
    "magnetization": (0.412, 0.340, None),
    "refractive": (0.240, 0.205, None),
    "piezo": (0.813, 0.762, 0.793),
    "elasticity-K": (0.217, 0.215, 0.348),
    "elasticity-G": (0.397, 0.362, None),
    "band-gap": (0.231, 0.218, None),
    "volume": (None, None, None),
    "perovskite-heat": (None, None, None),
}
EXTENSIVE = {"magnetization", "volume", "perovskite-heat"}
BASE_VARIANTS = ["rf", "plain", "de", "residual", "stacked", "blend", "blend-plain"]
EXTENSIVE_VARIANTS = ["sum", "per-atom", "residual-per-atom"]
OTHER_VARIANTS = ["frozen"]
#: The blend hybrids and the run whose network they blend with the forest (for --blend-from-parts).
BLEND_NETWORK = {"blend": "de", "blend-plain": "plain"}
#: The first version of this benchmark named the CGCNN variants after the model.
OLD_NAMES = {"plain": "cgcnn", "de": "de-cgcnn", "sum": "cgcnn-sum", "per-atom": "cgcnn-per-atom"}


def random_subset(data, max_items: int, seed: int, what: str):
    if max_items and len(data) > max_items:
        rows = np.sort(np.random.default_rng(seed).choice(len(data), max_items, replace=False))
        data = data.subset(rows)
        data.meta["source"] = f"{what}, random {max_items} (seed {seed})"
    return data


def dataset_for(task: str, max_items: int, seed: int):
    mp37k_column = {"band-gap": 1, "volume": 3, "magnetization": 4}
    if task in mp37k_column:
        folder = extracted_mp37k(None)
        data = load_dataset(folder / "id_prop.csv", targets=[mp37k_column[task]], structures_dir=folder / "data")
        return random_subset(data, max_items, seed, f"mp37k {task}")
    if task == "perovskite-heat":
        data = load_dataset(DATA / "perov5_partial" / "test.csv.gz", targets=["heat_all"])
        return random_subset(data, max_items, seed, "perov5_partial test part, heat_all")
    if task == "refractive":
        return load_dataset(DATA / "matminer2018" / "dielectric_constant.csv.gz", targets=["n"])
    if task == "piezo":
        return load_dataset(DATA / "matminer2018" / "piezoelectric_tensor.csv.gz", targets=["eij_max"])
    column = 0 if task.endswith("K") else 1
    return load_dataset(DATA / "mp_elasticity3k", targets=[column], transform="log10")


def variant_config(base: RunConfig, variant: str) -> RunConfig:
    """``base`` (the plain network of this task) changed as ``variant`` says."""
    model, data = base.model, base.data
    if variant in ("de", "frozen") or variant.startswith(("residual", "stacked", "blend")):
        hybrid = {"de": "end-to-end", "blend-plain": "blend-plain"}.get(variant, variant.split("-")[0])
        model = dataclasses.replace(model, descriptors=default_hybrid_descriptors(), hybrid=hybrid)
    if variant == "sum":
        model = dataclasses.replace(model, pooling="sum")
    if variant.endswith("per-atom"):
        data = dataclasses.replace(data, per_atom=True)
    return dataclasses.replace(base, model=model, data=data)


def network_base(args: argparse.Namespace, task: str) -> RunConfig:
    """The plain network of ``task``: the model's reference settings (ALIGNN: its AdamW and
    one-cycle; OCrystalNet: Adam with Noam), with this benchmark's epochs, batch and budget."""
    reference = defaults_for(args.model)
    arch = reference.model.arch
    if args.model == "alignn":
        arch = dataclasses.replace(arch, hidden_features=args.alignn_hidden, alignn_layers=args.alignn_layers, gcn_layers=args.gcn_layers,
                                   norm=args.alignn_norm or arch.norm)
    if args.model == "ocrystalnet" and args.ocrystalnet_hidden:
        arch = dataclasses.replace(arch, hidden=args.ocrystalnet_hidden)
    return dataclasses.replace(
        reference,
        data=DataConfig(transform="log10" if task.startswith("elasticity") else "none", on_error="skip"),
        model=dataclasses.replace(reference.model, arch=arch),
        train=dataclasses.replace(reference.train, epochs=args.epochs, batch_size=args.batch_size, max_minutes=args.minutes,
                                  threads=args.threads, seed=args.seed),
    )


def run_dir_of(args: argparse.Namespace, task: str, variant: str) -> Path:
    if args.model != "cgcnn":
        return args.out / args.model / task / variant
    old = args.out / task / OLD_NAMES.get(variant, variant)
    return old if (old / "metrics.json").exists() and variant in OLD_NAMES else args.out / task / variant


def run_variant(args: argparse.Namespace, task: str, variant: str, data) -> None:
    run_dir = run_dir_of(args, task, variant)
    base = network_base(args, task)
    cfg = variant_config(base, variant if variant != "rf" else "plain")
    plain = run_dir_of(args, task, "plain")
    if variant == "frozen" and (plain / "model.safetensors").exists():
        # Eq. S5 on the representation of the plain run (no second training).
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(plain), freeze_encoder=True))
    start = time.perf_counter()
    if variant == "rf":
        train_forest(data, run_dir, cfg, ForestConfig(n_jobs=args.threads), progress=False)
    else:
        train(data, run_dir, cfg, progress=False)
    timing = {"seconds": round(time.perf_counter() - start, 1)}
    (run_dir / "benchmark_timing.json").write_text(json.dumps(timing) + "\n")


def collect(args: argparse.Namespace, tasks: list[str]) -> dict:
    rows, results = [], {"machine": machine_info(), "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                         "minutes": args.minutes, "max_items": args.max_items, "seed": args.seed, "tasks": {}}
    for task in tasks:
        results["tasks"][task] = {}
        for variant in variants_of(args, task):
            metrics_file = run_dir_of(args, task, variant) / "metrics.json"
            if not metrics_file.exists():
                continue
            metrics = json.loads(metrics_file.read_text())
            test = next(iter(metrics["test"].values()))
            timing = metrics_file.with_name("benchmark_timing.json")
            seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
            results["tasks"][task][variant] = {**test, "seconds": seconds, "epochs_run": metrics.get("epochs_run"),
                                               "best_epoch": metrics.get("best_epoch"),
                                               "train_mae": next(iter(metrics.get("train", {}).values()), {}).get("mae")}
            paper = PAPER[task]
            ref = {"plain": paper[0], "de": paper[1], "rf": paper[2]}.get(variant) if args.model == "cgcnn" else None
            rows.append((task, variant, f"{test['mae']:.4g}", f"{test['mae_over_mad']:.3f}", f"{test['r2']:.3f}",
                         "" if ref is None else f"{ref:.3f}", str(test["n"]), "" if seconds is None else f"{seconds:.0f}"))
        table = results["tasks"][task]
        for blend, network in BLEND_NETWORK.items():
            if blend not in table and {network, "rf"} <= set(table) and args.blend_from_parts:
                table[blend] = blend_from_parts(args, task, blend)
                rows.append((task, f"{blend}*", f"{table[blend]['mae']:.4g}", f"{table[blend]['mae_over_mad']:.3f}", "", "",
                             str(table[blend]["n"]), ""))
        if {"plain", "rf"} <= set(table):
            best = "plain" if table["plain"]["mae_over_mad"] <= table["rf"]["mae_over_mad"] else "rf"
            table["best_part"] = {"variant": best, "mae_over_mad": table[best]["mae_over_mad"]}
            for hybrid in ("de", "stacked", "residual", "blend", "blend-plain"):
                if hybrid in table:
                    table[f"{hybrid}_vs_best_part"] = paired_difference(args, task, hybrid, best)
    print_table(rows, ("task", "variant", "test MAE", "MAE/MAD", "R²", "paper MAE/MAD", "n test", "s"))
    for task, table in results["tasks"].items():
        for hybrid in ("de", "stacked", "residual", "blend", "blend-plain"):
            if f"{hybrid}_vs_best_part" in table:
                d = table[f"{hybrid}_vs_best_part"]
                print(f"{task:16s} {hybrid:9s} - {d['against']:5s}: {d['difference']:+.3f} MAE/MAD, 95 % CI "
                      f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] ({d['verdict']})")
    return results


def _predictions(args: argparse.Namespace, task: str, variant: str, split: str):
    import pandas as pd

    frame = pd.read_csv(_run_or_parts(args, task, variant) / f"predictions_{split}.csv").set_index("id")
    return frame, *_learned_columns(frame)


def _learned_columns(frame) -> tuple[str, str]:
    """(true, predicted) columns in the units the metrics are in: log10 where the run learned it."""
    columns = [c for c in frame.columns if c.startswith("true_")]
    true = next((c for c in columns if c.startswith("true_log10_")), columns[0])
    return true, true.replace("true_", "pred_", 1)


def blend_from_parts(args: argparse.Namespace, task: str, blend: str = "blend") -> dict:
    """What ``--hybrid blend`` predicts, from the finished ``de`` and ``rf`` runs: its network is
    the Eq. 14 network (the same seed, inputs and data order, so the same weights) and its forest
    the descriptors-only forest, so ``w`` is fitted on their validation predictions with the
    tool's own :func:`fit_blend_weight` and applied to their test predictions. Written as the
    ``blend`` run's ``predictions_test.csv`` would be (under ``<task>/blend-from-parts``), so the
    paired intervals read it like any run. ``blend="blend-plain"`` gives ``--hybrid blend-plain``
    from the ``plain`` and ``rf`` runs (``<task>/blend-plain-from-parts``)."""
    from crystalgnn.reports.metrics import regression_metrics
    from crystalgnn.training.objectives import fit_blend_weight

    val_net, true, pred = _predictions(args, task, BLEND_NETWORK[blend], "val")
    val_rf = _predictions(args, task, "rf", "val")[0].loc[val_net.index]
    w = float(fit_blend_weight(val_net[[pred]].to_numpy(), val_rf[[pred]].to_numpy(), val_net[[true]].to_numpy())[0])
    test_net = _predictions(args, task, BLEND_NETWORK[blend], "test")[0]
    test_rf = _predictions(args, task, "rf", "test")[0].loc[test_net.index]
    out = test_net[[true]].copy()
    out[pred] = w * test_net[pred] + (1 - w) * test_rf[pred]
    folder = _parts_folder(args, task, blend)
    folder.mkdir(parents=True, exist_ok=True)
    out.to_csv(folder / "predictions_test.csv")
    y = out[true].to_numpy()
    metrics = regression_metrics(y, out[pred].to_numpy())
    mad = float(np.abs(y - y.mean()).mean())
    return {**metrics, "mad": mad, "mae_over_mad": metrics["mae"] / mad, "n": len(y), "blend_weight": w, "from_parts": True}


def paired_difference(args: argparse.Namespace, task: str, variant: str, other: str, draws: int = 2000) -> dict:
    """Test MAE/MAD of ``variant`` minus ``other`` on the same test crystals, with a 95 % paired
    bootstrap interval (seeded): how much of a difference one split can tell apart."""
    import pandas as pd

    frames = [pd.read_csv(_run_or_parts(args, task, v) / "predictions_test.csv").set_index("id") for v in (variant, other)]
    true, pred = _learned_columns(frames[0])  # log10 for the moduli, as their MAE/MAD
    frames[1] = frames[1].loc[frames[0].index]
    y = frames[0][true].to_numpy()
    mad = np.abs(y - y.mean()).mean()
    diff = ((frames[0][pred] - frames[0][true]).abs() - (frames[1][pred] - frames[1][true]).abs()).to_numpy() / mad
    rng = np.random.default_rng(0)
    boots = diff[rng.integers(0, len(diff), size=(draws, len(diff)))].mean(1)
    low, high = np.percentile(boots, [2.5, 97.5])
    return {"against": other, "difference": float(diff.mean()), "ci95": [float(low), float(high)],
            "verdict": "identical" if np.allclose(diff, 0.0, atol=1e-6) else "better" if high < 0 else "worse" if low > 0
            else "not distinguishable"}


def _parts_folder(args: argparse.Namespace, task: str, blend: str) -> Path:
    return run_dir_of(args, task, "rf").parent / f"{blend}-from-parts"


def _run_or_parts(args: argparse.Namespace, task: str, variant: str) -> Path:
    run = run_dir_of(args, task, variant)
    return _parts_folder(args, task, variant) if variant in BLEND_NETWORK and not (run / "predictions_test.csv").exists() else run


def variants_of(args: argparse.Namespace, task: str) -> list[str]:
    if args.variants:
        return args.variants.split(",")
    return BASE_VARIANTS + (EXTENSIVE_VARIANTS if task in EXTENSIVE else [])


def bar_chart(results: dict, path: Path) -> None:
    """MAE/MAD of every variant, one group of bars per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t, v in results["tasks"].items() if any(x in v for x in BASE_VARIANTS)]
    variants = [v for v in BASE_VARIANTS + EXTENSIVE_VARIANTS + OTHER_VARIANTS
                if any(v in results["tasks"][t] for t in tasks)]
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 4))
    for k, variant in enumerate(variants):
        xs = [i + k * width for i, t in enumerate(tasks) if variant in results["tasks"][t]]
        ys = [results["tasks"][t][variant]["mae_over_mad"] for t in tasks if variant in results["tasks"][t]]
        ax.bar(xs, ys, width, label=variant)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(tasks))], tasks, rotation=20)
    ax.set_ylabel("test MAE / MAD (lower is better)")
    ax.set_title(f"{results['model']}: hybrids against their parts (60/20/20, seed {results['seed']}, {results['epochs']} epochs)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tasks", nargs="+", choices=sorted(PAPER))
    parser.add_argument("--model", default="cgcnn", choices=["cgcnn", "alignn", "ocrystalnet", "crystograph"])
    parser.add_argument("--variants", help=f"comma-separated subset of {BASE_VARIANTS + EXTENSIVE_VARIANTS + OTHER_VARIANTS}")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=0.0, help="time budget per network run (0: none)")
    parser.add_argument("--max-items", type=int, default=2000, help="random subset of mp37k / perovskite tasks")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--alignn-hidden", type=int, default=256, help="ALIGNN width (reference 256)")
    parser.add_argument("--alignn-layers", type=int, default=4, help="ALIGNN layers (4)")
    parser.add_argument("--gcn-layers", type=int, default=4, help="ALIGNN's edge-gated layers after them (4)")
    parser.add_argument("--alignn-norm", choices=["batch", "layer"], help="ALIGNN normalization (default: ALIGNNConfig's)")
    parser.add_argument("--ocrystalnet-hidden", type=int, default=0, help="OCrystalNet width (0: the reference 300)")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hybrid")
    parser.add_argument("--results", help="name of the summary JSON in benchmarks/results (hybrid-<model>.json)")
    parser.add_argument("--blend-from-parts", action="store_true",
                        help="where no blend run exists, compute it from the de and rf runs (see blend_from_parts)")
    parser.add_argument("--collect", action="store_true", help="only read finished runs and write the table and chart")
    args = parser.parse_args()

    if not args.collect:
        for task in args.tasks:
            data = None
            for variant in variants_of(args, task):
                if (run_dir_of(args, task, variant) / "metrics.json").exists():
                    continue
                data = data if data is not None else dataset_for(task, args.max_items, args.seed)
                print(f"{task}: {variant} ...", flush=True)
                run_variant(args, task, variant, data)
    results = collect(args, args.tasks)
    name = args.results or f"hybrid-{args.model}.json"
    path = write_results(name, results)
    bar_chart(results, path.with_suffix(".png"))


if __name__ == "__main__":
    main()
