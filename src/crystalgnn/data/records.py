"""In-memory description of a dataset before any graph is built.

Readers produce a :class:`CrystalDataset`: ids, targets and a :class:`StructureSource` per item.
A source knows how to produce a pymatgen ``Structure`` *lazily* and carries a content key (a hash
of the raw bytes it came from). The graph cache is looked up by that key, so a warm cache never
parses a CIF again, and a changed file gets a new key and is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgnn.errors import Problem
from crystalgnn.structures.source import SourceList, StructureSource


@dataclass
class CrystalDataset:
    """ids, structure sources and an (n_items, n_targets) float array of targets (NaN-free).

    ``problems`` lists the items the reader could not use (bad target, missing file, ...).
    ``targets`` may have zero columns for prediction-only data.
    """

    ids: list[str]
    #: A list, or (from the file readers) a compact :class:`SourceList`.
    sources: Sequence[StructureSource]
    targets: np.ndarray
    target_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.sources) or len(self.ids) != len(self.targets):
            raise ValueError("ids, sources and targets must have the same length")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices: np.ndarray | list[int]) -> CrystalDataset:
        idx = list(int(i) for i in indices)
        return CrystalDataset(
            ids=[self.ids[i] for i in idx],
            sources=self.sources.take(idx) if isinstance(self.sources, SourceList) else [self.sources[i] for i in idx],
            targets=self.targets[idx],
            target_names=list(self.target_names),
            problems=list(self.problems),
            meta=dict(self.meta),
        )
