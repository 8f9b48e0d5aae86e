r"""Learnability probe (Gong et al., Fig. 2): can a model learn the human-designed descriptors?

The model is trained to predict the structural descriptors of :mod:`crystalgnn.descriptors`
from the structure (80/10/10 split, as the paper's Methods), and the test :math:`R^2` per
descriptor says how much of that knowledge the model's representation can express. Local
descriptors (statistics of each atom's environment) are learned well by CGCNN-like models; global
ones (lattice lengths and angles, structural complexity per cell) are not, because mean pooling of
local environments cannot see periodicity beyond the receptive field.

What is run:

* **the model** on every numeric descriptor (all but the crystal system; by default one model with
  a standardized output per descriptor — ``joint=False`` trains one model per descriptor, as the
  paper, at 28× the cost);
* **crystal-system classification** (7 classes, Fig. 2c) with the same model type;
* **a composition-only baseline** (Fig. 2's ROOST role): a random forest on Magpie composition
  statistics, same items and split, for every descriptor and the crystal system.

The paper's low-symmetry-biased subset is optional (default on): each structure is removed with
probability :math:`sg / (sg + 15)` (sg: space group number; 15 = C2/c, the last monoclinic group),
seeded. ``max_structures`` then draws a seeded random subset (the acceptance run uses 10,000).
Structures whose descriptors could not all be computed are left out and listed in
``probe_skipped.csv``.

Outputs in ``out_dir``: ``probe.csv`` (descriptor, group, model R²/MAE, composition R²/MAE),
``probe.json`` (settings, crystal-system accuracies, counts), ``probe_r2.png`` (Fig. 2a–c style
bar charts), and the run directories ``model/``, ``crystal_system/``, ``composition/``,
``composition_crystal_system/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalgnn.config import RunConfig
from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import Problem, write_problems

log = logging.getLogger("crystalgnn")

#: Space group number of C2/c, the paper's constant in the removal probability sg / (sg + 15).
LOW_SYMMETRY_CONSTANT = 15.0


@dataclass(frozen=True)
class ProbeSettings:
    """Settings of a probe run (saved as ``probe.json``)."""

    descriptors: tuple[str, ...] = ()  # empty: every descriptor but the crystal system
    low_symmetry: bool = True
    max_structures: int = 0  # 0: all (after the low-symmetry subset)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 123
    joint: bool = True
    crystal_system: bool = True
    composition_baseline: bool = True
    trees: int = 300


def low_symmetry_mask(space_groups: np.ndarray, seed: int, constant: float = LOW_SYMMETRY_CONSTANT) -> np.ndarray:
    """True for structures kept: each is removed with probability sg / (sg + constant)."""
    sg = np.asarray(space_groups, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draw = rng.random(len(sg))
    return np.isfinite(sg) & (draw >= sg / (sg + constant))


def _space_group(source) -> float:
    import warnings

    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = source.load_or_reason()
    if isinstance(structure, str):
        return float("nan")  # reported with the reason by the caller
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spglib's deprecation notice, once per structure
            return float(SpacegroupAnalyzer(structure).get_space_group_number())  # matminer's settings
    except Exception:  # noqa: BLE001 - spglib failing on one structure leaves it out, reported
        return float("nan")


def space_group_numbers(dataset: CrystalDataset, workers: int = 0, progress: bool = True) -> np.ndarray:
    """Space group number of every structure (spglib through pymatgen, symprec 0.01 as the bank)."""
    from crystalgnn.parallel import map_items

    groups = map_items(_space_group, list(dataset.sources), workers=workers, chunk_size=64, desc="space groups", progress=progress)
    return np.asarray(groups, dtype=np.float64)


def load_structures(data: Any, cfg: RunConfig) -> CrystalDataset:
    """Structures only (targets are the descriptors): a path, a chains spec or a dataset."""
    if isinstance(data, CrystalDataset):
        return data
    from crystalgnn.io.resolve import resolve_dataset

    if isinstance(data, str) and data.startswith("chains"):
        return resolve_dataset(data, cfg.data.targets, cfg.data.transform)
    from crystalgnn.io import load_dataset

    dataset = load_dataset(data, targets=[])
    dataset.meta.setdefault("source", str(data))
    return dataset


def probe_dataset(
    dataset: CrystalDataset,
    settings: ProbeSettings,
    cache_dir: Any = "default",
    workers: int = 0,
    progress: bool = True,
) -> tuple[CrystalDataset, np.ndarray, list[Problem]]:
    """The dataset the probe trains on: targets = descriptors (all rows finite), plus the
    crystal-system label of each kept row and the problems of the rows left out."""
    from crystalgnn.descriptors import DESCRIPTOR_NAMES, compute_descriptors

    names = settings.descriptors or tuple(n for n in DESCRIPTOR_NAMES if n != "crys_sys")
    keep = np.ones(len(dataset), bool)
    problems: list[Problem] = []
    if settings.low_symmetry:
        # Space groups first (spglib only, far cheaper than the whole bank), then the bank for
        # the kept structures alone.
        groups = space_group_numbers(dataset, workers, progress)
        for i in np.flatnonzero(~np.isfinite(groups)):
            problems.append(Problem(dataset.ids[i], "left out of the probe: the structure could not be read or its space group found", stage="probe"))
        keep &= low_symmetry_mask(groups, settings.seed)
        log.warning("low-symmetry subset: kept %d of %d structures", int(keep.sum()), len(keep))
    if settings.max_structures and keep.sum() > settings.max_structures:
        chosen = np.random.default_rng(settings.seed + 1).choice(np.flatnonzero(keep), settings.max_structures, replace=False)
        keep = np.zeros(len(dataset), bool)
        keep[chosen] = True
    dataset = dataset.subset(np.flatnonzero(keep))
    table = compute_descriptors(dataset.ids, dataset.sources, cache_dir=cache_dir, workers=workers, progress=progress)
    column = {n: k for k, n in enumerate(table.names)}
    values = table.values[:, [column[n] for n in names]]
    systems = table.values[:, column["crys_sys"]]
    complete = np.isfinite(values).all(1) & np.isfinite(systems)
    reasons: dict[str, list[str]] = {}
    for p in table.problems:
        reasons.setdefault(p.id, []).append(p.reason)
    for i in np.flatnonzero(~complete):
        missing = [n for n, v in zip(names, values[i]) if not np.isfinite(v)] or ["crys_sys"]
        why = "; ".join(reasons.get(dataset.ids[i], [])) or "not computed"
        problems.append(Problem(dataset.ids[i], f"left out of the probe: {', '.join(missing)} missing ({why})", stage="probe"))
    rows = np.flatnonzero(complete)
    probed = CrystalDataset(
        ids=[dataset.ids[i] for i in rows],
        sources=[dataset.sources[i] for i in rows],
        targets=values[rows],
        target_names=list(names),
        problems=[],
        meta={**dataset.meta, "source": str(dataset.meta.get("source", ""))},
    )
    return probed, systems[rows].astype(int), problems


def run_probe(
    data: Any,
    out_dir: str | Path,
    settings: ProbeSettings = ProbeSettings(),
    base_config: RunConfig | None = None,
    cache_dir: Any = "default",
    workers: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the probe (see module docstring) and return the per-descriptor table."""
    from crystalgnn.baselines import ForestConfig, train_forest
    from crystalgnn.descriptors import (
        CRYSTAL_SYSTEMS,
        GLOBAL_DESCRIPTORS,
        LOCAL_DESCRIPTORS,
    )
    from crystalgnn.paths import resolve_cache_dir
    from crystalgnn.training.run import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = resolve_cache_dir(cache_dir)
    base = base_config or RunConfig()
    base = dataclasses.replace(
        base,
        # the targets are the descriptors, learned as they are (a base config's transform is not theirs)
        data=dataclasses.replace(base.data, targets=(), on_error="skip", per_atom=False, transform="none"),
        model=dataclasses.replace(base.model, task="regression", descriptors=()),
        train=dataclasses.replace(base.train, split_fractions=settings.split_fractions, seed=settings.seed),
    )
    dataset = load_structures(data, base)
    probed, systems, problems = probe_dataset(dataset, settings, cache, workers, progress)
    if problems:
        write_problems(problems, out / "probe_skipped.csv")
    if len(probed) < 10:
        raise ValueError(f"only {len(probed)} structures left for the probe; need at least 10")
    names = list(probed.target_names)
    model_name = base.model.name
    rows: dict[str, dict[str, Any]] = {n: {"descriptor": n, "group": "local" if n in LOCAL_DESCRIPTORS else "global" if n in GLOBAL_DESCRIPTORS else "other"} for n in names}

    if settings.joint:
        result = train(probed, out / "model", base, cache_dir=cache, workers=workers, progress=progress)
        for n in names:
            rows[n][f"r2_{model_name}"] = result.metrics["test"][n]["r2"]
            rows[n][f"mae_{model_name}"] = result.metrics["test"][n]["mae"]
    else:
        for k, n in enumerate(names):
            single = CrystalDataset(probed.ids, probed.sources, probed.targets[:, [k]], [n], [], dict(probed.meta))
            result = train(single, out / "models" / n, base, cache_dir=cache, workers=workers, progress=progress)
            rows[n][f"r2_{model_name}"] = result.metrics["test"][n]["r2"]
            rows[n][f"mae_{model_name}"] = result.metrics["test"][n]["mae"]

    summary: dict[str, Any] = {"settings": dataclasses.asdict(settings), "model": model_name, "n_structures": len(probed), "n_left_out": len(problems)}
    classes = CrystalDataset(probed.ids, probed.sources, systems[:, None].astype(float), ["crys_sys"], [], dict(probed.meta))
    class_cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, task="classification", n_classes=len(CRYSTAL_SYSTEMS)))
    if settings.crystal_system:
        result = train(classes, out / "crystal_system", class_cfg, cache_dir=cache, workers=workers, progress=progress)
        summary[f"crystal_system_accuracy_{model_name}"] = result.metrics["test"]["crys_sys"]["accuracy"]

    if settings.composition_baseline:
        forest = ForestConfig(features=("composition",), n_estimators=settings.trees)
        result = train_forest(probed, out / "composition", base, forest, cache_dir=cache, workers=workers, progress=progress)
        for n in names:
            rows[n]["r2_composition"] = result.metrics["test"][n]["r2"]
            rows[n]["mae_composition"] = result.metrics["test"][n]["mae"]
        if settings.crystal_system:
            result = train_forest(classes, out / "composition_crystal_system", class_cfg, forest, cache_dir=cache, workers=workers, progress=progress)
            summary["crystal_system_accuracy_composition"] = result.metrics["test"]["crys_sys"]["accuracy"]

    table = pd.DataFrame(list(rows.values()))
    table.to_csv(out / "probe.csv", index=False)
    (out / "probe.json").write_text(json.dumps(summary, indent=2) + "\n")
    probe_plot(table, summary, out / "probe_r2.png")
    return table


