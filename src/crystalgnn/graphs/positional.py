r"""Positional encodings of a crystal graph's atoms (CrysToGraph's graph-wise transformer reads them).

Both are computed once per crystal when the graph is built, from its bonds ``edge_index`` (2, E)
(source j → target i, every periodic image counted), and cached with the graph.

Laplacian eigenvectors (``k`` = 20). With :math:`A_{ij}` the number of bonds between atoms i and j
(symmetrized, :math:`A = (B + B^\top)/2` for the directed bond counts B) and D its row sums,

.. math:: L = I - D^{-1/2} A D^{-1/2},

the encoding of atom i is row i of the eigenvectors of the ``k`` smallest eigenvalues after the
first (the trivial one), in increasing order; columns beyond N − 1 are zero (cells of ≤ k atoms).
The reference calls DGL's ``lap_pe`` on its *directed* kNN graph, i.e. ``np.linalg.eig`` of a
non-symmetric matrix, whose eigenvectors can be complex; we symmetrize and use the symmetric
solver ``numpy.linalg.eigh`` (real, orthonormal, stable). An eigenvector's sign is arbitrary: each
column is made canonical (its entry of largest magnitude positive), so the encoding of a permuted
crystal is the permuted encoding wherever the eigenvalue is simple, and the model flips signs at
random while training (``crystalgnn.models.crystograph``) so that it does not learn the
convention. No convention can fix the sign of a vector that a symmetry of the graph maps to its
negative (a supercell's translation does that to half of its new modes), and inside a degenerate
eigenspace (common in symmetric crystals) the basis is the solver's choice: there no encoding of
this kind is permutation-equivariant.

Random-walk encodings (``k`` = 20), DGL's ``random_walk_pe``: with :math:`P = D_{out}^{-1} B`
(B[j, i] = bonds j → i, rows normalized), atom i's encoding is
:math:`(P_{ii}, (P^2)_{ii}, \dots, (P^k)_{ii})`, the probabilities of returning to i after 1…k steps.
It is exactly permutation-equivariant.

Neither is invariant to the choice of cell: a supercell's graph is a different graph (a walk must
return to the same copy of an atom, and the supercell's Laplacian has more low-frequency modes),
so a model that reads them can predict differently for a supercell of the same crystal.
"""

from __future__ import annotations

import numpy as np

#: Widths of the two encodings (CrysToGraph: 20 + 20, mapped by Linear(40 → 256)).
LAPLACIAN_DIMS = 20
RANDOM_WALK_DIMS = 20


def bond_counts(edge_index: np.ndarray, num_atoms: int) -> np.ndarray:
    """(N, N) float64: entry [j, i] the number of bonds j → i (every image counted)."""
    counts = np.zeros((num_atoms, num_atoms))
    np.add.at(counts, (np.asarray(edge_index[0], np.int64), np.asarray(edge_index[1], np.int64)), 1.0)
    return counts


def laplacian_pe(edge_index: np.ndarray, num_atoms: int, k: int = LAPLACIAN_DIMS) -> np.ndarray:
    """(N, k) float64 Laplacian eigenvector encoding (module docstring), zero-padded."""
    counts = bond_counts(edge_index, num_atoms)
    adjacency = (counts + counts.T) / 2.0
    degree = adjacency.sum(axis=1)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    laplacian = np.eye(num_atoms) - scale[:, None] * adjacency * scale[None, :]
    _, vectors = np.linalg.eigh(laplacian)  # ascending eigenvalues
    kept = vectors[:, 1 : k + 1]
    # canonical sign: the entry of largest magnitude is positive (the first such when tied)
    pivot = np.argmax(np.abs(kept), axis=0)
    signs = np.sign(kept[pivot, np.arange(kept.shape[1])])
    kept = kept * np.where(signs == 0, 1.0, signs)
    out = np.zeros((num_atoms, k))
    out[:, : kept.shape[1]] = kept
    return out


def random_walk_pe(edge_index: np.ndarray, num_atoms: int, k: int = RANDOM_WALK_DIMS) -> np.ndarray:
    """(N, k) float64 random-walk return probabilities after 1…k steps (module docstring)."""
    counts = bond_counts(edge_index, num_atoms)
    out_degree = counts.sum(axis=1, keepdims=True)
    step = counts / np.where(out_degree > 0, out_degree, 1.0)
    out = np.empty((num_atoms, k))
    power = step
    for order in range(k):
        out[:, order] = np.diagonal(power)
        if order + 1 < k:
            power = power @ step
    return out
