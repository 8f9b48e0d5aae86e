"""Train/validation/test splits: seeded fractions, a split file, or k-fold cross-validation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from crystalgnn.config import RunConfig
    from crystalgnn.data.prepared import PreparedData

Split = dict[str, np.ndarray]


def fraction_split(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 123) -> Split:
    """One seeded shuffle, then consecutive train/val/test blocks (CGCNN: 60/20/20, seed 123).

    Fractions that do not add up to 1 leave the rest unused (as the reference's train_ratio).
    """
    train_f, val_f, test_f = fractions
    if min(fractions) < 0 or train_f + val_f + test_f > 1 + 1e-9:
        raise ValueError(f"split fractions {tuple(fractions)} must be non-negative and sum to at most 1")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(train_f * n)), int(round(val_f * n))
    n_test = min(int(round(test_f * n)), n - n_train - n_val)
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val : n_train + n_val + n_test]),
    }


def file_split(ids: Sequence[str], path: str | Path) -> Split:
    """Split from a CSV with columns ``id,split`` (split ∈ train/val/test; header optional).

    Ids of the dataset not in the file are unused; ids of the file not in the dataset raise.
    """
    table = pd.read_csv(path, header=None, dtype=str, comment="#")
    if table.iloc[0, 0].strip().lower() == "id":
        table = table.iloc[1:]
    if table.shape[1] < 2:
        raise ValueError(f"{path}: a split file needs two columns, id and split (train/val/test)")
    position = {str(i): k for k, i in enumerate(ids)}
    unknown = [i for i in table.iloc[:, 0] if i not in position]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) not in the dataset, e.g. {unknown[:5]}")
    names = table.iloc[:, 1].str.strip().str.lower()
    bad = sorted(set(names) - {"train", "val", "valid", "validation", "test"})
    if bad:
        raise ValueError(f"{path}: unknown split name(s) {bad}; use train, val or test")
    names = names.replace({"valid": "val", "validation": "val"})
    return {
        part: np.sort(np.array([position[i] for i in table.iloc[:, 0][names == part]], dtype=np.int64))
        for part in ("train", "val", "test")
    }


def kfold_split(
    n: int,
    n_folds: int,
    fold: int,
    seed: int = 18012019,
    val_fraction: float = 0.1,
    labels: np.ndarray | None = None,
) -> Split:
    """Fold ``fold`` of ``KFold(n_folds, shuffle=True, random_state=seed)`` is the test set (MatBench
    uses seed 18012019; stratified for classification when ``labels`` are given). A seeded
    ``val_fraction`` of the remaining items is held out for validation/early stopping; with
    ``val_fraction=0`` the training fold is used whole and is also the validation set (UnconvBench)."""
    from sklearn.model_selection import KFold, StratifiedKFold  # here: scikit-learn takes ~0.5 s to import

    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    splitter = (
        StratifiedKFold(n_folds, shuffle=True, random_state=seed) if labels is not None else KFold(n_folds, shuffle=True, random_state=seed)
    )
    rest, test = list(splitter.split(np.zeros(n), labels))[fold]
    if val_fraction == 0:
        return {"train": np.sort(rest), "val": np.sort(rest), "test": np.sort(test)}
    rng = np.random.default_rng(seed + fold)
    rest = rng.permutation(rest)
    n_val = int(round(val_fraction * len(rest)))
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": np.sort(test)}


def make_split(prepared: PreparedData, cfg: RunConfig) -> Split:
    """The split ``cfg.train`` asks for over the usable items of ``prepared``: a split file,
    k-fold (stratified for classification), or seeded fractions (``split_seed``, else ``seed``)."""
    t = cfg.train
    if t.split_file:
        return file_split(prepared.ids, t.split_file)
    if t.kfold:
        labels = prepared.targets[:, 0].astype(int) if cfg.model.task == "classification" else None
        return kfold_split(len(prepared), t.kfold, t.fold, t.kfold_seed, val_fraction=t.kfold_val_fraction, labels=labels)
    return fraction_split(len(prepared), t.split_fractions, t.seed if t.split_seed is None else t.split_seed)
