"""Tests of the random quasi-1D carbon chain generator (crystalgnn.datasets.chains)."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgnn.datasets import (
    chains_dataset_name,
    generate_chain,
    generate_chains,
    parse_chains_spec,
)
from crystalgnn.datasets.chains import (
    CHAIN_ATOM_RANGES,
    DEFAULT_MIN_DISTANCE,
    DEFAULT_SEPARATION,
    chain_positions,
    min_periodic_distance,
)

TOL = 1e-9


@pytest.fixture(scope="module")
def short_single():
    return generate_chains("short", 1400, "single", seed=0)


@pytest.fixture(scope="module")
def long_single():
    return generate_chains("long", 400, "single", seed=0)


@pytest.fixture(scope="module")
def short_mixed():
    return generate_chains("short", 200, "mixed", seed=1)


@pytest.fixture(scope="module")
def long_mixed():
    return generate_chains("long", 100, "mixed", seed=1)


def _pymatgen_min_distance(structure) -> float:
    """Closest pair under periodic images, computed by pymatgen (independent of our helper)."""
    dm = structure.distance_matrix
    off_diag = dm[~np.eye(len(structure), dtype=bool)]
    return min(float(off_diag.min()) if off_diag.size else np.inf, min(structure.lattice.abc))


# --- single chains -----------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["short_single", "long_single"])
def test_atom_counts_in_range(fixture, request):
    data = request.getfixturevalue(fixture)
    kind = fixture.split("_")[0]
    lo, hi = CHAIN_ATOM_RANGES[kind]
    counts = [len(s) for _, s, _ in data]
    assert min(counts) >= lo and max(counts) < hi
    if kind == "short":
        assert len(data) == 1400
        assert set(counts) == set(range(lo, hi))  # 1400 uniform draws hit all 7 values


@pytest.mark.parametrize("fixture", ["short_single", "long_single", "short_mixed", "long_mixed"])
def test_lattice_convention(fixture, request):
    for id_, s, a in request.getfixturevalue(fixture):
        lat = s.lattice
        assert lat.a == pytest.approx(a, abs=TOL)
        assert lat.b == pytest.approx(100.0) and lat.c == pytest.approx(100.0)
        assert lat.angles == pytest.approx((90.0, 90.0, 90.0))
        # a is the x of the last atom (of the only strand, or of strand 1 of a double chain).
        double = "-mixed-" in id_ and int(id_.rsplit("-", 1)[1]) % 2 == 1
        n = len(s) // 2 if double else len(s)
        assert s.cart_coords[n - 1, 0] == pytest.approx(a, abs=1e-8)
        assert s.frac_coords[n - 1, 0] == pytest.approx(1.0, abs=1e-9)
        assert {str(sp) for sp in s.species} == {"C"}


def _is_double(s, a) -> bool:
    n = len(s) // 2
    return abs(s.cart_coords[n - 1, 0] - a) < 1e-8 and abs(s.cart_coords[-1, 0] - a) < 1e-8


def test_single_chain_follows_pseudocode():
    # Same seed twice: the structure's Cartesian coordinates are exactly the pseudocode positions
    # (this seed's first draw passes the distance check, so nothing is redrawn).
    n = 8
    expected = chain_positions(n, np.random.default_rng(123))
    assert min_periodic_distance(expected, (expected[-1, 0], 100, 100)) >= DEFAULT_MIN_DISTANCE
    s = generate_chain(n, np.random.default_rng(123))
    np.testing.assert_allclose(s.cart_coords, expected, atol=1e-9)
    assert s.lattice.a == pytest.approx(expected[-1, 0])

    assert np.all((expected[0] >= 0) & (expected[0] < 3))
    steps = np.diff(expected, axis=0)  # step k goes to atom j = k + 1
    assert np.all(np.abs(steps) < 3)
    assert np.all(steps[:, 0] >= 0)
    odd, even = steps[0::2], steps[1::2]  # j = 1, 3, ... and j = 2, 4, ...
    assert np.all(odd[:, 1:] <= 0) and np.all(even[:, 1:] >= 0)


@pytest.mark.parametrize("fixture", ["short_single", "long_single", "short_mixed", "long_mixed"])
def test_min_periodic_distance_above_threshold(fixture, request):
    for _, s, a in request.getfixturevalue(fixture):
        assert a >= DEFAULT_MIN_DISTANCE
        assert _pymatgen_min_distance(s) >= DEFAULT_MIN_DISTANCE - 1e-9
        ours = min_periodic_distance(s.cart_coords, s.lattice.abc)
        assert ours == pytest.approx(_pymatgen_min_distance(s), abs=1e-6)


def test_rejection_redraws_overlapping_chains():
    # Find a draw that the pseudocode alone would accept with overlapping atoms ...
    for seed in range(10_000):
        raw = chain_positions(2, np.random.default_rng(seed))
        if min_periodic_distance(raw, (raw[-1, 0], 100, 100)) < DEFAULT_MIN_DISTANCE:
            break
    else:
        pytest.fail("no overlapping 2-atom chain in 10,000 seeds")
    unchecked = generate_chain(2, np.random.default_rng(seed), min_distance=0)
    np.testing.assert_allclose(unchecked.cart_coords, raw, atol=1e-9)
    # ... and check that the default generator redraws it.
    checked = generate_chain(2, np.random.default_rng(seed))
    assert _pymatgen_min_distance(checked) >= DEFAULT_MIN_DISTANCE


def test_min_periodic_distance_sees_boundary_image():
    # The last atom sits at x = a, i.e. on top of x = 0: a first atom at x = 0.1 is 0.1 Å away.
    pos = np.array([[0.1, 0.0, 0.0], [1.5, 1.0, 1.0], [3.0, 0.0, 0.0]])
    assert min_periodic_distance(pos, (3.0, 100, 100)) == pytest.approx(0.1)
    assert min_periodic_distance(pos[:1], (0.3, 100, 100)) == pytest.approx(0.3)  # self image


def test_generate_chain_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        generate_chain(1, rng)
    with pytest.raises(TypeError):
        generate_chain(2.0, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        generate_chain(3, rng, double=True, double_style="triple")  # type: ignore[arg-type]


# --- double chains -----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["copy", "independent"])
@pytest.mark.parametrize("n", [2, 5, 8, 40])
def test_double_chain_shape(n, style):
    s = generate_chain(n, np.random.default_rng(n), double=True, double_style=style)
    assert len(s) == 2 * n
    a = s.lattice.a
    cart = s.cart_coords
    assert cart[n - 1, 0] == pytest.approx(a, abs=1e-8)  # strand 1 ends at x = a
    assert cart[-1, 0] == pytest.approx(a, abs=1e-8)  # strand 2 ends at x = a too
    assert s.lattice.b == pytest.approx(100.0) and s.lattice.c == pytest.approx(100.0)
    assert _pymatgen_min_distance(s) >= DEFAULT_MIN_DISTANCE
    offset = (cart[n:] - cart[:n])[:, 1:].mean(axis=0)
    if style == "copy":  # strand 2 is strand 1 shifted by `separation` along (0, 1, -1)/sqrt2
        partner = np.linalg.norm(cart[n:] - cart[:n], axis=1)
        assert np.all(np.abs(partner - DEFAULT_SEPARATION) <= 0.5 * np.sqrt(3) + 1e-9)
        assert offset == pytest.approx(DEFAULT_SEPARATION / np.sqrt(2) * np.array([1, -1]), abs=0.5)


def test_double_strand1_matches_single_chain_draw():
    # Strand 1 of a double chain is drawn exactly like a single chain (same rng, same order).
    single = generate_chain(6, np.random.default_rng(99))
    double = generate_chain(6, np.random.default_rng(99), double=True)
    if _pymatgen_min_distance(double) >= DEFAULT_MIN_DISTANCE:  # holds for this seed
        np.testing.assert_allclose(double.cart_coords[:6], single.cart_coords, atol=1e-9)
        assert double.lattice.a == pytest.approx(single.lattice.a)


@pytest.mark.parametrize("fixture", ["short_mixed", "long_mixed"])
def test_mixed_is_half_single_half_double(fixture, request):
    data = request.getfixturevalue(fixture)
    lo, hi = CHAIN_ATOM_RANGES[fixture.split("_")[0]]
    for i, (id_, s, a) in enumerate(data):
        assert id_.endswith(f"-mixed-{i:04d}")
        if i % 2 == 1:
            n = len(s) // 2
            assert len(s) == 2 * n and lo <= n < hi
            assert _is_double(s, a)
        else:
            assert lo <= len(s) < hi
    assert sum(i % 2 for i in range(len(data))) == len(data) // 2


# --- datasets: ids, determinism ------------------------------------------------------------------


def test_ids_and_a(short_single):
    assert [i for i, _, _ in short_single[:3]] == [
        "short-single-0000",
        "short-single-0001",
        "short-single-0002",
    ]
    assert len({i for i, _, _ in short_single}) == len(short_single)
    for _, s, a in short_single:
        assert isinstance(a, float) and a == s.lattice.a


def _coords(data):
    return [(i, s.cart_coords.round(12).tolist(), a) for i, s, a in data]


def test_deterministic_per_seed(short_mixed):
    again = generate_chains("short", 200, "mixed", seed=1)
    assert _coords(again) == _coords(short_mixed)
    other = generate_chains("short", 200, "mixed", seed=2)
    assert [a for *_, a in other] != [a for *_, a in short_mixed]
    assert _coords(other) != _coords(short_mixed)


def test_smaller_dataset_is_prefix(short_single):
    assert _coords(generate_chains("short", 50, "single", seed=0)) == _coords(short_single[:50])


def test_generate_chains_validates():
    with pytest.raises(ValueError, match="kind"):
        generate_chains("medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mix"):
        generate_chains("short", 10, "double")  # type: ignore[arg-type]
    assert generate_chains("long", 0) == []


def test_print_a_distribution(short_single, long_single, capsys):
    """Not an assertion: show mean a per n next to 1.5 n (the pseudocode's expectation)."""
    with capsys.disabled():
        for name, data in (("short", short_single), ("long", long_single)):
            n = np.array([len(s) for _, s, _ in data])
            a = np.array([a for *_, a in data])
            print(
                f"\n[{name}] {len(data)} chains: a mean {a.mean():.2f} std {a.std():.2f} "
                f"min {a.min():.2f} max {a.max():.2f} | mean 1.5n = {1.5 * n.mean():.2f}, "
                f"1.5(n-1) = {1.5 * (n.mean() - 1):.2f}"
            )
            if name == "short":
                for k in range(2, 9):
                    sel = a[n == k]
                    print(
                        f"  n={k}: count {sel.size:4d}  mean a {sel.mean():6.2f}  "
                        f"1.5n {1.5 * k:5.2f}"
                    )


# --- names and specs -----------------------------------------------------------------------------


def test_dataset_name():
    assert chains_dataset_name("short", "single") == "chains-short-single"
    assert chains_dataset_name("long", "mixed") == "chains-long-mixed"
    name = chains_dataset_name("long", "mixed", seed=3, n_structures=500)
    assert name == "chains-long-mixed-seed3-n500"
    with pytest.raises(ValueError):
        chains_dataset_name("tiny", "single")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("chains", ("short", "single", 0, 1400)),
        ("chains:short", ("short", "single", 0, 1400)),
        ("chains:long", ("long", "single", 0, 1400)),
        ("chains:short:mixed", ("short", "mixed", 0, 1400)),
        ("chains:long:single", ("long", "single", 0, 1400)),
        ("chains:long:mixed:seed=3:n=500", ("long", "mixed", 3, 500)),
        ("chains:long:n=500:seed=3", ("long", "single", 3, 500)),
        ("chains:mixed", ("short", "mixed", 0, 1400)),
        (" Chains:LONG:Mixed:seed = 7 ", ("long", "mixed", 7, 1400)),
    ],
)
def test_parse_spec(spec, expected):
    got = parse_chains_spec(spec)
    assert (got["kind"], got["mix"], got["seed"], got["n_structures"]) == expected
    assert set(got) == {"kind", "mix", "seed", "n_structures"}


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "chain:short",
        "mp:short",
        "chains:medium",
        "chains:short:double",
        "chains:short:long",
        "chains:mixed:short",
        "chains:short:seed=x",
        "chains:short:seed=1.5",
        "chains:short:n=0",
        "chains:short:seed=-1",
        "chains:short:seed=1:seed=2",
        "chains:short:size=3",
        "chains:short:",
        "chains::short",
        "chains:seed=1:long",
    ],
)
def test_parse_spec_errors(spec):
    with pytest.raises(ValueError) as info:
        parse_chains_spec(spec)
    message = str(info.value)
    assert "chains:long:mixed:seed=3:n=500" in message and "chains:short:mixed" in message


def test_spec_round_trip():
    spec = parse_chains_spec("chains:short:mixed:seed=4:n=6")
    data = generate_chains(**spec)
    assert len(data) == 6 and data[0][0] == "short-mixed-0000"
    assert chains_dataset_name(spec["kind"], spec["mix"], seed=4, n_structures=6) == (
        "chains-short-mixed-seed4-n6"
    )
