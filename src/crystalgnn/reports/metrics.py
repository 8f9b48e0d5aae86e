"""Metrics of regression (MAE, RMSE, R², MAE/MAD), classification (accuracy, ROC-AUC) and of an
uncertainty estimate σ (Spearman ρ of σ and |error|, coverage of ±1σ and ±2σ)."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Per-target metrics for 1-D arrays. MAD is the mean absolute deviation from the mean of
    ``y_true`` (the error of predicting the mean), so MAE/MAD < 1 beats that baseline."""
    from sklearn.metrics import mean_absolute_error, r2_score  # here: scikit-learn takes ~0.5 s to import

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    mae = float(mean_absolute_error(y_true, y_pred))
    mad = float(np.mean(np.abs(y_true - y_true.mean())))
    return {
        "mae": mae,
        "rmse": float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
        "mad": mad,
        "mae_over_mad": mae / mad if mad > 0 else float("nan"),
        "n": int(len(y_true)),
    }


def classification_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """``probabilities`` (n, C). ROC-AUC is binary, or one-vs-rest macro for C > 2; NaN when a
    split holds a single class."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    probabilities = np.asarray(probabilities, float)
    out = {"accuracy": float(accuracy_score(y_true, probabilities.argmax(1))), "n": int(len(y_true))}
    try:
        if probabilities.shape[1] == 2:
            out["roc_auc"] = float(roc_auc_score(y_true, probabilities[:, 1]))
        else:
            out["roc_auc"] = float(
                roc_auc_score(y_true, probabilities, multi_class="ovr", labels=list(range(probabilities.shape[1])))
            )
    except ValueError:
        out["roc_auc"] = float("nan")
    return out


def calibration_metrics(y_true: np.ndarray, y_pred: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """How well σ (e.g. an ensemble's spread) tells the error, for 1-D arrays: ``spearman``, the
    rank correlation of σ and |error| (NaN when either is constant or n < 2); ``coverage_1sigma``
    and ``coverage_2sigma``, the fractions of items with |error| ≤ σ and ≤ 2σ (a Gaussian error
    of standard deviation σ gives 0.683 and 0.954); ``mean_sigma``; ``n``."""
    y_true, y_pred, sigma = (np.asarray(a, float) for a in (y_true, y_pred, sigma))
    error = np.abs(y_true - y_pred)
    spearman = float("nan")
    if len(error) > 1 and np.ptp(error) > 0 and np.ptp(sigma) > 0:  # spearmanr warns and gives NaN on constant input
        from scipy.stats import spearmanr

        spearman = float(spearmanr(sigma, error).statistic)
    n = len(error)
    return {
        "spearman": spearman,
        "coverage_1sigma": float(np.mean(error <= sigma)) if n else float("nan"),
        "coverage_2sigma": float(np.mean(error <= 2 * sigma)) if n else float("nan"),
        "mean_sigma": float(np.mean(sigma)) if n else float("nan"),
        "n": int(n),
    }
