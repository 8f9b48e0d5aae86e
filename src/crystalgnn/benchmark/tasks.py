"""Benchmark tasks as data: a dataset source, its target, a metric and a fold protocol.

A task is a :class:`Task` read from TOML, YAML or JSON (the built-in ones from
``builtin_tasks.toml`` beside this file, a user's from ``--tasks-file``); nothing about a task is
code. The API follows MatBench's::

    task = get_task("mp_elasticity3k_log10_G")
    task.load(data_root)                          # the dataset, transform applied
    for fold in task.folds:
        train = task.get_train_and_val_data(fold) # a CrystalDataset
        test = task.get_test_data(fold)
        task.record(fold, predictions)            # predictions of test, in test's order
    task.scores()                                 # {fold: metric}, mean and std

Fold protocols (``[protocol]`` of a task):

* ``matbench``: ``KFold(5, shuffle=True, random_state=18012019)`` over the dataset's items in
  order, ``StratifiedKFold`` with the same seed for classification; a seeded 10 % of each
  training fold is held out for validation (early stopping, best epoch).
* ``unconvbench``: ``KFold(5, shuffle=True, random_state=42)`` over ``range(N)``; each training
  fold is used whole (``val_fraction = 0``: the best epoch is picked on the training fold itself, as
  the reference keeps its last epoch) or with a seeded inner validation split
  (``val_fraction = 0.1``).

Fold ids are those of :func:`crystalgnn.data.splits.kfold_split`, which the training run uses, so
a task's folds and a run's split are one computation.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from crystalgnn.data.records import CrystalDataset
from crystalgnn.data.splits import Split, kfold_split

BUILTIN_FILE = Path(__file__).with_name("builtin_tasks.toml")

Metric = Literal["mae", "mae_over_mad", "roc_auc", "rmse"]
#: Metrics where lower is better (the rest, ROC-AUC, rank higher first).
LOWER_IS_BETTER = {"mae": True, "mae_over_mad": True, "rmse": True, "roc_auc": False}

#: The seeds of the published protocols.
PROTOCOL_SEEDS = {"matbench": 18012019, "unconvbench": 42}
PROTOCOL_VAL_FRACTIONS = {"matbench": 0.1, "unconvbench": 0.0}


@dataclass(frozen=True)
class FoldProtocol:
    """How a task's items are cut into folds. ``kind`` names the published protocol; ``seed`` and
    ``val_fraction`` default to it (MatBench 18012019 / 0.1, UnconvBench 42 / 0.0 — the training
    fold used whole). ``stratify``: StratifiedKFold on the class labels (classification)."""

    kind: Literal["matbench", "unconvbench", "custom"] = "matbench"
    n_folds: int = 5
    seed: int | None = None
    val_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "custom" and (self.seed is None or self.val_fraction is None):
            raise ValueError("a custom fold protocol needs its seed and val_fraction")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not 0.0 <= self.resolved_val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.resolved_val_fraction}")

    @property
    def resolved_seed(self) -> int:
        return int(self.seed if self.seed is not None else PROTOCOL_SEEDS[self.kind])

    @property
    def resolved_val_fraction(self) -> float:
        return float(self.val_fraction if self.val_fraction is not None else PROTOCOL_VAL_FRACTIONS[self.kind])


@dataclass(frozen=True)
class Selection:
    """A seeded subset of the source: items with ``atoms_min ≤ atoms per cell ≤ atoms_max``
    (0: no bound) and, when ``target_above`` is set, a target (after the task's transform) above
    it (e.g. 0 for the band gaps of non-metals only); then ``n`` of them drawn with ``seed`` (0:
    all), kept in source order."""

    n: int = 0
    seed: int = 0
    atoms_min: int = 0
    atoms_max: int = 0
    target_above: float | None = None

    @property
    def by_size(self) -> bool:
        return bool(self.atoms_min or self.atoms_max)


@dataclass(frozen=True)
class Source:
    """Where a task's structures and targets are, relative to the data root.

    ``kind``:

    * ``path``: anything :func:`crystalgnn.load_dataset` reads (a CGCNN/ALIGNN folder, a CSV with a
      CIF column, a MatBench ``.json.gz``); ``paths`` joins several (e.g. two parts of one set);
    * ``archive``: ``archive`` (tar.gz / tar.xz) is extracted once into the cache, then ``path`` (a
      table of ids and targets) is read with the extracted ``structures`` folder;
    * ``jarvis``: a JARVIS JSON dataset (a list of records with ``atoms`` dicts; ``id_key``);
    * ``matbench`` / ``unconvbench``: a task file in MatBench layout; UnconvBench's items are named
      ``<task>-<row>`` as its reference code names them;
    * ``chains``: Gong et al.'s generated 1D chains (``path`` is the spec, e.g. ``chains:short``).
    """

    kind: Literal["path", "archive", "jarvis", "matbench", "unconvbench", "chains"] = "path"
    path: str = ""
    paths: tuple[str, ...] = ()
    archive: str = ""
    structures: str = ""
    id_column: str = ""
    id_key: str = "jid"

    def all_paths(self) -> tuple[str, ...]:
        return self.paths or ((self.path,) if self.path else ())


@dataclass(frozen=True)
class Task:
    """One benchmark task (see the module docstring). ``target``: a column name or a 0-based
    column index (as text); ``transform``: applied to the target before learning and scoring
    (``log10`` for the moduli, as MatBench scores them); ``approximates``: the published task this
    one stands in for (its numbers are shown beside ours, marked as measured on other data)."""

    name: str
    source: Source
    target: str
    description: str = ""
    unit: str = ""
    transform: Literal["none", "log10"] = "none"
    problem: Literal["regression", "classification"] = "regression"
    metric: Metric = "mae"
    protocol: FoldProtocol = field(default_factory=FoldProtocol)
    select: Selection = field(default_factory=Selection)
    approximates: str = ""
    #: "builtin" for the shipped data, "real" for a published task's own files (needs --data-root).
    group: str = "builtin"

    def __post_init__(self) -> None:
        if self.metric == "roc_auc" and self.problem != "classification":
            raise ValueError(f"task {self.name}: ROC-AUC is a classification metric; set problem = \"classification\"")
        if self.problem == "classification" and self.metric != "roc_auc":
            raise ValueError(f"task {self.name}: a classification task is scored by roc_auc, not {self.metric}")
        if self.metric not in LOWER_IS_BETTER:
            raise ValueError(f"task {self.name}: unknown metric {self.metric!r}; choose from {sorted(LOWER_IS_BETTER)}")
        object.__setattr__(self, "_state", _TaskState())

    # -- the MatBench-manner API ------------------------------------------------------------------
    @property
    def folds(self) -> list[int]:
        return list(range(self.protocol.n_folds))

    @property
    def lower_is_better(self) -> bool:
        return LOWER_IS_BETTER[self.metric]

    def load(self, data_root: str | Path | None = None, cache_dir: str | Path | None = "default", dataset: CrystalDataset | None = None) -> CrystalDataset:
        """Read the task's dataset (targets under ``transform``, the selection applied); kept for
        the fold methods. ``dataset``: use this one instead (already read)."""
        if dataset is None:
            from crystalgnn.benchmark.sources import load_task_data

            dataset = load_task_data(self, data_root, cache_dir)
        self._state.dataset = dataset
        self._state.predictions = {}
        return dataset

    @property
    def dataset(self) -> CrystalDataset:
        if self._state.dataset is None:
            raise RuntimeError(f"task {self.name}: call task.load(data_root) first")
        return self._state.dataset

    def split(self, fold: int, n: int | None = None, labels: np.ndarray | None = None) -> Split:
        """Train / val / test rows of fold ``fold`` over ``n`` items (the loaded dataset's when
        omitted): the split a training run with :meth:`train_settings` makes."""
        if n is None:
            n = len(self.dataset)
            if self.problem == "classification":
                labels = self.dataset.targets[:, 0].astype(int)
        p = self.protocol
        return kfold_split(n, p.n_folds, fold, p.resolved_seed, val_fraction=p.resolved_val_fraction, labels=labels)

    def get_train_and_val_data(self, fold: int) -> CrystalDataset:
        s = self.split(fold)
        return self.dataset.subset(np.union1d(s["train"], s["val"]))

    def get_test_data(self, fold: int) -> CrystalDataset:
        return self.dataset.subset(self.split(fold)["test"])

    def record(self, fold: int, predictions: Iterable[float]) -> float:
        """Score ``predictions`` of fold ``fold``'s test items (in their order; class-1
        probabilities for classification, in the task's units otherwise); returns the metric."""
        truth = self.get_test_data(fold).targets[:, 0]
        pred = np.asarray(list(predictions), dtype=float).reshape(-1)
        if len(pred) != len(truth):
            raise ValueError(f"task {self.name} fold {fold}: {len(pred)} predictions for {len(truth)} test items")
        value = score(self.metric, truth, pred, mad=self.mad())
        self._state.predictions[fold] = value
        return value

    def scores(self) -> dict[str, Any]:
        values = self._state.predictions
        arr = np.array(list(values.values()), dtype=float)
        return {"folds": dict(values), "mean": float(arr.mean()) if len(arr) else float("nan"),
                "std": float(arr.std()) if len(arr) else float("nan")}

    def mad(self) -> float:
        """Mean absolute deviation of the target over the whole task (MatBench's MAD)."""
        y = self.dataset.targets[:, 0]
        return float(np.mean(np.abs(y - y.mean())))

    def train_settings(self) -> dict[str, Any]:
        """The :class:`~crystalgnn.config.TrainConfig` fields that make a run's split this task's."""
        p = self.protocol
        return {"kfold": p.n_folds, "kfold_seed": p.resolved_seed, "kfold_val_fraction": p.resolved_val_fraction}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("_state", None)
        return data


class _TaskState:
    """What a task holds once loaded (kept off the frozen dataclass's fields)."""

    def __init__(self) -> None:
        self.dataset: CrystalDataset | None = None
        self.predictions: dict[int, float] = {}


def score(metric: str, truth: np.ndarray, pred: np.ndarray, mad: float | None = None) -> float:
    truth, pred = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
    if metric == "mae":
        return float(np.mean(np.abs(truth - pred)))
    if metric == "rmse":
        return float(np.sqrt(np.mean((truth - pred) ** 2)))
    if metric == "mae_over_mad":
        if not mad:
            raise ValueError("MAE/MAD needs the task's mean absolute deviation")
        return float(np.mean(np.abs(truth - pred)) / mad)
    if metric == "roc_auc":
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(truth.astype(int), pred))
    raise ValueError(f"unknown metric {metric!r}")


