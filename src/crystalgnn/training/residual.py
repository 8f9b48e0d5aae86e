r"""The forest hybrids (``hybrid="residual"``, ``"stacked"``, ``"blend"``, ``"blend-plain"``): a descriptor forest, cross-fitted, and a network.

Gong et al.'s Eq. 14 hybrid (``"end-to-end"``) concatenates standardized descriptors to the pooled
vector and asks the head to find, from a few thousand crystals, the function of the descriptors
that a random forest finds at once. Measured on our tasks (``benchmarks/hybrid.py``), it often
does not: it loses to the forest on its own inputs, most where the target is extensive and the
forest reads it almost directly off ``natoms``, ``vpa`` and the lattice lengths. The residual
hybrid stacks the two instead:

.. math::

    \hat y(G, d) = f_\mathrm{RF}(d) + \sigma\,\mathrm{NN}(G, \tilde d \oplus \tilde f_\mathrm{RF}(d)) + \mu,

where :math:`f_\mathrm{RF}` is a random forest on the raw descriptors :math:`d` (the same forest
as the descriptors-only baseline, :class:`crystalgnn.config.ForestConfig`), and the network
(any model, with the descriptors in its head as in Eq. 14) learns the residual
:math:`y - f_\mathrm{RF}(d)`, standardized with the residual's training mean μ and spread σ.
The head also reads the forest's prediction (standardized, :math:`\tilde f`), so that where the
forest is poor the network can undo it with one weight instead of having to model the forest's
jagged errors from the descriptors: measured on refractive index, where the forest's MAE/MAD is
0.70 and CGCNN's 0.40, the residual without that input reached only 0.64.

The same forest serves the other forest hybrids: ``"stacked"`` reads its prediction as one
more head input and learns ``y`` itself, and ``"blend"`` trains the Eq. 14 network without it and
predicts ``w · NN + (1 − w) · f_RF`` with ``w`` chosen on the validation split after training
(:func:`crystalgnn.training.objectives.fit_blend_weight`). ``"blend-plain"`` is the same with the
plain network (no descriptors in its head): the descriptors then reach the prediction only
through the forest. Measured (README, "Hybrids against their parts"), the Eq. 14 network is worse
than the plain one on several intensive targets, and only blend-plain stayed at or below the
better part on every task; ``"blend"`` gains more where Eq. 14 helps (the elastic moduli).

* **No leakage.** A forest fits its own training crystals almost exactly, so their residuals
  would be noise-sized and the network would learn nothing. The training crystals' base values
  are therefore out-of-fold predictions (``folds``-fold cross-fitting on the training split); the
  validation and test crystals, and every crystal predicted later, get the forest fitted on the
  whole training split. Early stopping on validation keeps a network that cannot improve on the
  forest close to it, so the hybrid is rarely worse than either part.
* **Units.** The forest learns what the run learns (``log10`` of the target if transformed; per
  atom with ``per_atom``, its prediction multiplied back by the atom count), so the base is in
  the data's per-cell units and the objective adds it (``batch.base``) to the decoded output.
* **Storage.** The forest is saved as ``base_forest.skops`` (skops: JSON plus numpy arrays, no
  pickle). Loading trusts only scikit-learn's tree storage type, and every tree's node arrays are
  bounds-checked before use, since scikit-learn indexes them unchecked.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from crystalgnn.config import ForestConfig

log = logging.getLogger("crystalgnn")

#: File name of the forest in a run directory.
FOREST_FILE = "base_forest.skops"
#: The one type beyond skops' defaults a saved forest needs (scikit-learn's tree node storage).
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def learned_forest_targets(targets: np.ndarray, atoms: np.ndarray, per_atom: bool) -> np.ndarray:
    """What the forest fits: the (transformed) targets (n, T), per atom with ``per_atom``."""
    return targets / atoms[:, None] if per_atom else targets


def _new_forest(forest: ForestConfig, seed: int, threads: int):
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=forest.n_estimators, max_features=forest.max_features,
                                 min_samples_leaf=forest.min_samples_leaf, n_jobs=max(1, threads), random_state=seed)


def _fit(model, x: np.ndarray, y: np.ndarray):
    return model.fit(x, y if y.shape[1] > 1 else y[:, 0])


def _predict(model, x: np.ndarray, n_targets: int) -> np.ndarray:
    return np.asarray(model.predict(x), np.float64).reshape(len(x), n_targets)


def fit_base_forest(
    descriptors: np.ndarray,
    targets: np.ndarray,
    atoms: np.ndarray,
    train_rows: np.ndarray,
    per_atom: bool,
    seed: int,
    threads: int = 1,
    folds: int = 5,
    forest: ForestConfig = ForestConfig(),
):
    """Fit the base forest on ``train_rows``; return ``(model, base_for_training, base_for_all)``.

    ``base_for_all`` (n, T): the whole-training-split forest's predictions of every item, in data
    units per cell. ``base_for_training``: the same, except that the training rows hold out-of-fold
    predictions (``folds`` forests, each fitted without the fold it predicts) — what the network
    is trained against.
    """
    from sklearn.model_selection import KFold

    if folds < 2:
        raise ValueError(f"a forest hybrid (--hybrid stacked / residual) cross-fits its forest; folds must be at least 2, not {folds}")
    train_rows = np.asarray(train_rows)
    if len(train_rows) < 2 * folds:
        raise ValueError(f"a forest hybrid (--hybrid stacked / residual) needs at least {2 * folds} training crystals to "
                         f"cross-fit its forest, got {len(train_rows)}; use more data or plain --descriptors")
    x = np.asarray(descriptors, np.float64)
    y = learned_forest_targets(np.asarray(targets, np.float64), np.asarray(atoms, np.float64), per_atom)
    scale = np.asarray(atoms, np.float64)[:, None] if per_atom else np.ones((len(x), 1))
    n_targets = y.shape[1]
    model = _fit(_new_forest(forest, seed, threads), x[train_rows], y[train_rows])
    base_for_all = _predict(model, x, n_targets) * scale
    base_for_training = base_for_all.copy()
    for k, (fit_part, held) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(train_rows)):
        part = _fit(_new_forest(forest, seed + 1 + k, threads), x[train_rows[fit_part]], y[train_rows[fit_part]])
        rows = train_rows[held]
        base_for_training[rows] = _predict(part, x[rows], n_targets) * scale[rows]
    return model, base_for_training.astype(np.float32), base_for_all.astype(np.float32)


def base_predictions(model, descriptors: np.ndarray, atoms: np.ndarray, per_atom: bool, n_targets: int) -> np.ndarray:
    """The forest's base values (n, T) in data units per cell, for crystals predicted later."""
    values = _predict(model, np.asarray(descriptors, np.float64), n_targets)
    return (values * np.asarray(atoms, np.float64)[:, None] if per_atom else values).astype(np.float32)


