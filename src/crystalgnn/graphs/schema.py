"""The graph schema: every array a crystal graph can hold, in one table, and the add-ons that build them.

A graph is made of *parts*. The atom graph (atoms and bonds, :data:`ATOM_GRAPH`) is always built;
every other part is an :class:`AddOn` (the line graph is the first) built when its ``enabled(cfg)``
says so. Each part brings its rows of the field table (:class:`Field`: array name, level, dtype,
width, batch name and cast, index offsets). Building (:func:`crystalgnn.graphs.crystal_graph.build_graph`),
storing, slicing, concatenating, saving, collating and the memory report
(:class:`crystalgnn.graphs.store.GraphStore`) all loop over this table, so a new per-atom,
per-bond or per-crystal feature is one builder plus its rows passed to :func:`register_addon`, with
no edit of the store, cache or collate code. The enabled add-ons' names, versions and settings enter
the cache key (:func:`graph_key`, which names the cache folders).

A per-atom feature, with no other edit (``getattr``: a setting ``GraphConfig`` does not have)::

    from crystalgnn.graphs.schema import AddOn, Field, register_addon

    def build_coordination(structure, arrays, cfg):  # arrays: atom graph (and earlier add-ons), full precision
        return {"coordination": np.bincount(arrays["edge_index"][1], minlength=len(structure))}

    register_addon(AddOn(
        name="coordination", version=1, build=build_coordination,
        fields=(Field("coordination", "node", np.int16, batch_name="coordination"),),
        enabled=lambda cfg: "coordination" in cfg.addons,  # GraphConfig(addons=("coordination",))
    ))

Built-in add-ons: the line graph (``GraphConfig.line_graph``), each bond's reverse
(``"reverse_edges"``), the per-site orbital field sums of the OFM (``"ofm"``, 39 floats per atom;
models expand them to the 1056-dim OFM per batch) and CrysToGraph's positional encodings
(``"positional_encodings"``, 20 Laplacian + 20 random-walk floats per atom).

This module imports numpy, the config's hash, the errors and the line-graph builder at the top (the
OFM builder imports the Voronoi code when it runs; not the structures or the store), so the store,
the graph builder and the cache can all use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from crystalgnn.config import stable_hash
from crystalgnn.errors import StructureError
from crystalgnn.graphs.line_graph import line_graph

if TYPE_CHECKING:
    from pymatgen.core import Structure

#: A ``crystalgnn.config.GraphConfig``, or a subclass with more settings (a test's add-on reads one).
GraphConfigLike = Any

Level = Literal["node", "edge", "line", "graph"]
#: Levels with a varying number of rows per graph: atoms, bonds, line-graph edges (bond pairs).
#: Each has a pointer array in a store (``node_ptr``, ``edge_ptr``, ``line_ptr``); ``"graph"`` has one row per crystal.
ROW_LEVELS: tuple[Level, ...] = ("node", "edge", "line")
LEVELS: tuple[Level, ...] = (*ROW_LEVELS, "graph")
#: Names ``GraphStore``/``CrystalGraph`` (and their ``.npz`` shards) use themselves: a field of that name
#: would be hidden behind them (fields read as attributes), so none may take one; ``num_*`` neither.
_RESERVED_FIELD_NAMES = frozenset({
    "keys", "parts", "arrays", "ptrs", "fields", "lattice", "graph", "take", "concat", "collate", "save", "load",
    "from_graphs", "has_line_graphs", "nbytes_per_graph", *(f"{level}_ptr" for level in ROW_LEVELS),
})
#: Names a collated batch uses for its own bookkeeping; no field may take them.
RESERVED_BATCH_NAMES = frozenset({"batch", "ptr", "num_nodes", "num_graphs", "graph_index", "y"})


@dataclass(frozen=True)
class Field:
    """One array of a graph.

    ``shape`` is the width of one row (``()`` scalar, ``(3,)`` a vector, ``(3, 3)`` the lattice).
    Index fields (``index_of`` set) hold row numbers of level ``index_of`` local to their own graph;
    they are stored with the rows last, ``(*shape, n)`` (``edge_index`` is ``(2, E)``), and
    batching casts them to ``batch_dtype`` and adds that level's offsets, so they number the rows of
    the batch. ``batch_name=None``: stored, never collated (``edge_images``, ``lattices``).
    """

    name: str
    level: Level
    dtype: Any  # anything np.dtype accepts; normalised to np.dtype
    shape: tuple[int, ...] = ()
    batch_name: str | None = None
    batch_dtype: Any = None  # cast in the batch; None: as stored
    index_of: Level | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.batch_dtype is not None:
            object.__setattr__(self, "batch_dtype", np.dtype(self.batch_dtype))
        if self.level not in LEVELS:
            raise ValueError(f"field {self.name!r}: level {self.level!r} is not one of {LEVELS}")
        if self.index_of is not None:
            if self.index_of not in ROW_LEVELS or self.level == "graph":
                raise ValueError(f"field {self.name!r}: index fields live on a row level and point at one of {ROW_LEVELS}")
            if self.dtype.kind not in "iu":
                raise ValueError(f"field {self.name!r}: an index field needs an integer dtype, not {self.dtype}")
        if self.batch_dtype is not None and self.batch_name is None:
            raise ValueError(f"field {self.name!r}: batch_dtype without batch_name")

    @property
    def row_axis(self) -> int:
        """Axis of the rows: last for index fields (stored ``(2, n)``), first otherwise."""
        return -1 if self.index_of is not None else 0

    def empty(self) -> np.ndarray:
        """The array of zero rows (a graph or store without rows of this level)."""
        shape = (*self.shape, 0) if self.index_of is not None else (0, *self.shape)
        return np.zeros(shape, dtype=self.dtype)

    def conform(self, value: Any, owner: str) -> np.ndarray:
        """``value`` cast to the stored dtype (always a copy) after checking its width.

        Builders return whatever precision they computed in; the cast happens here, once, so every
        graph of a cache holds the same dtypes."""
        array = np.asarray(value)
        if self.level == "graph":
            ok = array.shape == self.shape
        elif self.index_of is not None:
            ok = array.ndim == len(self.shape) + 1 and array.shape[:-1] == self.shape
        else:
            ok = array.ndim == len(self.shape) + 1 and array.shape[1:] == self.shape
        if not ok:
            rows = "" if self.level == "graph" else ("(*, n)" if self.index_of is not None else "(n, *)")
            raise ValueError(f"{owner}: field {self.name!r} has shape {array.shape}; expected width {self.shape} {rows}".rstrip())
        return array.astype(self.dtype)

    def rows(self, array: np.ndarray) -> int:
        """Number of rows of ``array`` (one graph's or a whole store's)."""
        return int(array.shape[self.row_axis])


#: Builds an add-on's arrays for one structure from the arrays built before it (the atom graph,
#: then earlier add-ons) at full precision (float64 geometry, int64 indices, before the storage cast).
Builder = Callable[["Structure", Mapping[str, np.ndarray], GraphConfigLike], Mapping[str, Any]]


def _no_settings(cfg: GraphConfigLike) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, kw_only=True)
class AddOn:
    """An optional part of a graph.

    ``enabled(cfg)``: whether a :class:`GraphConfig` builds it. ``settings(cfg)``: the values it
    builds with (JSON-able), part of the cache key with ``name`` and ``version``, so a setting kept
    outside ``GraphConfig`` still separates caches; bump ``version`` when the builder changes what
    it produces. ``build`` returns one array per field, in any float/int precision.
    """

    name: str
    version: int
    fields: tuple[Field, ...]
    build: Builder
    enabled: Callable[[GraphConfigLike], bool]
    settings: Callable[[GraphConfigLike], Mapping[str, Any]] = _no_settings

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))


# ---------------------------------------------------------------------------------- the table
#: Name of the part that is always built; ``nbytes_per_graph`` reports it under this name.
ATOM_GRAPH = "atom_graph"
#: The atom graph's fields; dtypes, widths and batch names as the store and batches always had them.
ATOM_GRAPH_FIELDS: tuple[Field, ...] = (
    Field("atomic_numbers", "node", np.int16, batch_name="z", batch_dtype=np.int64),
    Field("positions", "node", np.float32, (3,), batch_name="pos"),  # Cartesian Å
    Field("edge_index", "edge", np.int32, (2,), batch_name="edge_index", batch_dtype=np.int64, index_of="node"),  # (j, i)
    Field("edge_distances", "edge", np.float32, batch_name="edge_dist"),
    Field("edge_vectors", "edge", np.float32, (3,), batch_name="edge_vec"),  # r_j + image·L − r_i
    Field("edge_images", "edge", np.int16, (3,)),
    Field("lattices", "graph", np.float32, (3, 3)),  # rows are lattice vectors
)

_ADDONS: dict[str, AddOn] = {}  # registration order is build order, store order and batch order
_resolved: dict[tuple[str, ...], tuple[Field, ...]] = {}  # fields of a parts tuple, cleared on (un)registration


def _all_fields() -> Iterator[tuple[str, Field]]:
    yield from ((ATOM_GRAPH, f) for f in ATOM_GRAPH_FIELDS)
    for addon in _ADDONS.values():
        yield from ((addon.name, f) for f in addon.fields)


def register_addon(addon: AddOn) -> AddOn:
    """Make ``addon`` part of the schema (from anywhere, e.g. a plugin module or a test).

    Its field names and batch names must be new. It is built for every config it is enabled for,
    after the add-ons registered before it (whose arrays its builder sees). Forked build workers
    inherit the registry; register before building. Returns ``addon``.
    """
    if addon.name == ATOM_GRAPH or addon.name in _ADDONS:
        raise ValueError(f"graph add-on {addon.name!r} is already registered" if addon.name in _ADDONS
                         else f"{ATOM_GRAPH!r} names the part that is always built; choose another add-on name")
    if not addon.fields:
        raise ValueError(f"graph add-on {addon.name!r} has no fields")
    names = {f.name for _, f in _all_fields()} | _RESERVED_FIELD_NAMES
    batch_names = {f.batch_name for _, f in _all_fields() if f.batch_name} | RESERVED_BATCH_NAMES
    for f in addon.fields:
        if f.name in names or f.name.startswith(("_", "num_")):
            raise ValueError(f"graph add-on {addon.name!r}: field name {f.name!r} is taken")
        if f.batch_name is not None and f.batch_name in batch_names:
            raise ValueError(f"graph add-on {addon.name!r}: batch name {f.batch_name!r} is taken")
        names.add(f.name)
        if f.batch_name is not None:
            batch_names.add(f.batch_name)
    _ADDONS[addon.name] = addon
    _resolved.clear()
    return addon


def unregister_addon(name: str) -> AddOn:
    """Remove add-on ``name`` (stores holding it can no longer be sliced, saved or loaded)."""
    if name not in _ADDONS:
        raise KeyError(f"graph add-on {name!r} is not registered")
    _resolved.clear()
    return _ADDONS.pop(name)


@contextmanager
def registered(addon: AddOn) -> Iterator[AddOn]:
    """``addon`` registered inside the ``with`` block only (tests, experiments)."""
    register_addon(addon)
    try:
        yield addon
    finally:
        unregister_addon(addon.name)


def addons() -> tuple[AddOn, ...]:
    """Every registered add-on, in registration order."""
    return tuple(_ADDONS.values())


def enabled_addons(cfg: GraphConfigLike) -> tuple[AddOn, ...]:
    """The add-ons ``cfg`` builds; a name in ``cfg.addons`` that no add-on has raises."""
    unknown = sorted(set(getattr(cfg, "addons", ())) - set(_ADDONS))
    if unknown:
        raise ValueError(f"graph add-on(s) {unknown} are not registered (registered: {sorted(_ADDONS)})")
    return tuple(a for a in _ADDONS.values() if a.enabled(cfg))


def parts_for(cfg: GraphConfigLike) -> tuple[str, ...]:
    """The parts ``build_graph`` builds for ``cfg``: the atom graph, then each enabled add-on."""
    return (ATOM_GRAPH, *(a.name for a in enabled_addons(cfg)))


def addon_key(cfg: GraphConfigLike) -> dict[str, Any]:
    """What the enabled add-ons add to the cache key: name → version and settings (empty: none)."""
    return {a.name: {"version": a.version, "settings": dict(a.settings(cfg))} for a in enabled_addons(cfg)}


def graph_key(cfg: GraphConfigLike) -> str:
    """Name of the cache folder of graphs built with ``cfg``: a hash of its settings and of the
    enabled add-ons (name, version, settings); without add-ons (a plain radius or knn graph) the
    hash of the settings alone (``GraphConfig.key()``), as before add-ons existed, so those caches
    stay valid."""
    addons = addon_key(cfg)
    settings = cfg.key_settings() if hasattr(cfg, "key_settings") else dataclasses.asdict(cfg)  # type: ignore[call-overload]
    return stable_hash({"graph": settings, "addons": addons} if addons else settings)[:16]


def ordered_parts(parts: Iterable[str]) -> tuple[str, ...]:
    """``parts`` in schema order (atom graph first, then registration order), checked."""
    wanted = set(parts)
    unknown = wanted - set(_ADDONS) - {ATOM_GRAPH}
    if unknown:
        raise ValueError(f"graph parts {sorted(unknown)} are not registered (registered add-ons: {sorted(_ADDONS)}); "
                         "register them (crystalgnn.graphs.schema.register_addon) before using these graphs")
    if ATOM_GRAPH not in wanted:
        raise ValueError(f"graph parts {sorted(wanted)} lack {ATOM_GRAPH!r}")
    return (ATOM_GRAPH, *(name for name in _ADDONS if name in wanted))


def fields_of(parts: tuple[str, ...]) -> tuple[Field, ...]:
    """The fields of ``parts`` in table order (cached: collate asks on every batch)."""
    found = _resolved.get(parts)
    if found is None:
        ordered_parts(parts)  # raises, naming any part that is not registered
        found = _resolved[parts] = tuple(f for part, f in _all_fields() if part in parts)
    return found


def part_fields(part: str) -> tuple[Field, ...]:
    if part == ATOM_GRAPH:
        return ATOM_GRAPH_FIELDS
    addon = _ADDONS.get(part)
    if addon is None:
        ordered_parts((ATOM_GRAPH, part))  # raises, naming it
    return addon.fields


def field_named(name: str) -> Field | None:
    """The registered field called ``name``, or None."""
    return next((f for _, f in _all_fields() if f.name == name), None)


# ------------------------------------------------------------------------- built-in add-ons
def _build_line_graph(structure: Structure, arrays: Mapping[str, np.ndarray], cfg: GraphConfigLike) -> dict[str, np.ndarray]:
    """ALIGNN's line graph from the full-precision bond vectors (see :mod:`crystalgnn.graphs.line_graph`)."""
    line_index, cosines = line_graph(arrays["edge_index"], arrays["edge_vectors"], len(arrays["atomic_numbers"]))
    return {"line_index": line_index, "angle_cosines": cosines}


