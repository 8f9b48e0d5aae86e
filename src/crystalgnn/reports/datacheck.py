"""What a model will and will not see in a dataset, checked before training (``crystalgnn check``).

Gong et al. show that a mean-pooled GNN cannot count the atoms of a cell nor see lattice lengths
beyond its cutoff, so an extensive (per-cell) target is out of its reach unless it is normalized
(``--per-atom``) or pooled by sum (``--pooling sum``). This module measures, per target:

* the distribution (quantiles, skew) and robust outliers: ``|y − median| > 5 · 1.4826 · MAD``;
* heavy tails of a positive target: skew > 2, or one decade or more between the 5th and 95th
  percentiles, so that ``--transform log10`` is advised (as the papers do for elastic moduli);
* whether the target scales with cell size. The test is the one that separates "extensive" from
  "correlated with size": crystals with the same reduced formula but cells of different numbers
  of atoms ``n`` (polymorphs, supercells) give a scaling exponent ``log(y₂/y₁) / log(n₂/n₁)``
  per pair (same sign, both at least 1 % of the 95th percentile of ``|y|``, so that numerical
  zeros such as a non-magnetic cell's 1e-5 μB do not count); the median over pairs is ≈ 1 for an extensive target
  and ≈ 0 for an intensive one. Median ≥ 0.7 reads as extensive, ≤ 0.3 as intensive, between as
  undecided. With fewer than :data:`MIN_PAIRS` pairs the Spearman correlation ρ of the target
  with the atoms per cell decides instead (ρ ≥ 0.7 extensive, |ρ| ≤ 0.3 intensive, else
  undecided), and the report says so; when every cell has the same number of atoms nothing can
  be compared, and it is undecided with that reason. Pearson and Spearman correlations
  with the number of atoms and with the cell volume are reported beside it;
* duplicates: the same structure (pymatgen ``StructureMatcher``, candidates bucketed by reduced
  formula and volume per atom within 10 %) under different labels (difference > 10 % of the
  target's standard deviation);
* the share of crystals with a lattice vector longer than the graph cutoff: an atom there cannot
  see its own periodic image along that vector, so lengths beyond the cutoff are invisible.

Nothing is changed: the report gives advice, and the user decides which flag to pass.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from crystalgnn.data.prepared import PreparedData

#: Same-formula pairs needed before the scaling exponent decides.
MIN_PAIRS = 10
EXTENSIVE_EXPONENT = 0.7
INTENSIVE_EXPONENT = 0.3
#: The fallback with too few pairs: Spearman correlation of the target with atoms per cell.
EXTENSIVE_CORRELATION = 0.7
INTENSIVE_CORRELATION = 0.3
#: Robust z-score above which a value is listed as an outlier.
OUTLIER_Z = 5.0
#: Structure comparisons the duplicate search makes at most (StructureMatcher is slow).
MAX_COMPARISONS = 20_000


@dataclass
class TargetCheck:
    """The checks of one target column (values in the units they were read in)."""

    name: str
    n: int
    mean: float
    std: float
    quantiles: dict[str, float]
    skew: float
    positive: bool
    heavy_tailed: bool
    outliers: list[tuple[str, float]]
    n_outliers: int
    corr_natoms: dict[str, float]
    corr_volume: dict[str, float]
    scaling_pairs: int
    scaling_exponent: float | None
    scaling: str  # "extensive", "intensive" or "undecided"
    scaling_reason: str
    conflicting_duplicates: list[tuple[str, str, float, float]] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)


@dataclass
class DataCheck:
    """The whole report: per-target checks and the dataset-level ones."""

    n_items: int
    n_problems: int
    transform: str
    cutoff: float
    beyond_cutoff_share: float
    duplicate_pairs: int
    duplicate_comparisons: int
    duplicates_checked: bool
    targets: list[TargetCheck]

    def flagged_extensive(self) -> list[str]:
        return [t.name for t in self.targets if t.scaling == "extensive"]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self, short: bool = False) -> str:
        """The report as text; ``short``: the few lines ``train`` prints before it starts."""
        lines = [f"data check: {self.n_items} usable crystal(s)" + (f", {self.n_problems} unusable (listed in skipped.csv)" if self.n_problems else "")]
        for t in self.targets:
            q = t.quantiles
            lines.append(f"  {t.name}: median {q['50%']:.4g}, 5–95 % {q['5%']:.4g} … {q['95%']:.4g}, skew {t.skew:.2f}, "
                         f"{t.n_outliers} outlier(s)")
            exponent = "n/a" if t.scaling_exponent is None else f"{t.scaling_exponent:.2f}"
            lines.append(f"    scales with cell size: {t.scaling} (same-formula exponent {exponent} over {t.scaling_pairs} pair(s); "
                         f"{t.scaling_reason}); Spearman with atoms {t.corr_natoms['spearman']:.2f}, with volume {t.corr_volume['spearman']:.2f}")
            if not short:
                for item, value in t.outliers:
                    lines.append(f"    outlier {item}: {value:.6g}")
                for a, b, ya, yb in t.conflicting_duplicates[:10]:
                    lines.append(f"    same structure, different label: {a} ({ya:.6g}) and {b} ({yb:.6g})")
            lines.extend(f"    advice: {a}" for a in t.advice)
        lines.append(f"  {100 * self.beyond_cutoff_share:.1f} % of the crystals have a lattice vector longer than the {self.cutoff:g} Å cutoff "
                     "(an atom there cannot see its own image along it)")
        if self.duplicates_checked:
            lines.append(f"  duplicates: {self.duplicate_pairs} pair(s) of identical structures among {self.duplicate_comparisons} comparisons")
        elif not short:
            lines.append("  duplicates: not checked")
        return "\n".join(lines)


def _correlations(y: np.ndarray, x: np.ndarray) -> dict[str, float]:
    if len(y) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": float("nan"), "spearman": float("nan")}
    return {"pearson": float(np.corrcoef(y, x)[0, 1]), "spearman": float(stats.spearmanr(y, x).statistic)}


def formula_keys(store: Any) -> list[str]:
    """Reduced formula of every graph of ``store``, as sorted ``Z:count`` divided by their gcd."""
    keys = []
    z, ptr = store.atomic_numbers, store.node_ptr
    for g in range(len(store)):
        elements, counts = np.unique(z[ptr[g] : ptr[g + 1]], return_counts=True)
        divisor = int(np.gcd.reduce(counts)) if len(counts) else 1
        keys.append(" ".join(f"{e}:{c // divisor}" for e, c in zip(elements.tolist(), counts.tolist())))
    return keys


def scaling_exponent(y: np.ndarray, natoms: np.ndarray, formulas: list[str]) -> tuple[int, float | None, str, str]:
    """(pairs, median exponent, verdict, reason) of the same-formula test (module docstring).

    Within each reduced formula every cell is paired with one of the next larger cell size (the
    one at the same place in that size's list), so every formula adds at most one pair per cell."""
    if len(np.unique(natoms)) == 1:
        return 0, None, "undecided", f"every cell has {int(natoms[0])} atoms, so size cannot be compared: decide from what the target is"
    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(formulas):
        groups[key].append(i)
    # Values near zero on the target's own scale (non-magnetic cells' 1e-5 μB, metals' zero gap) are
    # numerical noise whose ratios say nothing about size: pairs with one below 1 % of the 95th
    # percentile of |y| are left out.
    scale = float(np.percentile(np.abs(y), 95)) or 1.0
    exponents = []
    for rows in groups.values():
        if len(rows) < 2:
            continue
        rows = np.array(sorted(rows, key=lambda r: natoms[r]))
        sizes = natoms[rows]
        for j, a in enumerate(rows):
            # the partner: the cell at the same place within the next larger size of this formula
            start, offset = np.searchsorted(sizes, sizes[j], side="right"), j - np.searchsorted(sizes, sizes[j], side="left")
            if start == len(rows):
                continue
            block = np.searchsorted(sizes, sizes[start], side="right") - start
            b = rows[start + offset % block]
            ya, yb = y[a], y[b]
            if ya * yb <= 0 or min(abs(ya), abs(yb)) < 1e-2 * scale:
                continue
            exponents.append(np.log(yb / ya) / np.log(natoms[b] / natoms[a]))
    if len(exponents) < MIN_PAIRS:  # too few polymorphs: the rank correlation with size decides, or nothing
        median = float(np.median(exponents)) if exponents else None
        rho = float(stats.spearmanr(y, natoms).statistic) if np.ptp(y) > 0 else 0.0
        few = f"fewer than {MIN_PAIRS} same-formula pairs, so judged by the Spearman correlation with atoms per cell, {rho:.2f}"
        if rho >= EXTENSIVE_CORRELATION:
            return len(exponents), median, "extensive", few
        if abs(rho) <= INTENSIVE_CORRELATION:
            return len(exponents), median, "intensive", few
        return len(exponents), median, "undecided", few
    median = float(np.median(exponents))
    if median >= EXTENSIVE_EXPONENT:
        return len(exponents), median, "extensive", "the target grows with the number of atoms of the same compound"
    if median <= INTENSIVE_EXPONENT:
        return len(exponents), median, "intensive", "the target does not grow with the number of atoms of the same compound"
    return len(exponents), median, "undecided", "the exponent lies between intensive (0) and extensive (1)"


def find_duplicates(prepared: PreparedData, formulas: list[str], volume_per_atom: np.ndarray,
                    max_comparisons: int = MAX_COMPARISONS) -> tuple[list[tuple[int, int]], int]:
    """Pairs of identical structures (pymatgen ``StructureMatcher`` with its defaults) and the
    number of comparisons made; candidates share a reduced formula and a volume per atom within
    10 %, and the search stops after ``max_comparisons``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Lattice, Structure

    store = prepared.store
    cache: dict[int, Structure] = {}

    def structure(g: int) -> Structure:
        if g not in cache:
            lo, hi = store.node_ptr[g], store.node_ptr[g + 1]
            cache[g] = Structure(Lattice(store.lattices[g].astype(float)), store.atomic_numbers[lo:hi].tolist(),
                                 store.positions[lo:hi].astype(float), coords_are_cartesian=True)
        return cache[g]

    groups: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(formulas):
        groups[key].append(i)
    matcher = StructureMatcher()
    pairs: list[tuple[int, int]] = []
    comparisons = 0
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: volume_per_atom[r])
        for k, a in enumerate(rows):
            for b in rows[k + 1 :]:
                if volume_per_atom[b] > 1.1 * volume_per_atom[a]:
                    break
                if comparisons >= max_comparisons:
                    return pairs, comparisons
                comparisons += 1
                if matcher.fit(structure(a), structure(b)):
                    pairs.append((a, b))
    return pairs, comparisons


def check_prepared(prepared: PreparedData, cutoff: float, transform: str = "none", duplicates: bool = True,
                   normalized: bool = False, max_comparisons: int = MAX_COMPARISONS) -> DataCheck:
    """The report for the usable items of ``prepared``. ``normalized``: the run already learns
    per atom or pools by sum, so no size advice is given; ``duplicates=False`` skips the
    (slow) structure matching."""
    store = prepared.store
    natoms = store.num_atoms.astype(float)
    volume = np.abs(np.linalg.det(store.lattices.astype(float)))
    lengths = np.linalg.norm(store.lattices.astype(float), axis=2)
    formulas = formula_keys(store)
    pairs, comparisons = find_duplicates(prepared, formulas, volume / natoms, max_comparisons) if duplicates else ([], 0)
    checks = []
    for k, name in enumerate(prepared.target_names):
        y = prepared.targets[:, k].astype(float)
        finite = np.isfinite(y)
        yf = y[finite]
        q = np.percentile(yf, [0, 5, 25, 50, 75, 95, 100])
        quantiles = dict(zip(["min", "5%", "25%", "50%", "75%", "95%", "max"], map(float, q)))
        mad = 1.4826 * float(np.median(np.abs(yf - q[3])))
        z = np.abs(y - q[3]) / mad if mad > 0 else np.zeros_like(y)
        outlier_rows = [int(i) for i in np.argsort(-np.nan_to_num(z)) if finite[i] and z[i] > OUTLIER_Z]
        skew = float(stats.skew(yf)) if len(yf) > 2 and np.ptp(yf) > 0 else 0.0
        positive = bool(np.all(yf > 0))
        decades = float(np.log10(q[5] / q[1])) if positive else 0.0
        heavy = positive and transform == "none" and (skew > 2 or decades >= 1)
        if transform == "none":
            n_pairs, exponent, verdict, reason = scaling_exponent(yf, natoms[finite], [f for f, ok in zip(formulas, finite) if ok])
        else:  # the exponent is defined on the values themselves: run `crystalgnn check` without the transform
            n_pairs, exponent, verdict, reason = 0, None, "undecided", f"not judged on {transform} values"
        std = float(np.std(yf))
        conflicts = [(prepared.ids[a], prepared.ids[b], float(y[a]), float(y[b])) for a, b in pairs
                     if abs(y[a] - y[b]) > 0.1 * std]
        advice = []
        if verdict == "extensive" and not normalized:
            advice.append("extensive target: a mean-pooled model cannot count atoms; train with --per-atom (learn target / atoms) "
                          "or --pooling sum")
        if heavy:
            advice.append(f"heavy-tailed positive target (skew {skew:.1f}, {decades:.1f} decades between 5 % and 95 %): "
                          "try --transform log10")
        if outlier_rows:
            advice.append(f"{len(outlier_rows)} value(s) lie more than {OUTLIER_Z:g} robust standard deviations from the median: "
                          "check them (units, failed calculations)")
        if conflicts:
            advice.append(f"{len(conflicts)} pair(s) of identical structures carry different labels: a model cannot fit both")
        checks.append(TargetCheck(
            name=name, n=int(finite.sum()), mean=float(np.mean(yf)), std=std, quantiles=quantiles, skew=skew, positive=positive,
            heavy_tailed=heavy, outliers=[(prepared.ids[i], float(y[i])) for i in outlier_rows[:10]], n_outliers=len(outlier_rows),
            corr_natoms=_correlations(yf, natoms[finite]), corr_volume=_correlations(yf, volume[finite]),
            scaling_pairs=n_pairs, scaling_exponent=exponent, scaling=verdict, scaling_reason=reason,
            conflicting_duplicates=conflicts, advice=advice))
    return DataCheck(
        n_items=len(prepared), n_problems=len(prepared.problems), transform=transform, cutoff=float(cutoff),
        beyond_cutoff_share=float(np.mean(lengths.max(axis=1) > cutoff)) if len(prepared) else 0.0,
        duplicate_pairs=len(pairs), duplicate_comparisons=comparisons, duplicates_checked=duplicates, targets=checks)


def write_check(report: DataCheck, prepared: PreparedData, out: str | Path) -> Path:
    """``check.txt``, ``check.json`` and ``check.png`` (per target: histogram, and the target
    against the number of atoms) in ``out``."""
    from crystalgnn.reports.plots import data_check_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.txt").write_text(report.summary() + "\n")
    (out / "check.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    data_check_plot(prepared.targets, prepared.target_names, prepared.store.num_atoms, out / "check.png",
                    verdicts=[t.scaling for t in report.targets])
    return out


def check_dataset(data: Any, targets: tuple[str | int, ...] = (), cutoff: float | None = None, cache_dir: Any = None,
                  workers: int = 0, progress: bool = True, duplicates: bool = True,
                  max_comparisons: int = MAX_COMPARISONS) -> tuple[DataCheck, PreparedData]:
    """Read ``data`` as ``train`` does (values untransformed), build or load its graphs with
    CGCNN's reference graph settings (``cutoff`` overrides the radius), and check it.
    ``cache_dir``: the graph cache as ``train`` takes it (``"default"``, a folder, or None)."""
    import dataclasses

    from crystalgnn.config import defaults_for
    from crystalgnn.data.prepared import prepare
    from crystalgnn.io.resolve import resolve_dataset
    from crystalgnn.paths import resolve_cache_dir

    cfg = defaults_for("cgcnn")
    graph = cfg.graph if cutoff is None else dataclasses.replace(cfg.graph, cutoff=cutoff)
    dataset = resolve_dataset(data, targets, "none")
    prepared = prepare(dataset, graph, cfg.features, resolve_cache_dir(cache_dir), workers, progress)
    if len(prepared) == 0:
        raise ValueError(f"no usable crystal in {data}: {len(prepared.problems)} item(s) could not be read; see the list above")
    if prepared.targets.shape[1] == 0:
        raise ValueError("no target column selected; pass --target NAME")
    return check_prepared(prepared, graph.cutoff, duplicates=duplicates, max_comparisons=max_comparisons), prepared
