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

from crystalgnn import registry

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
    ``strategy="nearest"`` is CrysToGraph's reference graph: exactly the ``max_neighbors`` nearest
    of every atom (ties broken by distance, then neighbour index), the radius grown as for knn,
    directed neighbour → centre and not symmetrized.

    ``line_graph=True`` also builds ALIGNN's line graph: one node per bond, one edge per pair of
    bonds meeting at an atom (j→i, i→k), carrying the cosine of the bond angle at i.

    ``max_neighbors=0`` with the radius strategy keeps every neighbour within ``cutoff`` (a
    symmetric neighbour list: every bond has its reverse).

    ``addons``: further graph add-ons to build, by name (``crystalgnn.graphs.schema``), e.g.
    ``"ofm"`` (per-site orbital field sums) or ``"reverse_edges"`` (each bond's reverse). A run
    adds those its atom features and its model need (:meth:`RunConfig.graph_inputs`), so this is
    rarely set by hand. Empty adds nothing to the cache key, so caches built before it existed stay valid.
    """

    strategy: Literal["radius", "knn", "nearest"] = "radius"
    cutoff: float = 8.0
    max_neighbors: int = 12
    cutoff_growth: float = 2.0
    tie_tolerance: float = 1e-4
    line_graph: bool = False
    code_version: int = GRAPH_CODE_VERSION
    addons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "addons", tuple(sorted(set(self.addons))))

    def key_settings(self) -> dict[str, Any]:
        """The settings that name a cache: every field, ``addons`` only when not empty (so the
        keys of graphs built before the field existed do not change)."""
        settings = dataclasses.asdict(self)
        if not settings["addons"]:
            del settings["addons"]
        else:
            settings["addons"] = list(settings["addons"])
        return settings

    def key(self) -> str:
        """Short stable hash of every setting. The graph cache names its folders by
        :func:`crystalgnn.graphs.schema.graph_key`, which adds the enabled add-ons' versions to it
        (and is this hash when none is enabled)."""
        return stable_hash(self.key_settings())[:16]


@dataclass(frozen=True)
class FeatureConfig:
    """Atom input features, shared by every model (see :mod:`crystalgnn.features.choices`).

    ``atom_features``: ``"cgcnn"`` (the 92-dim one-hot vector of CGCNN SM Table II, Z 1–100),
    ``"embedding"`` (a learnable vector per element of the model width), ``"ofm"`` (the per-site
    orbital field matrix, 1024 + 32 = 1056, Z 1–94), ``"cfid"`` (JARVIS's 438 CFID element
    features, imputed and standardised on the training atoms), or several of cgcnn/ofm/cfid joined
    by ``+`` and concatenated in that order (``"ofm+cfid"``: OCrystalNet's 1494), or with
    ``pretrained:RUN`` (the 64-dim element embedding of ``crystalgnn pretrain``, frozen;
    ``"cgcnn+pretrained:RUN"``: CrysToGraph's 156). The model's input
    layer maps them to its width. ``ofm_period_tag``: matminer's period tag, 39-dim orbital vectors
    (OFM width 39² + 39 = 1560). How bonds are expanded is a setting of each model.
    """

    atom_features: str = "cgcnn"
    ofm_period_tag: bool = False

    def __post_init__(self) -> None:
        from crystalgnn.features.choices import parse_atom_features

        parse_atom_features(self.atom_features)  # raises, listing the choices


@dataclass(frozen=True)
class ForestConfig:
    """Random forest settings (scikit-learn names). ``max_features=1.0`` is the regression default
    of scikit-learn (all features per split); 300 trees."""

    features: tuple[Literal["descriptors", "composition"], ...] = ("descriptors",)
    descriptors: tuple[str, ...] = ()  # empty: the default hybridization set
    n_estimators: int = 300
    max_features: float = 1.0
    min_samples_leaf: int = 1
    n_jobs: int = -1


#: Hybrids that fit a random forest on the descriptors first (:mod:`crystalgnn.training.residual`).
FOREST_HYBRIDS = ("residual", "stacked", "blend", "blend-plain")
#: Forest hybrids that mix the forest into the prediction after training (w · network + (1 − w) · forest).
BLEND_HYBRIDS = ("blend", "blend-plain")
#: Forest hybrids whose head reads the forest's prediction as one more input.
FOREST_INPUT_HYBRIDS = ("residual", "stacked")


@dataclass(frozen=True)
class ModelConfig:
    """The model: what every model shares, plus the chosen model's own settings (``arch``).

    ``name`` picks the model from :mod:`crystalgnn.registry` (``"cgcnn"`` by default); ``arch``
    is that model's settings dataclass (e.g. :class:`crystalgnn.models.cgcnn.CGCNNConfig`), its
    paper defaults when omitted. Either may be given alone: ``ModelConfig(name="alignn")`` or
    ``ModelConfig(arch=ALIGNNConfig(hidden_features=64))``; given together they must agree.
    Pooling, task, targets, dropout and descriptors apply to every model.
    """

    name: str = ""
    pooling: Literal["mean", "sum", "site"] = "mean"
    task: Literal["regression", "classification"] = "regression"
    n_targets: int = 1
    n_classes: int = 2
    dropout: float = 0.0
    #: Gong et al. descriptors concatenated to the pooled vector before the head (Eq. 14,
    #: "de-CGCNN"); empty: the plain model. Names from ``crystalgnn.descriptors.DESCRIPTOR_NAMES``.
    descriptors: tuple[str, ...] = ()
    #: How descriptors join: "end-to-end" (Eq. 14, they shape the learned representation) or
    #: "frozen" (Eq. S5: the plain model is trained first, then only a new head sees them) or
    #: "residual" (end to end, learning what a random forest on the descriptors misses) or
    #: "stacked" (end to end, the forest's prediction one more input of the head) or "blend"
    #: (the Eq. 14 network and the forest trained apart, mixed by a weight chosen on validation)
    #: or "blend-plain" (the same with the plain network: the descriptors feed only the forest);
    #: see :mod:`crystalgnn.training.residual`.
    hybrid: Literal["end-to-end", "frozen", "residual", "stacked", "blend", "blend-plain"] = "end-to-end"
    #: The chosen model's own settings (a frozen dataclass declared in its model file).
    arch: Any = None

    def __post_init__(self) -> None:
        arch = self.arch
        if arch is None or isinstance(arch, dict):
            spec = registry.get(self.name or "cgcnn")
            arch = spec.settings() if arch is None else from_dict(spec.settings, arch)
        else:
            spec = registry.spec_of_settings(arch)
            if self.name and self.name != spec.name:
                raise ValueError(f"ModelConfig(name={self.name!r}) was given the settings of {spec.name!r} "
                                 f"({type(arch).__name__}); give one of them, or matching ones")
        object.__setattr__(self, "name", spec.name)
        object.__setattr__(self, "arch", arch)


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
    #: Adam/AdamW's second-moment decay β₂ (PyTorch's 0.999; CrysToGraph trains with 0.99).
    adam_beta2: float = 0.999
    #: Learning-rate schedule: one-cycle (peak ``lr`` at 30 %), cosine, multistep (``milestones``,
    #: ``gamma``; no milestones: one step at a third of the epochs, CrysToGraph's run script), none,
    #: or noam (chemprop's NoamLR, as CMPNN and OCrystalNet train: per step, linear warm-up from
    #: ``noam_initial_lr`` to ``lr`` over ``noam_warmup_epochs`` epochs, then exponential decay
    #: reaching ``noam_final_lr`` at the last step).
    scheduler: Literal["cosine", "onecycle", "multistep", "none", "noam"] = "onecycle"
    milestones: tuple[int, ...] = (100,)
    gamma: float = 0.1
    noam_warmup_epochs: float = 2.0
    noam_initial_lr: float = 1e-4
    noam_final_lr: float = 1e-5
    early_stopping_patience: int = 0
    max_minutes: float = 0.0
    #: With ``max_minutes``: the learning-rate schedule advances by whichever is further along, the
    #: steps taken or the clock (elapsed / budget), so a run the time limit stops has run its whole
    #: schedule (one-cycle or cosine annealed, noam decayed) instead of stopping at a high rate
    #: (``epochs`` is then an upper bound). The whole schedule is compressed alike, warm-ups
    #: included (noam's ``noam_warmup_epochs`` become that share of the budget). Not repeatable
    #: (the clock decides). False: the schedule follows the steps alone.
    schedule_to_budget: bool = True
    normalize_targets: bool = True
    seed: int = 123
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split_file: str = ""
    kfold: int = 0
    fold: int = 0
    kfold_seed: int = 18012019
    #: Share of each k-fold training fold held out (seeded) for validation; 0: the training fold is
    #: used whole and also validates (the best epoch is picked on it: UnconvBench's protocol).
    kfold_val_fraction: float = 0.1
    accelerator: str = "auto"
    #: Devices (processes under DDP) per node.
    devices: int = 1
    #: Machines of a multi-node DDP job (Lightning's ``num_nodes``): ``num_nodes × devices``
    #: processes in all, launched by torchrun or SLURM's srun (README, Multi-node training).
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    #: How training holds the graphs: "memory" (one in-memory store), "mmap" (a view over the
    #: memory-mapped cache shards: resident memory bounded by a few shards, for datasets larger
    #: than memory; a shuffled epoch visits the shards a few at a time), "auto" (mmap when the
    #: graphs exceed a quarter of the memory the process may use, cgroup limits included). Needs
    #: the graph cache; the numbers are the same either way when the data fit one shuffle window.
    graph_store: Literal["auto", "memory", "mmap"] = "auto"
    #: torch CPU threads; 0: the cores not busy with other processes when training starts.
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
    #: Bit-identical numbers from run to run on the same machine: one CPU thread (a reduction split
    #: over several threads can add in another order when the OS gives the process fewer cores),
    #: ``torch.use_deterministic_algorithms`` and Lightning's deterministic mode (also on GPUs, where
    #: scatter sums are otherwise atomic). Costs the speed of the other threads (README, Reproducibility).
    deterministic: bool = False
    #: A logger beside the CSV log (which is always written; the learning curve reads it):
    #: "tensorboard" (``RUN/tensorboard``, through tensorboardX) or "mlflow" (a local file store,
    #: ``RUN/mlruns`` unless ``mlflow_uri`` names another tracking URI). Nothing reaches a network
    #: unless ``mlflow_uri`` is a server's address.
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"
    mlflow_uri: str = ""
    #: Members of a deep ensemble (``RUN/members/<k>/``, seeds ``seed + k``, one shared split);
    #: the run directory then holds the ensemble's mean, spread and calibration. 1: a single run.
    ensemble: int = 1
    #: Train on a bootstrap resample of the training split (drawn with ``seed``; with ``ensemble``,
    #: each member draws its own), so members also differ by their data.
    bootstrap: bool = False
    #: Seed of the fraction split when it differs from ``seed`` (an ensemble's members keep the
    #: split of the ensemble's seed); None: ``seed``.
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1 (machines of a multi-node run), got {self.num_nodes}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 (the number of members; 1: a single run), got {self.ensemble}")
        if self.scheduler == "noam":
            if not (self.lr > 0 and self.noam_initial_lr > 0 and self.noam_final_lr > 0):
                raise ValueError(f"noam schedule: lr ({self.lr}), noam_initial_lr ({self.noam_initial_lr}) and "
                                 f"noam_final_lr ({self.noam_final_lr}) must be positive")
            if not self.noam_warmup_epochs >= 0:
                raise ValueError(f"noam_warmup_epochs must be >= 0, got {self.noam_warmup_epochs}")


#: Layout of ``config.json``. 1: before the model registry (CGCNN's settings at the top of
#: ``model``, ALIGNN's under ``model.alignn``, CGCNN's Gaussians under ``features``); 2: the chosen
#: model's settings alone, under ``model.arch``. Layout-1 files are upgraded on load.
CONFIG_LAYOUT = 2


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as ``config.json`` in the run directory."""

    data: DataConfig = field(default_factory=DataConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    crystalgnn_version: str = "0.1.0"
    config_layout: int = CONFIG_LAYOUT

    def graph_inputs(self) -> GraphConfig:
        """The graph settings graphs are built with: :attr:`graph` plus the add-ons the atom
        features (e.g. ``ofm``) and the model (e.g. ``reverse_edges``) need."""
        from crystalgnn.features.choices import graph_addons_for

        needed = set(self.graph.addons) | set(graph_addons_for(self.features.atom_features))
        needed |= set(registry.get(self.model.name).needs(self.model.arch).graph_addons)
        return dataclasses.replace(self.graph, addons=tuple(sorted(needed)))

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot work together, saying what to change
        (``FileNotFoundError`` for a ``pretrained:RUN`` atom feature without its pretraining run)."""
        from crystalgnn.features.choices import check_atom_features

        check_atom_features(self.features.atom_features)
        name = self.model.name
        needs = registry.get(name).needs(self.model.arch)
        if needs.line_graph and not self.graph.line_graph:
            raise ValueError(f"{name} with these settings needs line graphs: set GraphConfig(line_graph=True) (CLI: --line-graph), "
                             f"or start from defaults_for({name!r}) / --model {name}")
        if "reverse_edges" in self.graph_inputs().addons and self.graph.strategy == "radius" and self.graph.max_neighbors > 0:
            raise ValueError(f"{name} pairs every bond with its reverse, which a radius graph cut to the {self.graph.max_neighbors} "
                             "nearest neighbours per atom does not have: use --max-neighbors 0 (every neighbour within the cutoff) "
                             "or --graph-strategy knn (symmetrized)")
        if self.model.hybrid in FOREST_HYBRIDS:
            if not self.model.descriptors:
                raise ValueError(f"the {self.model.hybrid} hybrid builds on a forest on the descriptors: give it descriptors "
                                 "(ModelConfig(descriptors=default_hybrid_descriptors()); CLI: --descriptors)")
            if self.model.task != "regression":
                raise ValueError(f"the {self.model.hybrid} hybrid is for regression targets; use --hybrid end-to-end for classification")
        if needs.graph_strategy and needs.graph_strategy != self.graph.strategy:
            raise ValueError(f"{name} is defined on the {needs.graph_strategy!r} graph, not {self.graph.strategy!r}: "
                             f"set GraphConfig(strategy={needs.graph_strategy!r}) (CLI: --graph-strategy {needs.graph_strategy}), "
                             f"or start from defaults_for({name!r}) / --model {name}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        # Settings added after runs already existed are left out at their defaults, so a plain
        # run's config.json is the one earlier versions wrote (and they can still read it).
        for key, default in _OMITTED_AT_DEFAULT["train"].items():
            if data["train"].get(key) == default:
                del data["train"][key]
        return json.dumps(data, indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_json_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> RunConfig:
        """A config from its JSON form; layout-1 files (written before the registry) are upgraded."""
        if "config_layout" not in data and "arch" not in data.get("model", {}):
            data = upgrade_layout_1(data)
        return from_dict(cls, data)


#: Settings written to config.json only when they differ from these (see :meth:`RunConfig.to_json`).
_OMITTED_AT_DEFAULT: dict[str, dict[str, Any]] = {"train": {"ensemble": 1, "bootstrap": False, "split_seed": None, "adam_beta2": 0.999,
                                                            "kfold_val_fraction": 0.1, "graph_store": "auto"}}

#: CGCNN's settings that layout 1 kept at the top of ``model`` and under ``features``.
_LAYOUT_1_CGCNN_MODEL = ("atom_fea_len", "n_conv", "h_fea_len", "n_h", "conv")
_LAYOUT_1_CGCNN_FEATURES = ("gaussian_start", "gaussian_stop", "gaussian_step", "gaussian_width")


def upgrade_layout_1(data: dict[str, Any]) -> dict[str, Any]:
    """A layout-1 ``config.json`` dict in layout 2: only the chosen model's settings, under
    ``model.arch``; the other model's settings (which that layout always carried) are dropped."""
    data = json.loads(json.dumps(data))  # a deep copy
    model, features = data.get("model", {}), data.get("features", {})
    name = model.get("name", "cgcnn")
    cgcnn = {k: model.pop(k) for k in _LAYOUT_1_CGCNN_MODEL if k in model}
    cgcnn.update({k: features.pop(k) for k in _LAYOUT_1_CGCNN_FEATURES if k in features})
    if "gaussian_width" in cgcnn and cgcnn["gaussian_width"] == cgcnn.get("gaussian_step"):
        cgcnn["gaussian_width"] = None  # layout 2 spells "the width is the step" as None
    alignn = model.pop("alignn", {})
    model["arch"] = {"cgcnn": cgcnn, "alignn": alignn}.get(name, {})
    data["config_layout"] = CONFIG_LAYOUT
    return data


def defaults_for(model: str) -> RunConfig:
    """The run configuration a model's reference code trains with: its graph, its own settings
    (paper defaults) and its optimiser, as declared in its :class:`~crystalgnn.registry.ModelSpec`.

    ``cgcnn``: radius graph (8 Å, 12 neighbours) and the defaults of :class:`TrainConfig`.
    ``alignn``: k-nearest graph (12, growing cutoff) with its line graph and the reference AdamW
    (see ``crystalgnn.models.alignn``). ``ocrystalnet``: the symmetrized k-nearest graph, OFM + CFID
    atoms, Adam with the Noam schedule (see ``crystalgnn.models.ocrystalnet``).
    """
    spec = registry.get(model)
    return RunConfig(
        graph=dataclasses.replace(GraphConfig(), **spec.graph_defaults),
        features=dataclasses.replace(FeatureConfig(), **spec.feature_defaults),
        model=ModelConfig(name=model),
        train=dataclasses.replace(TrainConfig(), **spec.train_defaults),
    )


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