def _line_graph_enabled(cfg: GraphConfigLike) -> bool:
    return bool(cfg.line_graph)


#: ALIGNN's line graph (``GraphConfig.line_graph``): bond pairs meeting at an atom and the cosine of
#: their angle. Its name is the part's in ``GraphStore.has_line_graphs`` and ``nbytes_per_graph()``.
LINE_GRAPH = "line_graph"

register_addon(AddOn(
    name=LINE_GRAPH,
    version=1,
    fields=(
        # Pairs (a, b) of bonds a = (j → i), b = (i → k): edge numbers, offset by the batch's edges.
        Field("line_index", "line", np.int32, (2,), batch_name="line_index", batch_dtype=np.int64, index_of="edge"),
        Field("angle_cosines", "line", np.float32, batch_name="angle_cos"),  # cos of the bond angle at i
    ),
    build=_build_line_graph,
    enabled=_line_graph_enabled,
))


# ------------------------------------------------------------------------- reverse bonds
def reverse_edge_index(edge_index: np.ndarray, edge_images: np.ndarray) -> np.ndarray:
    """For every bond e = (j → i through image n), the bond (i → j through image −n).

    ``edge_index`` (2, E) rows (source j, target i), ``edge_images`` (E, 3). Returns (E,) int64.
    Raises ``ValueError`` when a bond has no reverse (a neighbour list truncated per atom, e.g.
    CGCNN's 12 nearest within the cutoff, is not symmetric) or more than one.
    """
    source, target = np.asarray(edge_index[0], dtype=np.int64), np.asarray(edge_index[1], dtype=np.int64)
    images = np.asarray(edge_images, dtype=np.int64).reshape(-1, 3)
    n = len(source)
    forward = np.column_stack([target, source, images])  # (centre, neighbour, image) of each bond
    backward = np.column_stack([source, target, -images])  # the same of its reverse
    _, ids = np.unique(np.concatenate([forward, backward]), axis=0, return_inverse=True)
    ids = ids.ravel()
    if len(np.unique(ids[:n])) != n:
        raise StructureError("the neighbour list holds the same bond twice; its reverse is ambiguous")
    edge_of_id = np.full(int(ids.max()) + 1 if n else 0, -1, dtype=np.int64)
    edge_of_id[ids[:n]] = np.arange(n)
    reverse = edge_of_id[ids[n:]]
    missing = reverse < 0
    if missing.any():
        e = int(np.flatnonzero(missing)[0])
        raise StructureError(
            f"{int(missing.sum())} of {n} bonds have no reverse (e.g. bond {e}: atom {source[e]} → {target[e]}, "
            f"image {images[e].tolist()}): the neighbour list is not symmetric; use --graph-strategy knn or "
            "--graph-strategy radius --max-neighbors 0 (every neighbour within the cutoff)")
    return reverse


