"""Prediction with a trained run: ``load_model(run_dir).predict(structures)``.

The graph and feature settings are restored from the run's ``config.json``, so inputs are built
exactly as in training; outputs keep the input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from crystalgnn.data.records import CrystalDataset, StructureSource, structure_key
from crystalgnn.errors import Problem
from crystalgnn.training.predictor import Predictions, Predictor, load_model


def sources_from_inputs(inputs: Any, ids: Sequence[str] | None = None) -> CrystalDataset:
    """A target-less dataset from structures, ASE atoms, file paths or folders (order kept).

    Paths go through :func:`crystalgnn.io.load_dataset` (a folder's files in name order, or its
    ``id_prop.csv`` ids), so empty files and duplicate ids are reported as for training data.
    """
    from pymatgen.core import Structure

    from crystalgnn.io import load_dataset

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


__all__ = ["Predictor", "Predictions", "load_model", "sources_from_inputs"]
