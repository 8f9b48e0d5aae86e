r"""What a trained model's representation holds (Gong et al., Fig. 4c and Fig. S6a).

For a trained run (plain or descriptor-hybridized), with its own data and split:

* **Feature importance** (Fig. 4c). A random forest is fitted on the training crystals to
  :math:`[\frac{1}{N}\sum_i v_i \oplus d]` — the pooled representation the model learned and the
  structural descriptors — and its impurity importances are reported per input, with the share of
  the total held by the descriptors. Its test error is also that of Eq. S5 with a forest head
  ("CGCNN + descriptors"). The paper uses this instead of permutation importance of the network,
  which would be far more expensive.
* **Representation R²** (Fig. S6a, Eq. S4). For each descriptor, a linear regression from the
  pooled representation to the descriptor, fitted on the training crystals and scored (R²) on the
  test crystals. Run on a plain and a hybridized model, it shows how hybridization pushes the
  representation away from what the descriptors already say.

Outputs in ``out_dir``: ``importance.csv`` (input, kind, importance), ``importance.png`` (the
spectrum), ``representation_r2.csv`` / ``representation_r2.png`` (R² per descriptor for each model
given) and ``importance.json`` (descriptor share, forest test MAE, counts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalgnn.data.prepared import attach_descriptors, prepare

log = logging.getLogger("crystalgnn")


def run_inputs(run_dir: str | Path, data: Any = None, cache_dir: Any = "default", workers: int = 0, progress: bool = True):
    """The run's predictor, its prepared data (descriptors attached) and its split."""
    from crystalgnn.data.splits import make_split
    from crystalgnn.io.resolve import resolve_dataset
    from crystalgnn.paths import resolve_cache_dir
    from crystalgnn.predict import load_model
    from crystalgnn.training.hybrid import default_hybrid_descriptors

    predictor = load_model(run_dir)
    cfg = predictor.cfg
    source = data if data is not None else cfg.data.source
    if not source:
        raise ValueError(f"{run_dir} does not record its data source; pass the data explicitly")
    cache = resolve_cache_dir(cache_dir)
    dataset = resolve_dataset(source, cfg.data.targets, cfg.data.transform)
    prepared = prepare(dataset, cfg.graph_inputs(), cfg.features, cache, workers, progress)
    names = cfg.model.descriptors or default_hybrid_descriptors()
    attach_descriptors(prepared, dataset, names, cache, workers, progress)
    return predictor, prepared, make_split(prepared, cfg), tuple(names)