def _build_reverse_edges(structure: Structure, arrays: Mapping[str, np.ndarray], cfg: GraphConfigLike) -> dict[str, np.ndarray]:
    return {"reverse_edge": reverse_edge_index(arrays["edge_index"], arrays["edge_images"])}


#: Each bond's reverse (CMPNN/OCrystalNet's bond message h(u) − h(v→u)): ``GraphConfig.addons``.
REVERSE_EDGES = "reverse_edges"

register_addon(AddOn(
    name=REVERSE_EDGES,
    version=1,
    fields=(Field("reverse_edge", "edge", np.int32, batch_name="reverse_edge", batch_dtype=np.int64, index_of="edge"),),
    build=_build_reverse_edges,
    enabled=lambda cfg: REVERSE_EDGES in getattr(cfg, "addons", ()),
))


# ------------------------------------------------------------------------- orbital field matrix
def _build_ofm(structure: Structure, arrays: Mapping[str, np.ndarray], cfg: GraphConfigLike) -> dict[str, np.ndarray]:
    from crystalgnn.descriptors.ofm import orbital_field_sums

    return {"ofm_sums": orbital_field_sums(structure)}


#: OCrystalNet's orbital field matrix (``GraphConfig.addons``; the ``ofm`` atom-feature part): per
#: atom the 39 neighbour sums s(c) = Σ_k (θ_k/θ_max) o(k) / (r_k · Bohr) over its Voronoi neighbours
#: (:mod:`crystalgnn.features.ofm`, :mod:`crystalgnn.descriptors.ofm`; first 32: untagged, last 7:
#: period tag). The per-site matrix is rank one, X^c = s(c) o(c)ᵀ, so a model expands it per batch
#: (``crystalgnn.features.ofm.expand_ofm``: 1056, or 1560 with the period tag) instead of the graph
#: storing 1056–1560 floats per atom. Elements beyond Z 94 or a failed tessellation make the
#: structure that item's problem (``StructureError``). r_k is the distance to the neighbour image that
#: shares the Voronoi facet. matminer's ``get_atom_ofms`` divides by pymatgen's minimum-image distance
#: instead: in small cells that is a nearer image of the same site, or 0 when the neighbour is an image
#: of the centre itself (inf/NaN entries); 385 of 500 random mp37k structures differ for that reason
#: (``benchmarks/ofm_speed.py``). ``orbital_field_sums(distance="matminer")`` reproduces it for tests.
OFM = "ofm"