def save_forest(model, run_dir: str | Path, forest: ForestConfig = ForestConfig()) -> Path:
    """``run_dir/base_forest.skops`` (and its settings in ``base_forest.json``)."""
    import skops.io as sio

    path = Path(run_dir) / FOREST_FILE
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # DDP ranks each write: whole files only
    sio.dump(model, partial)
    os.replace(partial, path)
    path.with_suffix(".json").write_text(json.dumps({"forest": asdict(forest), "n_features": int(model.n_features_in_)}, indent=2) + "\n")
    return path


def load_forest(run_dir: str | Path, n_features: int):
    """The base forest of a residual-hybrid run, checked: only scikit-learn's own types, every
    tree's children and split features in range, ``n_features`` inputs."""
    import skops.io as sio

    path = Path(run_dir) / FOREST_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: a residual-hybrid run keeps its descriptor forest there; "
                                "was the run directory copied without it?")
    model = sio.load(path, trusted=TRUSTED_TYPES)
    check_forest(model, n_features, path)
    return model


def check_forest(model, n_features: int, path: Path | str = "forest") -> None:
    """Refuse a forest whose node arrays point outside themselves or backwards (scikit-learn would
    read out of bounds, or loop) or whose input width is not the run's descriptor count."""
    from sklearn.ensemble import RandomForestRegressor

    if not isinstance(model, RandomForestRegressor):
        raise ValueError(f"{path}: expected a RandomForestRegressor, found {type(model).__name__}")
    if int(model.n_features_in_) != n_features:
        raise ValueError(f"{path}: the forest reads {model.n_features_in_} descriptors, the run has {n_features}")
    for k, estimator in enumerate(model.estimators_):
        tree = estimator.tree_
        nodes = int(tree.node_count)
        left, right, feature = tree.children_left, tree.children_right, tree.feature
        leaf = left == -1
        inner = np.flatnonzero(~leaf)
        # children come after their parent (no cycles) and inside the arrays; features in range
        inner_ok = ((left[inner] > inner) & (left[inner] < nodes) & (right[inner] > inner) & (right[inner] < nodes)
                    & (feature[inner] >= 0) & (feature[inner] < n_features))
        if len(left) != nodes or not np.all(right[leaf] == -1) or not np.all(inner_ok) or tree.value.shape[0] != nodes:
            raise ValueError(f"{path}: tree {k} has node indices out of range; the file is damaged or not one crystalgnn wrote")