def representation_r2(embeddings: np.ndarray, descriptors: np.ndarray, names: Sequence[str], split: dict[str, np.ndarray]) -> dict[str, float]:
    """Test R² of a linear regression representation → each descriptor (fitted on train)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    train, test = split["train"], split["test"] if len(split.get("test", [])) else split["val"]
    scores = {}
    for k, name in enumerate(names):
        d = descriptors[:, k]
        tr, te = train[np.isfinite(d[train])], test[np.isfinite(d[test])]
        if len(tr) < 2 or len(te) < 2 or np.ptp(d[te]) == 0:
            scores[name] = float("nan")
            continue
        reg = LinearRegression().fit(embeddings[tr], d[tr])
        scores[name] = float(r2_score(d[te], reg.predict(embeddings[te])))
    return scores


def analyse_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    plain_run_dir: str | Path | None = None,
    data: Any = None,
    trees: int = 300,
    cache_dir: Any = "default",
    workers: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Feature importance and representation R² of ``run_dir`` (and of ``plain_run_dir``)."""
    from sklearn.ensemble import RandomForestRegressor

    from crystalgnn.reports.metrics import regression_metrics

    out = Path(out_dir or Path(run_dir) / "analysis")
    out.mkdir(parents=True, exist_ok=True)
    predictor, prepared, split, names = run_inputs(run_dir, data, cache_dir, workers, progress)
    if predictor.module.is_classification:
        raise ValueError("the importance analysis is for regression runs")
    predictions = predictor.predict_store(prepared)  # one pass: embeddings and the model's own test error
    embeddings = predictions.embeddings
    descriptors = prepared.extra.astype(np.float64)
    x = np.concatenate([embeddings, descriptors], axis=1)
    y = prepared.targets[:, 0]
    train, test = split["train"], split["test"] if len(split.get("test", [])) else split["val"]
    forest = RandomForestRegressor(n_estimators=trees, n_jobs=-1, random_state=predictor.cfg.train.seed).fit(x[train], y[train])
    importance = forest.feature_importances_
    n_rep = embeddings.shape[1]
    inputs = [f"representation_{k}" for k in range(n_rep)] + list(names)
    frame = pd.DataFrame({"input": inputs, "kind": ["representation"] * n_rep + ["descriptor"] * len(names), "importance": importance})
    frame.sort_values("importance", ascending=False).to_csv(out / "importance.csv", index=False)
    target = predictor.target_names[0]
    summary: dict[str, Any] = {
        "run": str(run_dir),
        "target": target,
        "descriptor_share": float(importance[n_rep:].sum()),
        "representation_share": float(importance[:n_rep].sum()),
        "top_descriptors": frame[frame.kind == "descriptor"].nlargest(5, "importance")["input"].tolist(),
        "forest_on_representation_and_descriptors_test": regression_metrics(y[test], forest.predict(x[test])),
        "model_test": regression_metrics(y[test], predictions.values[test, 0]),
        "n_train": int(len(train)),
        "n_test": int(len(test)),
    }
    r2 = {"model": representation_r2(embeddings, descriptors, names, split)}
    if plain_run_dir is not None:
        plain, plain_data, plain_split, _ = run_inputs(plain_run_dir, data, cache_dir, workers, progress)
        if plain_data.ids != prepared.ids or any(not np.array_equal(plain_split[k], split[k]) for k in split):
            raise ValueError(f"{plain_run_dir} and {run_dir} were not trained on the same items and split; compare runs of the same data and seed")
        r2["plain"] = representation_r2(plain.predict_store(plain_data).embeddings, descriptors, names, split)
    r2_frame = pd.DataFrame({"descriptor": list(names), **{f"r2_{k}": [v[n] for n in names] for k, v in r2.items()}})
    r2_frame.to_csv(out / "representation_r2.csv", index=False)
    summary["mean_representation_r2"] = {k: float(np.nanmean(list(v.values()))) for k, v in r2.items()}
    (out / "importance.json").write_text(json.dumps(summary, indent=2) + "\n")
    importance_plots(frame, r2_frame, out, title=f"{Path(run_dir).name}: {target}")
    return summary


def importance_plots(frame: pd.DataFrame, r2_frame: pd.DataFrame, out: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.12 * len(frame)), 3.5), dpi=120)
    colors = np.where(frame["kind"] == "descriptor", "#e6550d", "#3182bd")
    ax.bar(np.arange(len(frame)), frame["importance"], color=colors, width=0.9)
    desc = np.flatnonzero(frame["kind"].to_numpy() == "descriptor")
    ax.set_xticks(desc, frame["input"].to_numpy()[desc], rotation=80, fontsize=6)
    share = frame.loc[frame.kind == "descriptor", "importance"].sum()
    ax.set(ylabel="random-forest importance", title=f"{title}  (descriptors: {share:.0%} of the importance; blue: representation)")
    fig.tight_layout()
    fig.savefig(out / "importance.png")
    plt.close(fig)

    columns = [c for c in r2_frame.columns if c.startswith("r2_")]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(r2_frame)), 3.8), dpi=120)
    x = np.arange(len(r2_frame))
    width = 0.8 / len(columns)
    for k, column in enumerate(columns):
        ax.bar(x + (k - (len(columns) - 1) / 2) * width, r2_frame[column].clip(lower=-0.2), width, label=column.removeprefix("r2_"))
    ax.set_xticks(x, r2_frame["descriptor"], rotation=75, ha="right", fontsize=7)
    ax.set(ylim=(-0.2, 1), ylabel="test R² (linear, representation → descriptor)", title="Fig. S6a: representation vs descriptors")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "representation_r2.png")
    plt.close(fig)


__all__ = ["analyse_run", "representation_r2"]
