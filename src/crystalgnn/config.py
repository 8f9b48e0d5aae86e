"""Typed configuration of a run, saved as JSON with every run and restored by ``load_model``.

Every setting that changes a graph or a feature lives here, so ``predict`` rebuilds inputs
exactly as training saw them (the reference CGCNN rebuilt them with defaults, a known bug).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

#: Bump when the graph-building code changes what it produces, so old caches are not reused.
#: 2: CIFs parsed by gemmi (coordinates as written, not snapped to fractions by pymatgen).
#: 3: the knn strategy adds every edge in both directions (ALIGNN's undirected graph).
GRAPH_CODE_VERSION = 3


@dataclass(frozen=True)
class GraphConfig:
    """How a structure becomes a periodic multigraph.

    ``strategy="radius"`` is CGCNN's: neighbours within ``cutoff`` Å, the ``max_neighbors``
    nearest kept per atom. ``strategy="knn"`` is ALIGNN/CrysToGraph's: every neighbour up to the
    ``max_neighbors``-th neighbour distance (ties within ``tie_tolerance`` Å included); the search
    radius grows by ``cutoff_growth`` Å until every atom has ``max_neighbors`` neighbours; every
    bond is then present in both directions, as in ALIGNN's undirected graph.

    ``line_graph=True`` also builds ALIGNN's line graph: one node per bond, one edge per pair of
    bonds meeting at an atom (j→i, i→k), carrying the cosine of the bond angle at i.
    """

    strategy: Literal["radius", "knn"] = "radius"
    cutoff: float = 8.0
    max_neighbors: int = 12
    cutoff_growth: float = 2.0
    tie_tolerance: float = 1e-4
    line_graph: bool = False
    code_version: int = GRAPH_CODE_VERSION

    def key(self) -> str:
        """Short stable hash of every setting; names the cache folder.

        The enabled graph add-ons (name, version, settings: ``crystalgnn.graphs.schema.addon_key``)
        are hashed with the settings; without any (a plain radius or knn graph) the hash is of the
        settings alone, as before add-ons existed, so those caches stay valid.
        """
        from crystalgnn.graphs.schema import addon_key  # here: config stays importable without numpy

        addons = addon_key(self)
        settings = dataclasses.asdict(self)
        return stable_hash({"graph": settings, "addons": addons} if addons else settings)[:16]


@dataclass(frozen=True)
class FeatureConfig:
    """Atom and bond input features.

    ``atom_features="cgcnn"``: the 92-dim one-hot vector of CGCNN SM Table II, computed from
    element data (Z 1–100), mapped to the model width by a learned linear layer.
    ``"embedding"``: a learnable vector per element (Z 1–100) of the model width.
    Bonds: Gaussian expansion exp(-(d-μ_k)²/width²), μ_k = start, start+step, …, stop
    (CGCNN: 0–8 Å, step 0.2, width 0.2 → 41 features).
    """

    atom_features: Literal["cgcnn", "embedding"] = "cgcnn"
    gaussian_start: float = 0.0
    gaussian_stop: float = 8.0
    gaussian_step: float = 0.2
    gaussian_width: float = 0.2

    @property
    def num_edge_features(self) -> int:
        return int(round((self.gaussian_stop - self.gaussian_start) / self.gaussian_step)) + 1


@dataclass(frozen=True)
class ALIGNNConfig:
    """ALIGNN's own settings (Choudhary & DeCost 2021; defaults of the reference ``ALIGNNConfig``).

    Bond lengths are expanded by ``edge_bins`` radial basis functions on [0, ``edge_max``] Å and
    bond-angle cosines by ``angle_bins`` on [−1, 1], both exp(−(u − μ_k)²/Δ) with Δ the centre
    spacing, then embedded by two MLP layers (→ ``embedding_features`` → ``hidden_features``).
    ``norm``: layer norm, as in the reference package's current pure-torch model; "batch" is the
    paper's batch norm, which breaks down in evaluation mode on degenerate inputs (1D chains, where
    every bond angle is 0° or 180°: validation MAE 1e9 Å) and was no better on log10 G_VRH (test
    MAE 0.0864 vs 0.0848 with layer norm, width 64, 40 epochs).

    ``head_layers``: hidden layers of the head after pooling (reference: 0, a single linear map);
    ``descriptor_head_layers`` replaces it when descriptors join (Gong et al.'s de-ALIGNN: two
    layers of width hidden + descriptors).
    """

    alignn_layers: int = 4
    gcn_layers: int = 4
    hidden_features: int = 256
    embedding_features: int = 64
    edge_bins: int = 80
    edge_max: float = 8.0
    angle_bins: int = 40
    norm: Literal["batch", "layer"] = "layer"
    head_layers: int = 0
    descriptor_head_layers: int = 2


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture. Top-level defaults are CGCNN's (Xie & Grossman 2018, reference code);
    ``alignn`` holds ALIGNN's. Pooling, task, targets, dropout and descriptors apply to every model."""

    name: Literal["cgcnn", "alignn"] = "cgcnn"
    atom_fea_len: int = 64
    n_conv: int = 3
    h_fea_len: int = 128
    n_h: int = 1
    conv: Literal["gated", "linear"] = "gated"
    pooling: Literal["mean", "sum", "site"] = "mean"
    task: Literal["regression", "classification"] = "regression"
    n_targets: int = 1
    n_classes: int = 2
    dropout: float = 0.0
    #: Gong et al. descriptors concatenated to the pooled vector before the head (Eq. 14,
    #: "de-CGCNN"); empty: the plain model. Names from ``crystalgnn.descriptors.DESCRIPTOR_NAMES``.
    descriptors: tuple[str, ...] = ()
    #: How descriptors join: "end-to-end" (Eq. 14, they shape the learned representation) or
    #: "frozen" (Eq. S5: the plain model is trained first, then only a new head sees them).
    hybrid: Literal["end-to-end", "frozen"] = "end-to-end"
    alignn: ALIGNNConfig = field(default_factory=ALIGNNConfig)


