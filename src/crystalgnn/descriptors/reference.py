"""matminer 0.10.1 as the descriptor bank's oracle: the reference featurizers with the settings
that :mod:`crystalgnn.descriptors.bank` reproduces. Used by the tests and the speed benchmark;
slow (a Voronoi tessellation per site per featurizer), never on a hot path."""

from __future__ import annotations

import time
import warnings

import numpy as np


def matminer_descriptors(structure) -> tuple[np.ndarray, dict[str, float], dict[str, str]]:
    """The reference values (NaN where a featurizer raised), seconds per featurizer, errors."""
    from matminer.featurizers.site import (
        AverageBondAngle,
        AverageBondLength,
        CoordinationNumber,
    )
    from matminer.featurizers.structure import (
        DensityFeatures,
        GlobalSymmetryFeatures,
        SiteStatsFingerprint,
        StructuralComplexity,
        StructuralHeterogeneity,
    )
    from pymatgen.analysis.local_env import VoronoiNN

    from crystalgnn.descriptors import (
        CRYSTAL_SYSTEMS,
        DESCRIPTOR_NAMES,
        LOCAL_DESCRIPTORS,
    )

    stats = ("mean", "std_dev")

    def niggli(s):
        r = s.get_reduced_structure("niggli")
        return [len(r), *sorted(r.lattice.abc, reverse=True), *sorted(r.lattice.angles, reverse=True)]

    def symmetry(s):
        number, system = GlobalSymmetryFeatures(["spacegroup_num", "crystal_system"]).featurize(s)
        return [number, CRYSTAL_SYSTEMS.index(system)]

    blocks = [
        ("StructuralHeterogeneity", LOCAL_DESCRIPTORS[:9], lambda s: StructuralHeterogeneity().featurize(s)),
        ("AverageBondLength", ("mean_avg_bond_len", "std_avg_bond_len"),
         lambda s: SiteStatsFingerprint(AverageBondLength(VoronoiNN()), stats=stats).featurize(s)),
        ("AverageBondAngle", ("mean_avg_bond_ang", "std_avg_bond_ang"),
         lambda s: SiteStatsFingerprint(AverageBondAngle(VoronoiNN()), stats=stats).featurize(s)),
        ("CoordinationNumber", ("mean_CN_Voronoi", "std_CN_Voronoi"),
         lambda s: SiteStatsFingerprint(CoordinationNumber.from_preset("VoronoiNN"), stats=stats).featurize(s)),
        ("DensityFeatures", ("density", "vpa", "packing_frac"), lambda s: DensityFeatures().featurize(s)),
        ("StructuralComplexity", ("struct_comp_atom", "struct_comp_cell"), lambda s: StructuralComplexity(symprec=0.1).featurize(s)),
        ("niggli", ("natoms", "a", "b", "c", "alpha", "beta", "gamma"), niggli),
        ("GlobalSymmetryFeatures", ("space_group_num", "crys_sys"), symmetry),
    ]
    values = dict.fromkeys(DESCRIPTOR_NAMES, np.nan)
    seconds: dict[str, float] = {}
    errors: dict[str, str] = {}
    for label, names, fn in blocks:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = fn(structure)
            values.update({n: float(v) for n, v in zip(names, out)})
        except Exception as err:  # noqa: BLE001 - a reference failure is a NaN, as matminer's ignore_errors
            errors[label] = f"{type(err).__name__}: {err}"[:200]
        seconds[label] = time.perf_counter() - start
    return np.array([values[n] for n in DESCRIPTOR_NAMES]), seconds, errors
