"""Random quasi-1D carbon chains (Gong et al., Fig. 3b/3d and SI Section 9 / Fig. S3).

These are toy datasets for checking whether a GNN can learn a structure's periodicity. Every
chain is periodic only along ``x``; ``b`` and ``c`` are 100 Å of vacuum, and the target is the
length ``a`` of the single periodic lattice vector.

Single chains (faithful to the pseudocode of SI Section 9)
----------------------------------------------------------
For a chain of ``n`` atoms, with ``U`` a fresh uniform number in [0, 1) drawn for every coordinate
(in the order x, y, z, atom by atom)::

    j == 0      : pos[0] = (3U, 3U, 3U)
    j even      : pos[j] = pos[j-1] + (3U, 3U, 3U)
    j odd       : pos[j] = pos[j-1] + (3U, -3U, -3U)
    a = pos[-1].x ;  b = c = 100
    lattice = Lattice.from_parameters(a, 100, 100, 90, 90, 90)

The positions are used as Cartesian coordinates, unchanged (no wrapping into the cell), and all
atoms are carbon. "3" is twice 1.5 Å, the paper's stand-in for a C-C bond, so ``a`` has mean
``1.5 * n`` (1.5 Å for the first atom's x plus 1.5 Å for each of the ``n - 1`` steps).

Because ``a`` is the x of the last atom, that atom sits exactly on the cell boundary (fractional
x = 1, which is the same point as x = 0). The pseudocode does not rule out two atoms landing on top
of each other under the periodic images (most obviously the first atom, at ``x = 3U``, and the
image of the last atom at ``x = 0``), nor consecutive atoms being almost coincident (all three
``U`` small), nor, for very short chains, an ``a`` so small that an atom meets its own image.
Such structures are unphysical and break neighbour-list construction, so **this module rejects
and redraws** any chain in which two sites (including a site and its own periodic image) are
closer than ``min_distance`` (0.5 Å by default) under the minimum-image convention. The number of
atoms is drawn once and kept, so the distribution of ``n`` is exactly uniform; only the positions
are conditioned on the distance check. With 0.5 Å about 2 % of short and 12 % of long single
chains are redrawn, which moves the mean of ``a`` only slightly.

Double chains (Fig. 3d / Fig. S3; the paper gives no pseudocode - this is our design)
-------------------------------------------------------------------------------------
A double chain of "``n`` atoms" has ``2 n`` atoms in two parallel strands sharing one ``a``
(sites ``0 .. n-1`` are strand 1, ``n .. 2n-1`` strand 2, each in chain order):

1. Strand 1 is a single chain drawn exactly as above; it defines ``a = x`` of its last atom.
2. Strand 2 (default, ``double_style="copy"``) is a copy of strand 1 with its own random
   perturbation: every coordinate of every atom moves by ``U(-jitter, jitter)`` (0.5 Å by
   default, drawn from the same rng right after strand 1), except the x of the last atom, which
   stays at ``x = a`` so that both strands follow the "last atom at x = a" convention.
3. Strand 2 is then shifted by ``separation`` (4 Å by default) along ``(0, 1, -1) / sqrt(2)``.
   The pseudocode moves y and z with the same sign at each step, so a chain zig-zags along the
   ``(0, 1, 1)`` diagonal of the y-z plane; displacing the copy perpendicular to that direction
   keeps the two strands apart best.

The cell is the same orthorhombic ``(a, 100, 100)`` cell; the shift is not a lattice vector, so
the cell stays primitive. The periodicity is that of a single chain while the atom count doubles,
which is the point of the mixed single/double datasets of Fig. S3 (sum pooling can no longer read
``a`` off the atom count). Every atom of strand 2 stays within ``separation`` ± ~0.9 Å of its
partner in strand 1, so the strands are truly parallel, 4 Å apart (within the usual 8 Å graph
cut-off, so a GNN sees them as one double chain, not two isolated chains).

``double_style="independent"`` is the alternative we measured and did not make the default:
strand 2 is a second chain drawn independently with the pseudocode, its x coordinates rescaled by
``a / a2`` (so it also ends at ``x = a`` and its fractional x positions are distributed as for a
single chain), then shifted as in step 3. Because each strand is an independent random walk in
y/z, strands cross often: in ~27 % of long double chains (~6 % of short ones) some pair of atoms
of different strands is closer than 1 Å, versus ~2 % (0.6 %) for the copy style.

The whole double chain goes through the same ``min_distance`` rejection (both strands redrawn
together). Rejection rates at 0.5 Å: ~3 % of short and ~21 % of long double chains.

Datasets
--------
:func:`generate_chains` builds the paper's datasets: ``n`` uniform in [2, 9) ("short") or
[37, 51) ("long"), 1,400 chains each, and "mixed" datasets in which every odd-indexed item is a
double chain (half and half). Item ``i`` is drawn from its own generator, spawned from
``numpy.random.SeedSequence(seed)``, so a dataset is deterministic for a seed, and a smaller
``n_structures`` gives a prefix of a larger one.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from pymatgen.core import Lattice, Structure

__all__ = [
    "CHAIN_ATOM_RANGES",
    "DEFAULT_N_STRUCTURES",
    "VACUUM",
    "chains_dataset_name",
    "chain_positions",
    "generate_chain",
    "generate_chains",
    "min_periodic_distance",
    "parse_chains_spec",
]

ChainKind = Literal["short", "long"]
ChainMix = Literal["single", "mixed"]

#: Half-open ranges ``[lo, hi)`` of the number of atoms per chain (per strand for double chains).
CHAIN_ATOM_RANGES: dict[str, tuple[int, int]] = {"short": (2, 9), "long": (37, 51)}
#: Number of chains in each of the paper's datasets.
DEFAULT_N_STRUCTURES = 1400
#: Length of the non-periodic lattice vectors b and c (vacuum), in Å.
VACUUM = 100.0
#: Step scale of the pseudocode: 3 = 2 * 1.5 Å (1.5 Å approximates the C-C bond length).
STEP = 3.0
#: Default rejection threshold for the closest pair of sites under periodic images, in Å.
DEFAULT_MIN_DISTANCE = 0.5
#: Default distance between the two strands of a double chain, in Å.
DEFAULT_SEPARATION = 4.0
#: Default half-width (Å) of the uniform per-coordinate perturbation of a copied second strand.
DEFAULT_JITTER = 0.5

_KINDS: tuple[str, ...] = ("short", "long")
_MIXES: tuple[str, ...] = ("single", "mixed")
_MAX_TRIES = 10_000


def chain_positions(n_atoms: int, rng: np.random.Generator) -> np.ndarray:
    """Cartesian positions (``n_atoms x 3``, Å) of one chain, following SI Section 9 verbatim.

    Draws ``3 * n_atoms`` uniform numbers from ``rng`` (x, y, z for atom 0, then atom 1, ...).
    No distance check is done here; see :func:`generate_chain`.
    """
    if n_atoms < 1:
        raise ValueError(f"a chain needs at least 1 atom, got n_atoms={n_atoms}")
    steps = STEP * rng.random((n_atoms, 3))
    # Odd atoms move forward in x and backward in y and z ("retraction in the other two dims").
    steps[1::2, 1:] *= -1.0
    return np.cumsum(steps, axis=0)


def min_periodic_distance(cart_coords: np.ndarray, lengths: tuple[float, float, float]) -> float:
    """Smallest distance between two sites of an orthorhombic cell, periodic images included.

    Includes the distance of a site to its own images (the shortest cell length), so the result
    is the distance of the closest pair of distinct points of the infinite periodic structure.
    Exact minimum image for an orthorhombic cell with edge ``lengths`` along x, y, z.
    """
    coords = np.asarray(cart_coords, dtype=float)
    box = np.asarray(lengths, dtype=float)
    best = float(box.min())
    if len(coords) > 1:
        diff = coords[:, None, :] - coords[None, :, :]
        diff -= np.round(diff / box) * box
        dist = np.sqrt((diff**2).sum(axis=-1))
        iu = np.triu_indices(len(coords), k=1)
        best = min(best, float(dist[iu].min()))
    return best


def _draw_positions(
    n_atoms: int,
    rng: np.random.Generator,
    double: bool,
    separation: float,
    double_style: str = "copy",
    jitter: float = DEFAULT_JITTER,
) -> tuple[np.ndarray, float]:
    """One unchecked draw: positions (single, or double with strand 1 first) and ``a``."""
    pos = chain_positions(n_atoms, rng)
    a = float(pos[-1, 0])
    if not double:
        return pos, a
    if double_style == "copy":
        second = pos + rng.uniform(-jitter, jitter, size=pos.shape)
    elif double_style == "independent":
        second = chain_positions(n_atoms, rng)
        a2 = float(second[-1, 0])
        if a2 > 0.0:  # a2 == 0 needs every x step to be exactly 0; the distance check rejects it
            second[:, 0] *= a / a2
    else:
        raise ValueError(f"unknown double_style {double_style!r}; expected 'copy' or 'independent'")
    second[-1, 0] = a  # both strands end exactly at x = a
    second[:, 1] += separation / np.sqrt(2.0)
    second[:, 2] -= separation / np.sqrt(2.0)
    return np.vstack([pos, second]), a


def generate_chain(
    n_atoms: int,
    rng: np.random.Generator,
    double: bool = False,
    *,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    separation: float = DEFAULT_SEPARATION,
    double_style: Literal["copy", "independent"] = "copy",
    jitter: float = DEFAULT_JITTER,
    max_tries: int = _MAX_TRIES,
) -> Structure:
    """One random quasi-1D carbon chain as a pymatgen ``Structure``.

    Args:
        n_atoms: atoms in the chain (per strand when ``double``; the structure then has
            ``2 * n_atoms`` sites).
        rng: source of randomness; the structure is a deterministic function of its state.
        double: build a double chain (two parallel strands sharing ``a``; see the module
            docstring for the construction).
        min_distance: redraw the positions (same ``n_atoms``) until no two sites, periodic images
            included, are closer than this (Å). ``0`` disables the check.
        separation: distance (Å) between the two strands of a double chain.
        double_style: how strand 2 of a double chain is made: ``"copy"`` (strand 1 perturbed by
            ``jitter``) or ``"independent"`` (a second chain rescaled along x to the same ``a``).
        jitter: half-width (Å) of the uniform per-coordinate perturbation of a copied strand.
        max_tries: give up with ``RuntimeError`` after this many rejected draws.

    Returns:
        A carbon-only ``Structure`` on ``Lattice.from_parameters(a, 100, 100, 90, 90, 90)`` with
        ``a`` the x coordinate of the (each strand's) last atom; coordinates are the pseudocode's
        Cartesian positions, not wrapped into the cell.
    """
    if not isinstance(n_atoms, (int, np.integer)) or isinstance(n_atoms, bool):
        raise TypeError(f"n_atoms must be an int, got {type(n_atoms).__name__}")
    if n_atoms < 2:
        raise ValueError(
            f"n_atoms must be >= 2 (with one atom, a = x of that atom is arbitrary), got {n_atoms}"
        )
    if min_distance < 0:
        raise ValueError(f"min_distance must be >= 0, got {min_distance}")
    if double_style not in ("copy", "independent"):
        raise ValueError(f"unknown double_style {double_style!r}; expected 'copy' or 'independent'")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter}")
    for _ in range(max_tries):
        pos, a = _draw_positions(int(n_atoms), rng, double, separation, double_style, jitter)
        if a <= 0.0:
            continue
        if min_distance <= 0 or min_periodic_distance(pos, (a, VACUUM, VACUUM)) >= min_distance:
            lattice = Lattice.from_parameters(a, VACUUM, VACUUM, 90, 90, 90)
            return Structure(lattice, ["C"] * len(pos), pos, coords_are_cartesian=True)
    raise RuntimeError(
        f"no {'double' if double else 'single'} chain of {n_atoms} atoms with all sites at least "
        f"{min_distance} Å apart after {max_tries} draws; lower min_distance"
    )


def _check_kind_mix(kind: str, mix: str) -> None:
    if kind not in CHAIN_ATOM_RANGES:
        raise ValueError(f"unknown chain kind {kind!r}; expected one of {list(_KINDS)}")
    if mix not in _MIXES:
        raise ValueError(f"unknown chain mix {mix!r}; expected one of {list(_MIXES)}")


def generate_chains(
    kind: ChainKind = "short",
    n_structures: int = DEFAULT_N_STRUCTURES,
    mix: ChainMix = "single",
    seed: int = 0,
) -> list[tuple[str, Structure, float]]:
    """A dataset of random chains: ``[(id, structure, a), ...]``.

    Args:
        kind: ``"short"`` (n in [2, 9)) or ``"long"`` (n in [37, 51)), n uniform, per strand.
        n_structures: number of chains (the paper uses 1,400).
        mix: ``"single"`` (only single chains) or ``"mixed"`` (item ``i`` is a double chain when
            ``i`` is odd, so half of the dataset, rounded down, is double chains).
        seed: dataset seed. Item ``i`` uses its own generator spawned from
            ``SeedSequence(seed)``, so results are reproducible and the first ``k`` items do not
            depend on ``n_structures``.

    Returns:
        Tuples ``(id, structure, a)`` with ids ``f"{kind}-{mix}-{i:04d}"`` (e.g.
        ``"short-single-0000"``; wider indices when ``n_structures > 10000``) and ``a`` in Å,
        equal to ``structure.lattice.a``.
    """
    _check_kind_mix(kind, mix)
    if n_structures < 0:
        raise ValueError(f"n_structures must be >= 0, got {n_structures}")
    lo, hi = CHAIN_ATOM_RANGES[kind]
    width = max(4, len(str(max(n_structures - 1, 0))))
    children = np.random.SeedSequence(seed).spawn(n_structures)
    out: list[tuple[str, Structure, float]] = []
    for i, child in enumerate(children):
        rng = np.random.default_rng(child)
        n_atoms = int(rng.integers(lo, hi))
        double = mix == "mixed" and i % 2 == 1
        structure = generate_chain(n_atoms, rng, double=double)
        out.append((f"{kind}-{mix}-{i:0{width}d}", structure, float(structure.lattice.a)))
    return out


def chains_dataset_name(
    kind: ChainKind,
    mix: ChainMix = "single",
    *,
    seed: int = 0,
    n_structures: int = DEFAULT_N_STRUCTURES,
) -> str:
    """File-system friendly dataset name, e.g. ``"chains-short-single"``.

    A non-default ``seed`` or ``n_structures`` is appended (``"chains-long-mixed-seed3-n500"``) so
    that different datasets never share a name (and hence a cache or run directory).
    """
    _check_kind_mix(kind, mix)
    name = f"chains-{kind}-{mix}"
    if seed != 0:
        name += f"-seed{seed}"
    if n_structures != DEFAULT_N_STRUCTURES:
        name += f"-n{n_structures}"
    return name


_SPEC_HELP = (
    "valid forms: 'chains:short', 'chains:long', 'chains:short:mixed', 'chains:long:single', "
    "optionally followed by ':seed=INT' and/or ':n=INT' "
    "(e.g. 'chains:long:mixed:seed=3:n=500'); defaults are short, single, seed=0, n=1400"
)
_INT = re.compile(r"[+-]?\d+")


def parse_chains_spec(spec: str) -> dict[str, Any]:
    """Parse a dataset spec like ``"chains:long:mixed:seed=3:n=500"``.

    Grammar: ``chains[:KIND][:MIX][:seed=INT][:n=INT]`` with KIND in {short, long}, MIX in
    {single, mixed}; KIND must come before MIX, the ``key=value`` options may come in any order
    after them, each at most once. Case-insensitive; surrounding spaces are ignored.

    Returns:
        ``{"kind": ..., "mix": ..., "seed": int, "n_structures": int}`` - the keyword arguments of
        :func:`generate_chains`. Defaults: short, single, 0, 1400.

    Raises:
        ValueError: on anything else, with the list of valid forms.
    """
    if not isinstance(spec, str):
        raise ValueError(f"chains spec must be a string, got {type(spec).__name__}; {_SPEC_HELP}")

    def bad(why: str) -> ValueError:
        return ValueError(f"bad chains dataset spec {spec!r}: {why}; {_SPEC_HELP}")

    parts = [p.strip() for p in spec.strip().split(":")]
    if not parts or parts[0].lower() != "chains":
        raise bad("it must start with 'chains'")
    result: dict[str, Any] = {
        "kind": "short",
        "mix": "single",
        "seed": 0,
        "n_structures": DEFAULT_N_STRUCTURES,
    }
    seen: set[str] = set()
    for part in parts[1:]:
        token = part.lower()
        if not token:
            raise bad("empty field (doubled or trailing ':')")
        if "=" in token:
            key, _, value = (s.strip() for s in token.partition("="))
            aliases = {"seed": "seed", "n": "n_structures", "n_structures": "n_structures"}
            if key not in aliases:
                raise bad(f"unknown option {key!r} (options: seed=INT, n=INT)")
            field = aliases[key]
            if field in seen:
                raise bad(f"option {key!r} given twice")
            if not _INT.fullmatch(value):
                raise bad(f"{key} must be an integer, got {value!r}")
            number = int(value)
            if field == "n_structures" and number < 1:
                raise bad(f"n must be >= 1, got {number}")
            if field == "seed" and number < 0:
                raise bad(f"seed must be >= 0, got {number}")
            result[field] = number
            seen.add(field)
        elif token in _KINDS:
            if "kind" in seen or "mix" in seen or seen & {"seed", "n_structures"}:
                raise bad(f"kind {token!r} must come first, and only once")
            result["kind"] = token
            seen.add("kind")
        elif token in _MIXES:
            if "mix" in seen or seen & {"seed", "n_structures"}:
                raise bad(f"mix {token!r} must come before the seed/n options, and only once")
            result["mix"] = token
            seen.add("mix")
        else:
            raise bad(f"unknown field {part!r}")
    return result
