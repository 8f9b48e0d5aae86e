"""The periodicity study of Gong et al. (Fig. 3e–h and Fig. S3): can a GNN learn the length ``a``
of the periodic lattice vector of quasi-1D carbon chains?

Four generated datasets (:mod:`crystalgnn.datasets.chains`, SI Section 9), 1,400 chains each:

=============  =====================================================================
dataset        chains
=============  =====================================================================
short-single   2–8 atoms, single chains (periodicity shorter than the receptive field)
short-mixed    as short-single, every other chain a double chain (twice the atoms, same ``a``)
long-single    37–50 atoms, single chains (periodicity longer than the receptive field)
long-mixed     as long-single, half of them double chains
=============  =====================================================================

are learned by four model variants (:data:`VARIANTS`): the CGCNN defaults, and the three
changes of Fig. 3g/3h that enlarge the receptive field or change the pooling. Every dataset ×
variant cell is one ordinary training run (80/10/10 split, as in the paper's Methods).

Sum pooling is the paper's Eq. 13, Output = Σ_i FCN(a_i): crystalgnn's ``pooling="sum"`` runs
the head on each atom and adds the outputs (exactly size-extensive). The extra variant
``site-sum`` (not in the default study) reaches the same form through site pooling on per-atom
targets; it differs only in how the target is standardized (per atom instead of per cell).

What the paper reports (and :func:`paper_findings` checks)
----------------------------------------------------------
* Fig. 3e: default CGCNN (mean pooling) predicts ``a`` of **short** chains well, **R² > 0.8**.
* Fig. 3f: on **long** chains default CGCNN is **clearly worse** (the periodicity is longer than
  the receptive field, Eq. 12: range ∝ neighbours × convolutions).
* Fig. 3g: **more neighbours help short chains** (higher local expressive power); for long chains
  more neighbours and more convolutions both help; on short chains more convolutions hurt
  (over-smoothing / over-squashing).
* Fig. 3h: **sum pooling beats mean pooling**, slightly on short chains and by far on **long
  single chains** (each atom adds its local contribution to ``a``; ``a`` ≈ 1.5 Å × atoms).
* Fig. S3: on datasets **mixed with double chains** (same ``a`` as a single chain, twice the
  atoms) the **gain of sum pooling shrinks**: the atom count no longer gives ``a``.

Run directory layout (``run_periodicity(out_dir, ...)``)::

    study.json                the study settings
    periodicity.log           one line per cell (trained, resumed, seconds, R²)
    <dataset>/<variant>/      an ordinary crystalgnn run directory per cell (config.json,
                              metrics.json, predictions_test.csv, parity.png, ...)
    periodicity.csv           one row per cell: settings and test metrics
    periodicity.md            markdown table of test R², datasets × variants
    parity_grid.png           predicted vs true a, one panel per cell (Fig. 3e–f)
    r2_bars.png               test R² by dataset and variant (Fig. 3g–h, S3)

A cell whose ``metrics.json`` exists is not trained again, so an interrupted study resumes where
it stopped (a finished cell trained with other settings is an error, not silently reused).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalgnn import registry
from crystalgnn.config import RunConfig, defaults_for

log = logging.getLogger("crystalgnn.periodicity")

__all__ = [
    "DATASETS",
    "VARIANTS",
    "Finding",
    "PeriodicityStudy",
    "Variant",
    "cell_config",
    "collect_results",
    "dataset_spec",
    "markdown_table",
    "paper_findings",
    "run_periodicity",
]

#: Dataset name → (chain kind, mix) of :func:`crystalgnn.datasets.generate_chains`.
DATASETS: dict[str, tuple[str, str]] = {
    "short-single": ("short", "single"),
    "short-mixed": ("short", "mixed"),
    "long-single": ("long", "single"),
    "long-mixed": ("long", "mixed"),
}


@dataclass(frozen=True)
class Variant:
    """Changes of one model variant relative to the base configuration.

    ``data``, ``graph`` and ``model`` are keyword overrides of the matching sections of
    :class:`~crystalgnn.config.RunConfig` (``model``: the settings every model shares); ``arch``
    maps a model name to overrides of that model's own settings (a model not named keeps its
    own). ``models``: the models the variant applies to (None: all).
    """

    description: str
    paper: str
    data: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    arch: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: tuple[str, ...] | None = None

    def apply(self, cfg: RunConfig) -> RunConfig:
        arch = dataclasses.replace(cfg.model.arch, **self.arch.get(cfg.model.name, {}))
        return dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, **self.data),
            graph=dataclasses.replace(cfg.graph, **self.graph),
            model=dataclasses.replace(cfg.model, arch=arch, **self.model),
        )


#: The model variants of Gong et al. Fig. 3g/3h (CGCNN defaults: radius graph of the 12 nearest
#: neighbours within 8 Å, 3 gated convolutions, mean pooling).
VARIANTS: dict[str, Variant] = {
    "default": Variant(
        "the model's defaults (CGCNN: 12 neighbours within 8 Å, 3 convolutions, mean pooling; "
        "ALIGNN: kNN-12 graph and line graph, 4 + 4 layers, mean pooling)",
        "Fig. 3e/3f (and the reference bars of Fig. 3g/3h)",
    ),
    "conv8": Variant(
        "8 convolutions instead of 3 (a deeper receptive field)",
        "Fig. 3g 'more convolutions'; the text says both '+133 %' and 'to 8' (ALIGNN's depth); we use 8",
        arch={"cgcnn": {"n_conv": 8}},
        models=("cgcnn",),
    ),
    "nbr18": Variant(
        "18 neighbours within 12 Å instead of 12 within 8 Å (+50 %); distance Gaussians up to 12 Å",
        "Fig. 3g 'more neighbours' (50 % higher cut-off radius and maximum number of neighbours); "
        "the Gaussian expansion follows the radius as in the reference CGCNN (dmax = radius)",
        graph={"cutoff": 12.0, "max_neighbors": 18},
        arch={"cgcnn": {"gaussian_stop": 12.0}},
    ),
    "sum": Variant(
        "sum pooling instead of mean pooling: sum_i FCN(a_i), Eq. 13 (size-extensive)",
        "Fig. 3h and Fig. S3 (crystalgnn's pooling='sum' runs the head per atom and sums the outputs)",
        model={"pooling": "sum"},
    ),
    # Not in the default study: Eq. 13 through site pooling on per-atom targets. pooling="site"
    # averages per-site outputs, and per-atom targets (y / N, per-atom standardization) multiply
    # the average back by N: ŷ = Σ_i (σ FCN(a_i) + μ) — "sum" with per-atom standardization.
    "site-sum": Variant(
        "Eq. 13 through site pooling on per-atom targets: sum_i (σ FCN(a_i) + μ)",
        "Eq. 13 (Output = Σ_i FCN(a_i^n*)); an extra variant, not one of the paper's bars",
        data={"per_atom": True},
        model={"pooling": "site"},
    ),
}


@dataclass(frozen=True)
class PeriodicityStudy:
    """Settings of the study. The split is the paper's (80/10/10); a model is trained per
    dataset × variant cell with ``epochs`` epochs of batch ``batch_size`` (one-cycle schedule).

    ``seed`` seeds the split and the training, ``data_seed`` the chain generator (every dataset
    uses it; a smaller ``n_structures`` gives a prefix of a larger dataset). ``model`` is the
    :class:`~crystalgnn.config.ModelConfig` name. ``threads``: torch CPU threads (0: all cores).
    """

    datasets: tuple[str, ...] = ("short-single", "short-mixed", "long-single", "long-mixed")
    variants: tuple[str, ...] = ("default", "conv8", "nbr18", "sum")
    n_structures: int = 1400
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    epochs: int = 150
    batch_size: int = 64
    seed: int = 123
    data_seed: int = 0
    model: str = "cgcnn"
    threads: int = 0

    def __post_init__(self) -> None:
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown:
            raise ValueError(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
        misfits = [v for v in self.variants if VARIANTS[v].models is not None and self.model not in VARIANTS[v].models]
        if misfits:
            fitting = [v for v, var in VARIANTS.items() if var.models is None or self.model in var.models]
            raise ValueError(f"variant(s) {', '.join(misfits)} change settings {self.model} does not have "
                             f"(only {', '.join(VARIANTS[misfits[0]].models or ())}); for {self.model} choose among {', '.join(fitting)}")
        if not self.datasets or not self.variants:
            raise ValueError("a study needs at least one dataset and one variant")
        if len(set(self.datasets)) != len(self.datasets) or len(set(self.variants)) != len(self.variants):
            raise ValueError("datasets and variants must not repeat")
        if self.n_structures < 10:
            raise ValueError(f"n_structures must be at least 10, got {self.n_structures}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        # Normalise lists given by a caller to tuples, so that the dataclass stays hashable.
        object.__setattr__(self, "datasets", tuple(self.datasets))
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "split_fractions", tuple(float(x) for x in self.split_fractions))

    @property
    def cells(self) -> list[tuple[str, str]]:
        return [(d, v) for d in self.datasets for v in self.variants]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dataset_spec(dataset: str, study: PeriodicityStudy) -> str:
    """The ``chains:...`` spec that :func:`crystalgnn.training.run.train` reads for ``dataset``."""
    kind, mix = DATASETS[dataset]
    return f"chains:{kind}:{mix}:seed={study.data_seed}:n={study.n_structures}"


def cell_config(variant: str, study: PeriodicityStudy, base_config: RunConfig | None = None) -> RunConfig:
    """The run configuration of one cell: ``base_config`` (default: the defaults of the study's model),
    the study's training settings (epochs, batch size, seed, split, threads, model name), then the
    variant's overrides."""
    base = base_config or defaults_for(study.model)
    if base.model.name != study.model:
        raise ValueError(f"the base configuration is a {base.model.name} run but the study trains {study.model}; "
                         f"start from defaults_for({study.model!r})")
    train = dataclasses.replace(
        base.train, epochs=study.epochs, batch_size=study.batch_size, seed=study.seed,
        split_fractions=study.split_fractions, split_file="", kfold=0, threads=study.threads,
    )
    return VARIANTS[variant].apply(dataclasses.replace(base, train=train))


def _comparable(cfg: RunConfig, source: str) -> dict[str, Any]:
    """The settings that decide a cell's result: everything but what ``train`` fills in from the
    data (source is checked against ``source``, the dataset spec) and the hardware settings."""
    d = dataclasses.asdict(cfg)
    d["data"].pop("targets", None)
    d["data"]["source"] = d["data"]["source"] or source
    d.pop("crystalgnn_version", None)
    d["model"].pop("n_targets", None)
    for key in ("threads", "num_workers", "accelerator", "devices", "num_nodes", "strategy"):
        d["train"].pop(key, None)
    return d


def _cell_dir(out_dir: Path, dataset: str, variant: str) -> Path:
    return out_dir / dataset / variant


class _Reporter:
    """Writes a line per event to ``periodicity.log``, the logger and (optionally) stderr."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        log.info(message)
        with self.path.open("a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {message}\n")
        if self.echo:
            print(message, file=sys.stderr, flush=True)


def run_periodicity(
    out_dir: str | Path,
    study: PeriodicityStudy | None = None,
    cache_dir: str | Path | None = "default",
    progress: bool = True,
    base_config: RunConfig | None = None,
    echo: bool | None = None,
) -> pd.DataFrame:
    """Train every dataset × variant cell of ``study`` and write the tables and figures.

    Cells go to ``out_dir/<dataset>/<variant>/``; a cell whose ``metrics.json`` exists is skipped
    (resume), provided its ``config.json`` has the settings this study would use (otherwise a
    ``ValueError`` asks for another ``out_dir``). ``progress``: Lightning progress bars; ``echo``
    (default: ``progress``): one line per cell on stderr (always in ``periodicity.log``).
    ``base_config``: settings other than the study's (learning rate, widths, ...); the study and
    the variant override it. Returns the table of :func:`collect_results` (also
    ``periodicity.csv``).
    """
    from crystalgnn.training.run import train

    study = study or PeriodicityStudy()
    registry.get(study.model)  # an unknown model fails here, naming the registered ones
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = _Reporter(out_dir / "periodicity.log", progress if echo is None else echo)
    (out_dir / "study.json").write_text(json.dumps(study.to_dict(), indent=2) + "\n")

    configs = {v: cell_config(v, study, base_config) for v in study.variants}
    _check_model(next(iter(configs.values())))  # an unknown --model fails now, not after graph building
    cells = study.cells
    say(f"periodicity study: {len(study.datasets)} datasets x {len(study.variants)} variants = {len(cells)} cells, "
        f"{study.n_structures} chains each, {study.epochs} epochs, model {study.model}, out {out_dir}")
    for k, (dataset, variant) in enumerate(cells, 1):
        cell = _cell_dir(out_dir, dataset, variant)
        cfg = configs[variant]
        tag = f"[{k}/{len(cells)}] {dataset}/{variant}"
        if (cell / "metrics.json").exists():
            saved = RunConfig.load(cell / "config.json")
            spec = dataset_spec(dataset, study)
            if _comparable(saved, "?") != _comparable(cfg, spec):
                raise ValueError(
                    f"{cell} holds a finished run with other settings than this study's (data {saved.data.source!r} vs "
                    f"{spec!r}, epochs {saved.train.epochs} vs {cfg.train.epochs}, ...); use another output folder or delete that cell"
                )
            say(f"{tag}: already done (metrics.json exists), skipped")
            continue
        say(f"{tag}: training ({VARIANTS[variant].description}) ...")
        start = time.perf_counter()
        result = train(dataset_spec(dataset, study), cell, cfg, cache_dir=cache_dir, progress=progress)
        seconds = time.perf_counter() - start
        (cell / "cell.json").write_text(json.dumps({"dataset": dataset, "variant": variant, "seconds": seconds}, indent=2) + "\n")
        test = result.metrics.get("test", {}).get("a", {})
        say(f"{tag}: test R² {test.get('r2', float('nan')):.3f}, MAE {test.get('mae', float('nan')):.3f} Å "
            f"in {seconds:.0f} s (best epoch {result.metrics.get('best_epoch')})")

    table = collect_results(out_dir, study)
    table.to_csv(out_dir / "periodicity.csv", index=False)
    (out_dir / "periodicity.md").write_text(markdown_table(table, study) + "\n")
    parity_grid(out_dir, study, table, out_dir / "parity_grid.png")
    r2_bars(table, study, out_dir / "r2_bars.png")
    say(f"wrote {out_dir / 'periodicity.csv'}, periodicity.md, parity_grid.png, r2_bars.png")
    return table


def _check_model(cfg: RunConfig) -> None:
    from crystalgnn.models import build_model

    build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_targets=1)))


def collect_results(out_dir: str | Path, study: PeriodicityStudy) -> pd.DataFrame:
    """One row per cell from the cell folders: settings (from ``config.json``) and metrics."""
    out_dir = Path(out_dir)
    rows = []
    for dataset, variant in study.cells:
        cell = _cell_dir(out_dir, dataset, variant)
        metrics = json.loads((cell / "metrics.json").read_text())
        cfg = RunConfig.load(cell / "config.json")
        info = json.loads((cell / "cell.json").read_text()) if (cell / "cell.json").exists() else {}
        test, train_m = metrics["test"]["a"], metrics["train"]["a"]
        rows.append({
            "dataset": dataset,
            "variant": variant,
            "model": cfg.model.name,
            "n_conv": getattr(cfg.model.arch, "n_conv", None),
            "cutoff": cfg.graph.cutoff,
            "max_neighbors": cfg.graph.max_neighbors,
            "pooling": cfg.model.pooling,
            "per_atom": cfg.data.per_atom,
            "n_train": train_m["n"],
            "n_val": metrics.get("val", {}).get("a", {}).get("n", 0),
            "n_test": test["n"],
            "test_r2": test["r2"],
            "test_mae": test["mae"],
            "test_rmse": test["rmse"],
            "test_mae_over_mad": test["mae_over_mad"],
            "train_r2": train_m["r2"],
            "epochs": cfg.train.epochs,
            "best_epoch": metrics.get("best_epoch"),
            "seconds": info.get("seconds", float("nan")),
        })
    return pd.DataFrame(rows)


def _r2_matrix(table: pd.DataFrame, study: PeriodicityStudy) -> pd.DataFrame:
    return table.pivot(index="dataset", columns="variant", values="test_r2").reindex(
        index=list(study.datasets), columns=list(study.variants)
    )


def markdown_table(table: pd.DataFrame, study: PeriodicityStudy) -> str:
    """Test R² as a markdown table, datasets × variants (best variant of each dataset in bold)."""
    r2 = _r2_matrix(table, study)
    lines = [
        (f"Test R² of `a` ({study.model}, {study.n_structures} chains per dataset, split "
         f"{'/'.join(f'{x:g}' for x in study.split_fractions)}, {study.epochs} epochs, batch {study.batch_size}, seed {study.seed})"),
        "",
        "| dataset | " + " | ".join(r2.columns) + " |",
        "|---|" + "---:|" * len(r2.columns),
    ]
    for dataset, row in r2.iterrows():
        best = row.max()
        cells = []
        for value in row:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("—")
            else:
                text = f"{value:.3f}"
                cells.append(f"**{text}**" if len(row) > 1 and value == best else text)
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    lines += ["", "Variants: " + "; ".join(f"{v}: {VARIANTS[v].description}" for v in study.variants) + "."]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless, as in crystalgnn.reports.plots
    import matplotlib.pyplot as plt

    return plt


def parity_grid(out_dir: str | Path, study: PeriodicityStudy, table: pd.DataFrame, path: str | Path) -> None:
    """Predicted vs true ``a`` on the test split, one panel per cell (rows: datasets,
    columns: variants), test R² in each title — the picture of Fig. 3e–f."""
    plt = _plt()
    out_dir = Path(out_dir)
    nr, nc = len(study.datasets), len(study.variants)
    fig, axes = plt.subplots(nr, nc, figsize=(2.8 * nc + 0.6, 2.8 * nr + 0.4), dpi=110, squeeze=False)
    r2 = _r2_matrix(table, study)
    for i, dataset in enumerate(study.datasets):
        for j, variant in enumerate(study.variants):
            ax = axes[i][j]
            pred_file = _cell_dir(out_dir, dataset, variant) / "predictions_test.csv"
            if pred_file.exists():
                frame = pd.read_csv(pred_file)
                t, p = frame["true_a"].to_numpy(), frame["pred_a"].to_numpy()
                ax.scatter(t, p, s=5, alpha=0.6, color="#31a354", edgecolors="none")
                lo, hi = min(t.min(), p.min()), max(t.max(), p.max())
                ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(f"{dataset} / {variant}\nR² = {r2.loc[dataset, variant]:.3f}", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == nr - 1:
                ax.set_xlabel("true a (Å)", fontsize=8)
            if j == 0:
                ax.set_ylabel("predicted a (Å)", fontsize=8)
    fig.suptitle(f"Periodicity of 1D carbon chains: test set ({study.model}, {study.epochs} epochs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def r2_bars(table: pd.DataFrame, study: PeriodicityStudy, path: str | Path) -> None:
    """Grouped bar chart of test R²: a group per dataset, a bar per variant (Fig. 3g–h, S3)."""
    plt = _plt()
    r2 = _r2_matrix(table, study)
    n_d, n_v = r2.shape
    width = 0.8 / n_v
    x = np.arange(n_d)
    matrix = r2.to_numpy(dtype=float)
    lowest = np.nanmin(matrix) if np.isfinite(matrix).any() else 0.0
    floor = max(min(0.0, lowest - 0.05), -0.5)  # a very negative R² is drawn down to the floor, labelled
    fig, ax = plt.subplots(figsize=(1.6 * n_d * max(1, n_v / 4) + 2.0, 4), dpi=120)
    for j, variant in enumerate(r2.columns):
        values = r2[variant].to_numpy(dtype=float)
        bars = ax.bar(x + (j - (n_v - 1) / 2) * width, np.clip(np.nan_to_num(values), floor, None), width, label=variant)
        for bar, value in zip(bars, values):
            if np.isfinite(value):
                ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, max(value, 0)),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.axhline(0, color="k", lw=0.6)
    ax.axhline(0.8, color="grey", lw=0.6, ls=":")
    ax.set_xticks(x, list(r2.index))
    ax.set_ylabel("test R² of a")
    ax.set_ylim(floor, 1.12)
    ax.set_title(f"Periodicity study ({study.model}, {study.epochs} epochs)")
    ax.legend(fontsize=8, title="variant", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


@dataclass(frozen=True)
class Finding:
    """One qualitative statement of the paper and whether a study reproduces it (``None``: the
    cells it needs were not run)."""

    name: str
    claim: str
    holds: bool | None
    detail: str


#: Margin by which long-single/default must fall below short-single/default ("clearly worse").
CLEAR_MARGIN = 0.1


def paper_findings(table: pd.DataFrame, clear_margin: float = CLEAR_MARGIN, sum_variant: str = "sum") -> list[Finding]:
    """Check the paper's qualitative findings on a results table (:func:`collect_results`).

    ``sum_variant``: the variant standing for sum pooling in the sum-vs-mean findings.
    """
    sv = sum_variant
    tag = "" if sv == "sum" else f"[{sv}] "  # in the claims
    key = "" if sv == "sum" else f"[{sv}]"  # in the names
    r2 = {(r.dataset, r.variant): float(r.test_r2) for r in table.itertuples()}

    def get(*cells: tuple[str, str]) -> list[float] | None:
        return [r2[c] for c in cells] if all(c in r2 for c in cells) else None

    out: list[Finding] = []
    v = get(("short-single", "default"))
    out.append(Finding("short-mean-learnable", "short single chains, mean pooling: R² ≥ 0.8 (Fig. 3e)",
                       None if v is None else v[0] >= 0.8, "" if v is None else f"R² {v[0]:.3f}"))
    v = get(("short-single", "default"), ("long-single", "default"))
    out.append(Finding("long-mean-worse", f"long single chains, mean pooling: R² below short by ≥ {clear_margin} (Fig. 3f)",
                       None if v is None else v[1] <= v[0] - clear_margin,
                       "" if v is None else f"long {v[1]:.3f} vs short {v[0]:.3f} (Δ {v[0] - v[1]:+.3f})"))
    v = get(("short-single", "default"), ("short-single", "nbr18"))
    out.append(Finding("short-more-neighbours", "short single chains: 18 neighbours / 12 Å beats the default (Fig. 3g)",
                       None if v is None else v[1] > v[0], "" if v is None else f"nbr18 {v[1]:.3f} vs default {v[0]:.3f}"))
    v = get(("long-single", "default"), ("long-single", sv))
    out.append(Finding(f"{key}long-sum-beats-mean", f"{tag}long single chains: sum pooling beats mean pooling (Fig. 3h)",
                       None if v is None else v[1] > v[0], "" if v is None else f"{sv} {v[1]:.3f} vs mean {v[0]:.3f}"))
    claim = f"{tag}gain of sum over mean smaller on long-mixed than long-single (Fig. S3)"
    v = get(("long-single", "default"), ("long-single", sv), ("long-mixed", "default"), ("long-mixed", sv))
    if v is None:
        out.append(Finding(f"{key}mixed-sum-gain-smaller", claim, None, ""))
    else:
        gain_single, gain_mixed = v[1] - v[0], v[3] - v[2]
        out.append(Finding(f"{key}mixed-sum-gain-smaller", claim, gain_mixed < gain_single,
                           f"gain long-single {gain_single:+.3f}, long-mixed {gain_mixed:+.3f}"))
    return out

