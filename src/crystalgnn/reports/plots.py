"""Plots people would rather look at than read: parity, ROC, calibration and learning curves (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def parity_plot(
    y_true: dict[str, np.ndarray], y_pred: dict[str, np.ndarray], path: str | Path, target: str = "target", metrics: dict | None = None,
    metrics_of: str = "test",
) -> None:
    """Predicted vs true for each split (``{"train": ..., "val": ..., "test": ...}``); ``target``
    labels the axes (``log10_<t>`` when the model learned log10), ``metrics_of`` names the split
    the ``metrics`` in the title are of."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    colors = {"train": "#9ecae1", "val": "#fdae6b", "test": "#31a354"}
    lo, hi = np.inf, -np.inf
    for split, t in y_true.items():
        if len(t) == 0:
            continue
        p = y_pred[split]
        ax.scatter(t, p, s=6, alpha=0.5, label=split, color=colors.get(split))
        lo, hi = min(lo, t.min(), p.min()), max(hi, t.max(), p.max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    title = f"{target}"
    if metrics:
        title += f"\n{metrics_of} MAE {metrics.get('mae', float('nan')):.4g}, R² {metrics.get('r2', float('nan')):.3f}"
    ax.set(xlabel=f"true {target}", ylabel=f"predicted {target}", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def calibration_plot(sigma: np.ndarray, abs_error: np.ndarray, path: str | Path, target: str = "target",
                     metrics: dict | None = None, n_bins: int = 10) -> None:
    """|error| against the predicted σ: each item faintly, and the mean of both in ``n_bins`` bins
    of equal count ordered by σ, with the line y = x (an honest σ puts the bins near it; for a
    Gaussian error the mean |error| is 0.8 σ)."""
    sigma, abs_error = np.asarray(sigma, float), np.asarray(abs_error, float)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.scatter(sigma, abs_error, s=6, alpha=0.3, color="#9ecae1", label="items")
    if len(sigma):
        bins = [b for b in np.array_split(np.argsort(sigma, kind="stable"), min(n_bins, len(sigma))) if len(b)]
        ax.plot([sigma[b].mean() for b in bins], [abs_error[b].mean() for b in bins], "o-", color="#31a354", label="binned mean")
        hi = max(float(sigma.max()), float(abs_error.max())) or 1.0
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="y = x")
    title = f"{target}"
    if metrics:
        title += (f"\nSpearman ρ {metrics.get('spearman', float('nan')):.3f}, within ±1σ {metrics.get('coverage_1sigma', float('nan')):.2f}, "
                  f"±2σ {metrics.get('coverage_2sigma', float('nan')):.2f}")
    ax.set(xlabel=f"predicted σ of {target} (ensemble spread)", ylabel=f"|error| of {target}", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def roc_plot(y_true: np.ndarray, probabilities: np.ndarray, path: str | Path, auc: float | None = None) -> None:
    """ROC curve of the test split (one-vs-rest per class when there are more than two)."""
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    classes = range(1, 2) if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    for c in classes:
        positives = (np.asarray(y_true) == c).astype(int)
        if positives.min() == positives.max():
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, c])
        ax.plot(fpr, tpr, label=f"class {c}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC (test), AUC {auc:.3f}" if auc is not None else "ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def learning_curve_plot(metrics_csv: str | Path, path: str | Path) -> None:
    """Training loss and validation metric per epoch from Lightning's CSV log."""
    log = pd.read_csv(metrics_csv)
    epochs = log.groupby("epoch").last()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    if "train_loss" in epochs:
        ax.plot(epochs.index, epochs["train_loss"], label="train loss")
    if "val_loss" in epochs:
        ax.plot(epochs.index, epochs["val_loss"], label="validation loss")
    ax.set(xlabel="epoch", ylabel="loss (normalized units)", yscale="log")
    secondary = "val_mae" if "val_mae" in epochs else "val_accuracy" if "val_accuracy" in epochs else None
    if secondary:
        ax2 = ax.twinx()
        ax2.plot(epochs.index, epochs[secondary], color="C3", label=secondary.replace("_", " "))
        ax2.set_ylabel(secondary.replace("_", " "))
        if secondary == "val_mae" and (epochs[secondary].dropna() > 0).all():
            ax2.set_yscale("log")  # an error falling by orders of magnitude reads on a log axis, as the loss
        ax2.legend(loc="upper center")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def data_check_plot(targets: np.ndarray, names: list[str], natoms: np.ndarray, path: str | Path,
                    verdicts: list[str] | None = None) -> None:
    """One row per target: its histogram, and the target against the atoms per cell (log axes
    where the values allow), with the line of slope 1 through the medians that an extensive
    target would follow (``crystalgnn check``)."""
    rows = max(1, len(names))
    fig, axes = plt.subplots(rows, 2, figsize=(9, 3.2 * rows), dpi=110, squeeze=False)
    natoms = np.asarray(natoms, float)
    for k, name in enumerate(names):
        y = np.asarray(targets[:, k], float)
        ok = np.isfinite(y)
        hist, scatter = axes[k]
        hist.hist(y[ok], bins=50, color="#9ecae1")
        hist.set(xlabel=name, ylabel="crystals", title=f"{name}: distribution")
        scatter.scatter(natoms[ok], y[ok], s=5, alpha=0.4, color="#3182bd")
        if ok.any() and np.all(y[ok] > 0):
            scatter.set_xscale("log")
            scatter.set_yscale("log")
            n0, y0 = float(np.median(natoms[ok])), float(np.median(y[ok]))
            grid = np.array([natoms[ok].min(), natoms[ok].max()])
            scatter.plot(grid, y0 * grid / n0, "k--", lw=1, label="∝ atoms (extensive)")
            scatter.legend(loc="upper left")
        verdict = f" ({verdicts[k]})" if verdicts else ""
        scatter.set(xlabel="atoms per cell", ylabel=name, title=f"{name} against cell size{verdict}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