# -- reading task files --------------------------------------------------------------------------
def _read_file(path: Path) -> dict[str, Any]:
    suffix = path.suffix.lower()
    text = path.read_text()
    if suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    if suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    if suffix == ".json":
        return json.loads(text)
    raise ValueError(f"{path}: a task file is .toml, .yaml/.yml or .json")


def task_from_dict(name: str, data: Mapping[str, Any], where: str = "") -> Task:
    """A :class:`Task` from its table in a task file; unknown keys raise, naming them."""
    from crystalgnn.config import from_dict

    data = dict(data)
    data["name"] = name
    if "source" not in data or "target" not in data:
        raise ValueError(f"task {name!r}{where}: needs at least 'source' and 'target'")
    if isinstance(data["source"], str):
        data["source"] = {"kind": "path", "path": data["source"]}
    data["target"] = str(data["target"])
    for key in ("source", "protocol", "select"):
        if key in data and not isinstance(data[key], Mapping):
            raise ValueError(f"task {name!r}{where}: {key!r} must be a table")
    try:
        return from_dict(Task, data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"task {name!r}{where}: {err}") from None


def load_task_file(path: str | Path) -> dict[str, Task]:
    """Tasks of a TOML/YAML/JSON file: ``{"tasks": {NAME: {source, target, ...}}}`` (TOML:
    ``[tasks.NAME]`` tables). See README (Benchmarks) for every key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file {path} not found")
    data = _read_file(path)
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(f"{path}: expected a 'tasks' table of NAME = {{source = ..., target = ...}}")
    return {name: task_from_dict(name, spec, f" in {path}") for name, spec in tasks.items()}


def builtin_tasks() -> dict[str, Task]:
    """Every built-in task (the shipped data and the published tasks' own files)."""
    return load_task_file(BUILTIN_FILE)


def get_tasks(names: Iterable[str], tasks_file: str | Path | None = None) -> list[Task]:
    """Tasks by name, from the built-in registry and ``tasks_file`` (whose names win); a name
    ending in ``*`` takes every task it starts (``matbench_*``)."""
    known = builtin_tasks()
    if tasks_file:
        known.update(load_task_file(tasks_file))
    chosen: list[Task] = []
    for name in names:
        if name.endswith("*"):
            matches = [t for n, t in known.items() if n.startswith(name[:-1])]
            if not matches:
                raise ValueError(f"no task starts with {name[:-1]!r}; `crystalgnn benchmark list` shows them")
            chosen += matches
        elif name in known:
            chosen.append(known[name])
        else:
            raise ValueError(f"unknown task {name!r}; `crystalgnn benchmark list` shows the {len(known)} known tasks"
                             + (f" (and those of {tasks_file})" if tasks_file else ", and --tasks-file adds your own"))
    return chosen


def get_task(name: str, tasks_file: str | Path | None = None) -> Task:
    return get_tasks([name], tasks_file)[0]
