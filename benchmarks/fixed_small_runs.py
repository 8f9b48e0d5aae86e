"""Eight fixed small runs (CGCNN and ALIGNN variants), to check that a refactoring changes no number.

Each run trains a tiny model for 3 epochs (batch 16, 1 thread) on the first 120 crystals of
``../shared/data/mp_elasticity3k`` and records its test/val metrics and test predictions. With
``--compare FILE`` the results are compared with an earlier record (``tests/fixtures/
fixed_small_runs_before.json`` holds the record made before the model registry) and the script
prints, per run, whether every number is bit-identical.

    python benchmarks/fixed_small_runs.py --out runs/fixed --compare tests/fixtures/fixed_small_runs_before.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crystalgnn.config import DataConfig, FeatureConfig, ModelConfig, RunConfig, TrainConfig, defaults_for  # noqa: E402
from crystalgnn.io import load_dataset  # noqa: E402
from crystalgnn.models.alignn import ALIGNNConfig  # noqa: E402
from crystalgnn.models.cgcnn import CGCNNConfig  # noqa: E402
from crystalgnn.training.run import train  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mp_elasticity3k"


def runs() -> dict[str, RunConfig]:
    t = TrainConfig(epochs=3, batch_size=16, threads=1)
    tiny = CGCNNConfig(atom_fea_len=16, n_conv=2, h_fea_len=16)
    log10 = DataConfig(transform="log10")
    out = {
        "cgcnn": RunConfig(data=log10, model=ModelConfig(arch=tiny), train=t),
        "cgcnn_sum_linear": RunConfig(data=log10, model=ModelConfig(arch=dataclasses.replace(tiny, conv="linear"), pooling="sum"), train=t),
        "cgcnn_site_embedding": RunConfig(data=log10, features=FeatureConfig(atom_features="embedding"),
                                          model=ModelConfig(arch=tiny, pooling="site"), train=t),
        "cgcnn_classification": RunConfig(model=ModelConfig(arch=tiny, task="classification"), train=t),
        "cgcnn_descriptors": RunConfig(data=log10, model=ModelConfig(arch=tiny, descriptors=("vpa", "density", "a")), train=t),
        "cgcnn_per_atom": RunConfig(data=DataConfig(per_atom=True), model=ModelConfig(arch=tiny), train=t),
    }
    al = defaults_for("alignn")
    small = ALIGNNConfig(alignn_layers=2, gcn_layers=1, hidden_features=16, embedding_features=8)
    al_train = dataclasses.replace(al.train, epochs=3, batch_size=16, threads=1)
    out["alignn"] = dataclasses.replace(al, data=log10, model=ModelConfig(arch=small), train=al_train)
    out["alignn_batchnorm_sum"] = dataclasses.replace(
        al, data=log10, model=ModelConfig(arch=dataclasses.replace(small, norm="batch"), pooling="sum"), train=al_train)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/fixed-small-runs", help="output folder (runs, graph cache, results.json)")
    parser.add_argument("--compare", help="an earlier results JSON to compare with")
    parser.add_argument("--only", nargs="+", help="run only these")
    args = parser.parse_args()
    out = Path(args.out)
    folder = out / "slice"
    if not folder.exists():
        folder.mkdir(parents=True)
        rows = (DATA / "id_prop.csv").read_text().splitlines()[:120]
        (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
        for row in rows:
            (folder / f"{row.split(',')[0]}.cif").symlink_to(DATA / f"{row.split(',')[0]}.cif")
    results = {}
    for name, cfg in runs().items():
        if args.only and name not in args.only:
            continue
        if name == "cgcnn_classification":  # above / below the median: the same classes from raw or log10 values
            data = load_dataset(folder, targets=[0])
            data.targets = (data.targets > np.median(data.targets)).astype(float)
        elif name == "cgcnn_per_atom":
            data = load_dataset(folder, targets=[0])
        else:
            data = load_dataset(folder, targets=[1], transform="log10")
        result = train(data, out / name, cfg, progress=False, workers=1, cache_dir=out / "cache")
        predictions = pd.read_csv(out / name / "predictions_test.csv")
        learned = [c for c in predictions.columns if "_log10_" in c]
        if learned:  # a log10 run: compare what the model learned (the record predates the data-unit columns)
            predictions = predictions[["id", *learned]].rename(columns={c: c.replace("_log10_", "_") for c in learned})
        results[name] = {"test": result.metrics["test"], "val": result.metrics["val"], "best_epoch": result.metrics["best_epoch"],
                         "predictions_test": predictions.drop(columns=["id"]).round(12).values.tolist()}
        print(name, json.dumps(result.metrics["test"]), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        same = True
        for name, now in results.items():
            identical = before.get(name) == now
            same &= identical
            print(f"{name:24s} {'bit-identical' if identical else 'DIFFERENT'}")
        return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
