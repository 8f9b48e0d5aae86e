"""CGCNN physics invariances, pooling behaviour and the NaCl/KCl example of the CGCNN SM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystalgnn.config import FeatureConfig, GraphConfig, ModelConfig, RunConfig
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.models import build_model
from crystalgnn.models.blocks import GaussianExpansion, RBFExpansion
from crystalgnn.models.cgcnn import CGCNN, CGCNNConfig, LinearConv
from crystalgnn.structures.source import StructureSource, structure_key


def _batch(structures, cfg: GraphConfig = GraphConfig()):
    sources = [StructureSource(key=structure_key(s), structure=s) for s in structures]
    store, ok, problems = build_graphs([str(i) for i in range(len(structures))], sources, cfg, None, workers=1, progress=False)
    assert ok.all(), problems
    return store.collate(np.arange(len(structures)))


def _model(pooling="mean", conv="gated", atom_features="cgcnn"):
    torch.manual_seed(0)
    model = build_model(RunConfig(features=FeatureConfig(atom_features=atom_features), model=ModelConfig(pooling=pooling, arch=CGCNNConfig(conv=conv))))
    # Non-trivial batch-norm statistics so that eval mode is not an identity map.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


# A low-symmetry ternary cell: no ties among the 12 nearest neighbours, so the graph is unique.
BASE = Structure(
    Lattice.from_parameters(4.1, 4.9, 5.6, 81, 97, 104),
    ["Li", "Fe", "O", "O", "P"],
    [[0.02, 0.03, 0.01], [0.51, 0.47, 0.55], [0.26, 0.71, 0.33], [0.77, 0.19, 0.82], [0.38, 0.12, 0.64]],
)


@pytest.mark.parametrize("conv,atom_features", [("gated", "cgcnn"), ("linear", "cgcnn"), ("gated", "embedding")])
def test_permutation_invariance(conv, atom_features):
    model = _model(conv=conv, atom_features=atom_features)
    order = [3, 0, 4, 1, 2]
    permuted = Structure(BASE.lattice, [BASE[i].species for i in order], [BASE[i].frac_coords for i in order])
    with torch.no_grad():
        a = model(_batch([BASE])).prediction
        b = model(_batch([permuted])).prediction
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_rotation_and_translation_invariance():
    model = _model()
    from pymatgen.core.operations import SymmOp

    moved = BASE.copy()
    moved.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 37.0, translation_vec=[0.3, -1.2, 2.0]))
    with torch.no_grad():
        torch.testing.assert_close(model(_batch([BASE])).prediction, model(_batch([moved])).prediction, rtol=1e-5, atol=1e-5)


def test_supercell_mean_same_sum_eightfold():
    supercell = BASE * (2, 2, 2)
    mean_model, sum_model = _model("mean"), _model("sum")
    with torch.no_grad():
        m1, m8 = mean_model(_batch([BASE])), mean_model(_batch([supercell]))
        s1, s8 = sum_model(_batch([BASE])), sum_model(_batch([supercell]))
    torch.testing.assert_close(m1.prediction, m8.prediction, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m1.embedding, m8.embedding, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(8 * s1.embedding, s8.embedding, rtol=1e-4, atol=1e-4)
    # Eq. 13 sums the head's per-atom outputs: the prediction itself is extensive.
    torch.testing.assert_close(8 * s1.prediction, s8.prediction, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(s1.prediction, s8.prediction, atol=1e-3)


def test_site_pooling_contributions_average_to_prediction():
    model = _model("site")
    batch = _batch([BASE, BASE * (1, 1, 2)])
    with torch.no_grad():
        out = model(batch)
    assert out.site_contributions.shape == (batch.num_nodes, 1)
    per_crystal = [out.site_contributions[batch.batch == g].mean(0) for g in range(2)]
    torch.testing.assert_close(torch.stack(per_crystal), out.prediction)
    torch.testing.assert_close(out.prediction[0], out.prediction[1], rtol=1e-4, atol=1e-5)


def test_batching_does_not_mix_crystals():
    model = _model()
    other = Structure(Lattice.cubic(4.2), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with torch.no_grad():
        alone = model(_batch([BASE])).prediction
        together = model(_batch([other, BASE, other])).prediction
    torch.testing.assert_close(alone[0], together[1], rtol=1e-5, atol=1e-5)


def test_nacl_kcl_example_of_the_cgcnn_sm():
    """SM Eqs. S1–S10: one linear convolution (Eq. 4, g = identity, b = 0, no bond features) and
    mean pooling. Conventional 8-atom NaCl (6 neighbours) and 8-atom CsCl-type KCl (8 neighbours)
    as in Fig. S1; v_Cl, v_Na, v_K are one-hot (S1), W_c = (w_c1, w_c2, w_c3), W_s likewise."""
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    kcl = Structure(Lattice.cubic(3.15), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) * (2, 1, 1)
    kcl = kcl * (1, 2, 2)  # 8 K + 8 Cl; the example's conclusion is per-atom so the cell size is free
    graph = GraphConfig(cutoff=3.0)  # first shell only: 2.82 Å (NaCl), 2.73 Å (CsCl-type KCl)

    table = torch.zeros(101, 3)
    table[17, 0], table[11, 1], table[19, 2] = 1.0, 1.0, 1.0  # Cl, Na, K
    w_c = torch.tensor([0.7, -0.3, 0.2])
    w_s = torch.tensor([0.1, 0.5, -0.4])
    model = CGCNN(table, atom_fea_len=3, n_conv=0, pooling="mean")
    conv = LinearConv(3, model.expansion.num_features, activation=torch.nn.Identity())
    with torch.no_grad():
        conv.neighbour_weight.weight.zero_()
        conv.neighbour_weight.weight[0, :3] = w_c  # bond-feature columns stay 0: atoms only
        conv.self_weight.weight.zero_()
        conv.self_weight.weight[0, :] = w_s
        conv.self_weight.bias.zero_()

    def pooled(structure):
        batch = _batch([structure], graph)
        x = table[batch.z]  # atom vectors of S1 (no embedding layer in the example)
        with torch.no_grad():
            v = conv(x, batch.edge_index, model.expansion(batch.edge_dist))[:, 0]
        return v.mean().item(), np.bincount(batch.edge_index[1].numpy())

    v_nacl, cn_nacl = pooled(nacl)
    v_kcl, cn_kcl = pooled(kcl)
    assert set(cn_nacl) == {6} and set(cn_kcl) == {8}
    assert v_nacl == pytest.approx((3 * w_c[0] + 3 * w_c[1] + 0.5 * w_s[0] + 0.5 * w_s[1]).item(), rel=1e-6)  # S7
    assert v_kcl == pytest.approx((4 * w_c[0] + 4 * w_c[2] + 0.5 * w_s[0] + 0.5 * w_s[2]).item(), rel=1e-6)  # S8
    # S9/S10: weights exist that give +1 for NaCl and -1 for KCl (a linear system in W_c, W_s).
    rows = np.array([[3, 3, 0, 0.5, 0.5, 0], [4, 0, 4, 0.5, 0, 0.5]])
    w, *_ = np.linalg.lstsq(rows, np.array([1.0, -1.0]), rcond=None)
    np.testing.assert_allclose(rows @ w, [1.0, -1.0], atol=1e-12)


def test_distance_bases_hold_no_subnormal_floats():
    """Gaussians far from a centre would be subnormal float32 values (< 1.2e-38), which slow CPU
    matrix products several-fold; they are exactly 0 instead, and every normal value is the plain
    formula's (CGCNN's basis: exp(-(d - mu)^2 / w^2); ALIGNN's: exp(-gamma (d - mu)^2))."""
    distances = torch.linspace(0.0, 8.0, 4001)
    for basis, formula in ((GaussianExpansion(), lambda d, mu: torch.exp(-((d - mu) ** 2) / 0.2**2)),
                           (RBFExpansion(0.0, 8.0, 80), lambda d, mu: torch.exp(-(79 / 8.0) * (d - mu) ** 2))):
        values = basis(distances)
        plain = formula(distances.unsqueeze(-1), basis.centers)
        subnormal = (plain > 0) & (plain < torch.finfo(torch.float32).tiny)
        assert subnormal.any()  # the plain formula does make them on this range
        assert not ((values > 0) & (values < torch.finfo(torch.float32).tiny)).any()
        assert (values[subnormal] == 0).all()
        kept = plain > 1e-37  # just above the subnormal range every value is the formula's, bit for bit
        assert torch.equal(values[kept], plain[kept]) and (values[~kept] <= plain[~kept]).all()