def probe_plot(table: pd.DataFrame, summary: dict[str, Any], path: str | Path) -> None:
    """Fig. 2a–c: R² per descriptor (local, global) for each model, and crystal-system accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in table.columns if c.startswith("r2_")]
    accuracies = {k.removeprefix("crystal_system_accuracy_"): v for k, v in summary.items() if k.startswith("crystal_system_accuracy_")}
    groups = [g for g in ("local", "global", "other") if (table["group"] == g).any()]
    widths = [max(int((table["group"] == g).sum()), 2) for g in groups] + ([2] if accuracies else [])
    fig, axes = plt.subplots(1, len(widths), figsize=(0.45 * sum(widths) + 3, 4.5), dpi=120, gridspec_kw={"width_ratios": widths}, squeeze=False)
    colors = ["#3182bd", "#e6550d", "#31a354", "#756bb1"]
    bar = 0.8 / max(len(columns), 1)
    for ax, group in zip(axes[0], groups):
        part = table[table["group"] == group]
        x = np.arange(len(part))
        for k, column in enumerate(columns):
            ax.bar(x + (k - (len(columns) - 1) / 2) * bar, part[column].clip(lower=-0.2), bar, label=column.removeprefix("r2_"), color=colors[k % 4])
        ax.set_xticks(x, part["descriptor"], rotation=75, ha="right", fontsize=7)
        ax.axhline(0.8, color="grey", ls=":", lw=1)
        ax.set(ylim=(-0.2, 1.0), title=f"{group} descriptors", ylabel="test R²")
    axes[0][0].legend(fontsize=7, loc="lower left")
    if accuracies:
        ax = axes[0][-1]
        ax.bar(range(len(accuracies)), list(accuracies.values()), color=colors[: len(accuracies)])
        ax.set_xticks(range(len(accuracies)), list(accuracies), rotation=45, ha="right", fontsize=7)
        ax.set(ylim=(0, 1), title="crystal system", ylabel="test accuracy")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