@dataclass(frozen=True)
class DataConfig:
    """Where the data came from and which targets were learned."""

    source: str = ""
    targets: tuple[str, ...] = ()
    transform: Literal["none", "log10"] = "none"
    on_error: Literal["raise", "skip"] = "raise"
    #: Learn ``target / number of atoms in the cell`` and report predictions multiplied back, the
    #: per-atom normalization of extensive targets of Gong et al. (Table 2, Fig. S2a, top branch).
    per_atom: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, splitting and hardware.

    Splits: seeded fractions (CGCNN's 60/20/20 after one shuffle with seed 123), a split file
    (``id,split`` with split in train/val/test), or ``kfold`` folds (``fold`` selects the test fold;
    MatBench uses seed 18012019).
    """

    epochs: int = 100
    batch_size: int = 256
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["cosine", "onecycle", "multistep", "none"] = "onecycle"
    milestones: tuple[int, ...] = (100,)
    gamma: float = 0.1
    early_stopping_patience: int = 0
    max_minutes: float = 0.0
    normalize_targets: bool = True
    seed: int = 123
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_file: str = ""
    kfold: int = 0
    fold: int = 0
    kfold_seed: int = 18012019
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    threads: int = 0
    #: Lightning precision of training: "32" or "bf16-mixed" (matrix products and activations in
    #: bfloat16 under autocast, weights and optimizer in float32; ALIGNN trained 1.3–2.4× faster on
    #: a CPU with AVX-512 BF16; also for GPUs with bfloat16). Prediction always runs in float32.
    precision: Literal["32", "bf16-mixed"] = "32"
    #: A finished run directory whose weights start this run (every tensor of matching name
    #: and shape is copied; the head is new when its width changed).
    init_from: str = ""
    #: Train only the readout head; the atom embedding and convolutions stay as initialized.
    freeze_encoder: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as ``config.json`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    crystalgnn_version: str = "0.1.0"

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot work together, saying what to change."""
        if self.model.name == "alignn" and self.model.alignn.alignn_layers > 0 and not self.graph.line_graph:
            raise ValueError("ALIGNN layers need line graphs: set GraphConfig(line_graph=True) (CLI: --line-graph), "
                             "or start from defaults_for('alignn') / --model alignn")

    @property
    def embedding_width(self) -> int:
        """Width of the pooled crystal vector (the model's atom vector width)."""
        return self.model.alignn.hidden_features if self.model.name == "alignn" else self.model.atom_fea_len

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return from_dict(cls, json.loads(Path(path).read_text()))


MODEL_NAMES = ("cgcnn", "alignn")


def defaults_for(model: str) -> RunConfig:
    """The run configuration a model's reference code trains with (graph, model, optimiser).

    ``cgcnn``: radius graph (8 Å, 12 neighbours), Gaussian bonds, the CGCNN defaults of
    :class:`ModelConfig` and :class:`TrainConfig`. ``alignn``: k-nearest graph (12, growing cutoff)
    with its line graph, :class:`ALIGNNConfig`, and the reference AdamW (peak lr 1e-2 as in its
    ``TrainingConfig``; on mp_elasticity3k it beat 1e-3 after 10 epochs, val MAE 0.096 vs 0.112;
    weight decay 1e-5 as in the paper) with a one-cycle schedule, batch 64, 300 epochs.
    """
    if model == "cgcnn":
        return RunConfig()
    if model == "alignn":
        return RunConfig(
            graph=GraphConfig(strategy="knn", line_graph=True),
            model=ModelConfig(name="alignn"),
            train=TrainConfig(epochs=300, batch_size=64, optimizer="adamw", lr=1e-2, weight_decay=1e-5, scheduler="onecycle"),
        )
    raise ValueError(f"unknown model {model!r}; available: {', '.join(MODEL_NAMES)}")


def stable_hash(obj: Any) -> str:
    """SHA-1 of the canonical JSON form of ``obj``."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a (nested) frozen dataclass from ``dataclasses.asdict`` output.

    Unknown keys raise, so a config written by a newer version fails loudly instead of silently.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` that ignores ``None`` values (handy for CLI overrides)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]
