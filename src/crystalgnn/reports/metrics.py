"""Metrics of regression (MAE, RMSE, R², MAE/MAD) and classification (accuracy, ROC-AUC)."""

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