register_addon(AddOn(
    name=OFM,
    version=1,
    fields=(Field("ofm_sums", "node", np.float32, (39,), batch_name="ofm_sums"),),
    build=_build_ofm,
    enabled=lambda cfg: OFM in getattr(cfg, "addons", ()),
))


# ------------------------------------------------------------------------- positional encodings
def _build_positional_encodings(structure: Structure, arrays: Mapping[str, np.ndarray], cfg: GraphConfigLike) -> dict[str, np.ndarray]:
    from crystalgnn.graphs.positional import laplacian_pe, random_walk_pe

    n = len(arrays["atomic_numbers"])
    return {"laplacian_pe": laplacian_pe(arrays["edge_index"], n), "random_walk_pe": random_walk_pe(arrays["edge_index"], n)}


#: CrysToGraph's positional encodings of the atoms (``GraphConfig.addons``): 20 Laplacian
#: eigenvectors of the bond graph (symmetric solver, canonical signs, zero-padded for cells of ≤ 20
#: atoms) and 20 random-walk return probabilities (:mod:`crystalgnn.graphs.positional`).
POSITIONAL_ENCODINGS = "positional_encodings"


def _positional_settings(cfg: GraphConfigLike) -> dict[str, Any]:
    from crystalgnn.graphs.positional import LAPLACIAN_DIMS, RANDOM_WALK_DIMS

    return {"laplacian": LAPLACIAN_DIMS, "random_walk": RANDOM_WALK_DIMS}


register_addon(AddOn(
    name=POSITIONAL_ENCODINGS,
    version=1,
    fields=(
        Field("laplacian_pe", "node", np.float32, (20,), batch_name="laplacian_pe"),
        Field("random_walk_pe", "node", np.float32, (20,), batch_name="random_walk_pe"),
    ),
    build=_build_positional_encodings,
    enabled=lambda cfg: POSITIONAL_ENCODINGS in getattr(cfg, "addons", ()),
    settings=_positional_settings,
))
