"""Inputs to predict: structures, ASE atoms, file paths or folders, as a target-less dataset."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import Problem
from crystalgnn.io.load import load_dataset
from crystalgnn.structures.source import StructureSource, structure_key


def sources_from_inputs(inputs: Any, ids: Sequence[str] | None = None) -> CrystalDataset:
    """A target-less dataset from structures, ASE atoms, file paths or folders (order kept).

    Paths go through :func:`crystalgnn.io.load_dataset` (a folder's files in name order, or its
    ``id_prop.csv`` ids), so empty files and duplicate ids are reported as for training data.
    """
    from pymatgen.core import Structure

    items: Iterable[Any] = [inputs] if isinstance(inputs, (str, Path, Structure)) else inputs
    names: list[str] = []
    sources: list[StructureSource] = []
    problems: list[Problem] = []
    for k, item in enumerate(items):
        if isinstance(item, (str, Path)):
            if not Path(item).exists():
                raise FileNotFoundError(f"structure file or folder {item} does not exist")
            part = load_dataset(item, targets=[])
            names += part.ids
            sources += part.sources
            problems += part.problems
            continue
        if not isinstance(item, Structure):
            from pymatgen.io.ase import AseAtomsAdaptor

            item = AseAtomsAdaptor.get_structure(item)
        names.append(str(k))
        sources.append(StructureSource(key=structure_key(item), structure=item))
    if ids is not None:
        if len(ids) != len(sources):
            raise ValueError(f"{len(ids)} ids for {len(sources)} structures")
        names = [str(i) for i in ids]
    return CrystalDataset(names, sources, np.zeros((len(sources), 0)), [], problems=problems)
