r"""ALIGNN's line graph: bonds become nodes, pairs of bonds that meet at an atom become edges.

The atom graph has directed edges e = (j → i) (neighbour j, centre i) with bond vector
:math:`\mathbf r_e = \mathbf r_j + \mathbf n L - \mathbf r_i` (from i to j). The line graph has an
edge (a → b) for every pair of bonds a = (j → i), b = (i → k) that share atom i, exactly DGL's
``line_graph`` of the reference (backtracking pairs b = reverse of a included). Its feature is the
cosine of the bond angle at i, between the bonds i→j and i→k:

.. math:: \cos\theta_{jik} = \frac{\mathbf r_a \cdot (-\mathbf r_b)}{|\mathbf r_a|\,|\mathbf r_b|}

(``-r_b`` points from i to k). Messages then flow a → b on the line graph as j → i → k on atoms.

The number of pairs is :math:`\sum_i \deg(i)^2` — about 170 per atom for 12–14 neighbours — so
the line graph, not the atom graph, sets the memory of ALIGNN. It is built once per crystal with
numpy (no Python loop over pairs) and cached with the atom graph.
"""

from __future__ import annotations

import numpy as np


def line_graph(edge_index: np.ndarray, edge_vectors: np.ndarray, num_atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """Line graph of one crystal graph.

    Args:
        edge_index: (2, E) rows (source j, target i).
        edge_vectors: (E, 3) bond vectors r_j + n·L − r_i.
        num_atoms: number of atoms (nodes of the atom graph).

    Returns:
        ``(line_index, cosines)``: (2, T) int64 pairs of edge indices (a, b) with
        target(a) == source(b), and (T,) float64 cosines of the angle at the shared atom.
    """
    source = np.asarray(edge_index[0], dtype=np.int64)
    target = np.asarray(edge_index[1], dtype=np.int64)
    # Edges grouped by their source atom: the b's leaving atom i are one contiguous run.
    by_source = np.argsort(source, kind="stable")
    run_start = np.searchsorted(source[by_source], np.arange(num_atoms), side="left")
    run_length = np.bincount(source, minlength=num_atoms)
    counts = run_length[target]  # pairs each edge a starts: the edges leaving its target atom
    total = int(counts.sum())
    if total == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.float64)
    first = np.repeat(np.arange(len(source), dtype=np.int64), counts)
    # Position of each pair inside its run, then the b edge it names.
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    second = by_source[np.repeat(run_start[target], counts) + offsets]
    vectors = np.asarray(edge_vectors, dtype=np.float64)
    a, b = vectors[first], -vectors[second]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosines = np.clip(np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-12), -1.0, 1.0)
    return np.stack([first, second]), cosines
