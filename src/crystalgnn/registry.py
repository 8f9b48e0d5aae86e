"""The model registry: the one seam through which the rest of crystalgnn knows about models.

Each model file (``models/cgcnn.py``, ``models/alignn.py``, ...) declares, next to the model, a
:class:`ModelSpec` and registers it::

    @dataclass(frozen=True)
    class TinyConfig:                       # the model's own settings, paper defaults
        width: int = field(default=32, metadata={"help": "atom vector width (32)"})

    class Tiny(nn.Module):                   # forward(batch, extra=None) -> ReadoutOutput
        def __init__(self, atom_table, out_features, pooling, dropout, extra_features, width=32): ...

    register(ModelSpec(name="tiny", settings=TinyConfig, build=keyword_builder(Tiny),
                       description="a two-layer toy", train_defaults={"epochs": 50}))

From then on ``ModelConfig(name="tiny")``, ``defaults_for("tiny")``, ``crystalgnn train --model
tiny --width 16``, ``load_model`` and the probe/periodicity studies all work; nothing in ``src/``
is edited. A built model must follow one contract (see :class:`ModelSpec`).

CLI flags of a model are made from its settings dataclass: one flag per field, ``--field-name``
unless ``metadata={"flag": "--other"}`` says otherwise, typed from the annotation (``Literal``
gives choices, ``bool`` a ``--x/--no-x`` pair), with ``metadata["help"]`` as its help text.

This module sits at the bottom of the package (it imports nothing of crystalgnn), so that
configuration, CLI and training can all consult it. Built-in models register when their module
is imported; :func:`get` and :func:`names` import the built-in model modules on first use (the
one place crystalgnn imports by name, like a plugin entry point), so a saved ``alignn`` run loads
even when nothing imported ``crystalgnn.models`` yet.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Built-in models and the module that registers each (imported on first lookup).
BUILTIN_MODELS: dict[str, str] = {
    "cgcnn": "crystalgnn.models.cgcnn",
    "alignn": "crystalgnn.models.alignn",
    "ocrystalnet": "crystalgnn.models.ocrystalnet",
    "crystograph": "crystalgnn.models.crystograph",
}

_REGISTRY: dict[str, ModelSpec] = {}
_builtins_loaded = False


@dataclass(frozen=True)
class InputNeeds:
    """What a model needs from the graph builder; checked against the ``GraphConfig`` of a run
    before anything is built, so a mismatch is one clear error instead of a failure mid-epoch."""

    #: The line graph (bond pairs with angle cosines, ``GraphConfig.line_graph``).
    line_graph: bool = False
    #: A neighbour strategy the model is defined on ("radius", "knn"); None: any.
    graph_strategy: str | None = None
    #: Graph add-ons the model reads (``crystalgnn.graphs.schema``), e.g. ``("reverse_edges",)``;
    #: added to the run's graph settings by ``RunConfig.graph_inputs``.
    graph_addons: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildInputs:
    """What a model builder receives besides the model's own settings.

    ``out_features``: outputs (targets for regression, classes for classification);
    ``pooling``/``dropout``: the shared readout settings of ``ModelConfig``; ``extra_features``:
    crystal-level descriptors joined after pooling (0: none); ``atom_table``: the (Z_max + 1, A)
    atom feature table (a tensor) or None for a learned embedding per element; ``run``: the whole
    ``RunConfig``, for anything else a model needs to read.
    """

    out_features: int
    pooling: str
    dropout: float
    extra_features: int
    atom_table: Any | None
    run: Any


def keyword_builder(model_class: Callable[..., Any]) -> Callable[[Any, BuildInputs], Any]:
    """A builder for a model whose constructor takes, as keyword arguments, the shared inputs
    (``atom_table``, ``out_features``, ``pooling``, ``dropout``, ``extra_features``) and one
    argument per field of its settings dataclass (the shape of PyG's and matgl's models)."""

    def build(settings: Any, inputs: BuildInputs) -> Any:
        return model_class(
            atom_table=inputs.atom_table,
            out_features=inputs.out_features,
            pooling=inputs.pooling,
            dropout=inputs.dropout,
            extra_features=inputs.extra_features,
            **dataclasses.asdict(settings),
        )

    build.__name__ = build.__qualname__ = f"build_{getattr(model_class, '__name__', 'model').lower()}"
    return build


def _no_needs(settings: Any) -> InputNeeds:
    return InputNeeds()


@dataclass(frozen=True)
class ModelSpec:
    """One model, as the rest of crystalgnn sees it.

    Args:
        name: the ``--model`` / ``ModelConfig.name`` value.
        settings: a frozen dataclass of the model's own settings, every default the paper's;
            it is saved in ``config.json`` under ``model.arch`` and restored by ``load_model``.
        build: ``build(settings, inputs: BuildInputs) -> nn.Module``. The module must have
            ``forward(batch, extra=None) -> ReadoutOutput`` (``crystalgnn.models.readout``), a
            ``readout`` submodule holding everything after pooling (what ``--freeze-encoder``
            keeps trainable and ``--hybrid frozen`` replaces), and an int ``embedding_width``
            (width of the pooled crystal vector).
        description: one line for ``--help``.
        needs: ``needs(settings) -> InputNeeds``.
        graph_defaults: ``GraphConfig`` fields the reference code uses (e.g. a kNN graph).
        feature_defaults: ``FeatureConfig`` fields the paper uses (e.g. OCrystalNet's OFM + CFID atoms).
        train_defaults: ``TrainConfig`` fields the reference code trains with.
        legacy_state_keys: prefix renames applied to weights saved before the registry
            (config layout 1), e.g. ``{"model.embedding.": "model.atom_input.project."}``.
    """

    name: str
    settings: type
    build: Callable[[Any, BuildInputs], Any]
    description: str = ""
    needs: Callable[[Any], InputNeeds] = _no_needs
    graph_defaults: Mapping[str, Any] = field(default_factory=dict)
    feature_defaults: Mapping[str, Any] = field(default_factory=dict)
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    legacy_state_keys: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not dataclasses.is_dataclass(self.settings) or not self.settings.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"model {self.name!r}: settings must be a frozen dataclass, got {self.settings!r}")


def register(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry (``replace=True`` overwrites an entry of the same name)."""
    if not spec.name or not spec.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"model name {spec.name!r} must be letters, digits, '-' or '_'")
    current = _REGISTRY.get(spec.name)
    if current is not None and not replace and current.settings is not spec.settings:
        raise ValueError(f"a model named {spec.name!r} is already registered; pass replace=True to overwrite it")
    for other in _REGISTRY.values():
        if other.settings is spec.settings and other.name != spec.name:
            raise ValueError(f"{spec.settings.__name__} already belongs to model {other.name!r}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a model (tests register throw-away models and remove them afterwards)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODELS.values():
            importlib.import_module(module)


def names() -> tuple[str, ...]:
    """Registered model names, built-ins first."""
    _load_builtins()
    builtin = [n for n in BUILTIN_MODELS if n in _REGISTRY]
    return tuple(builtin + [n for n in _REGISTRY if n not in BUILTIN_MODELS])


def get(name: str) -> ModelSpec:
    """The spec of model ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(names())} "
            "(a model of your own must be registered with crystalgnn.registry.register before use, "
            "also before loading its runs)"
        ) from None


def spec_of_settings(settings: Any) -> ModelSpec:
    """The spec whose settings class ``settings`` is an instance of."""
    _load_builtins()
    for spec in _REGISTRY.values():
        if type(settings) is spec.settings:
            return spec
    raise ValueError(f"{type(settings).__name__} is not the settings class of any registered model ({', '.join(names())})")
