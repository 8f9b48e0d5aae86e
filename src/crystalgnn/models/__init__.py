"""Models: one file per model, each registered in :mod:`crystalgnn.registry`; shared layers in
:mod:`crystalgnn.models.blocks`, the shared pooling and head in :mod:`crystalgnn.models.readout`.

:func:`build_model` turns a :class:`~crystalgnn.config.RunConfig` into a module through the
registry, so it knows no model by name.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from crystalgnn import registry
from crystalgnn.config import FeatureConfig, RunConfig
from crystalgnn.models.alignn import ALIGNN, ALIGNNConfig
from crystalgnn.models.blocks import MAX_Z, AtomFeatures
from crystalgnn.models.cgcnn import CGCNN, CGCNNConfig
from crystalgnn.models.readout import Readout, ReadoutOutput

__all__ = ["ALIGNN", "ALIGNNConfig", "CGCNN", "CGCNNConfig", "Readout", "ReadoutOutput", "atom_inputs", "build_model", "output_width"]


def output_width(cfg: RunConfig) -> int:
    """Number of model outputs: targets for regression, classes for classification."""
    return cfg.model.n_classes if cfg.model.task == "classification" else cfg.model.n_targets


def atom_inputs(features: FeatureConfig, atom_table: torch.Tensor | None = None) -> torch.Tensor | AtomFeatures | None:
    """What a model's :class:`~crystalgnn.models.blocks.AtomInput` is built from: ``None`` for a
    learned embedding, CGCNN's element table for ``"cgcnn"``, otherwise an :class:`AtomFeatures` of
    the chosen parts. CFID columns are raw until :meth:`AtomFeatures.fit` standardizes them on the
    training atoms (the model refuses to run before); a ``pretrained:RUN`` part reads the element
    embedding of that pretraining run (frozen: a buffer, never trained).

    ``atom_table``: the element table a saved model already carries in its weights (CGCNN's table,
    or the element-table parts side by side), used instead of computing or reading it again, so a
    saved model never needs element data or a pretraining RUN (which may have moved) to load."""
    from crystalgnn.features.atom import atom_feature_table
    from crystalgnn.features.choices import ELEMENT_PARTS, parse_atom_features

    choice = parse_atom_features(features.atom_features)
    if choice.embedding:
        return None
    if choice.parts == ("cgcnn",):
        return atom_table if atom_table is not None else torch.tensor(atom_feature_table("cgcnn"))
    saved = atom_table is not None and bool(choice.element_parts)
    tables, standardize, widths = [], [], []
    for part in choice.parts:
        width = ELEMENT_PARTS.get(part, 0)  # a site part's width is set below
        table = None
        if part == "cgcnn" and not saved:
            table = atom_feature_table("cgcnn")
        elif part == "cfid" and not saved:
            from crystalgnn.features.cfid import cfid_table

            table = cfid_table(MAX_Z)
        elif part == "pretrained":
            if saved:  # the saved table's columns beyond the other element parts
                width = int(atom_table.shape[1]) - sum(ELEMENT_PARTS[p] for p in choice.element_parts if p != part)
            else:
                table = _pretrained_table(choice.pretrained_run or "")
                width = table.shape[1]
        if table is not None:
            tables.append(table)
        if part in ELEMENT_PARTS:
            standardize.append(np.full(width, part == "cfid"))  # only CFID's columns are fit on the training atoms
        widths.append(width)
    orbital = None
    if "ofm" in choice.parts:
        from crystalgnn.features.ofm import orbital_one_hot_table

        orbital = torch.as_tensor(np.array(orbital_one_hot_table()), dtype=torch.float32)  # a writable copy
        size = 39 if features.ofm_period_tag else 32
        widths[choice.parts.index("ofm")] = size * size + size
    if saved:
        element_table = torch.as_tensor(atom_table, dtype=torch.float32).clone()
    else:
        element_table = torch.as_tensor(np.concatenate(tables, axis=1)) if tables else None
    return AtomFeatures(choice.parts, tuple(widths), element_table,
                        torch.as_tensor(np.concatenate(standardize)) if standardize else None, orbital, features.ofm_period_tag)


def _pretrained_table(run: str) -> np.ndarray:
    """The (MAX_Z + 1, W) element rows of a pretraining run (row Z = element Z)."""
    from crystalgnn.features.pretrained import read_embedding

    table, _ = read_embedding(run)
    if table.shape[0] != MAX_Z + 1:
        raise ValueError(f"pretrained:{run}: its embedding has {table.shape[0]} rows; the atom features need {MAX_Z + 1} "
                         f"(Z 0–{MAX_Z}); pretrain again with this version of crystalgnn")
    return table


def crystal_input_width(cfg: RunConfig) -> int:
    """Crystal-level inputs of the head: the descriptors, and for the residual hybrid also its
    forest's prediction of each target (so the network can lean on the forest, or undo it). The
    blend-plain hybrid's network is the plain one: its descriptors feed only the forest."""
    from crystalgnn.config import FOREST_INPUT_HYBRIDS

    if cfg.model.hybrid == "blend-plain":
        return 0
    return len(cfg.model.descriptors) + (cfg.model.n_targets if cfg.model.hybrid in FOREST_INPUT_HYBRIDS else 0)


def build_model(cfg: RunConfig, atom_table: torch.Tensor | None = None) -> nn.Module:
    """The model described by ``cfg`` (fresh weights).

    ``atom_table``: CGCNN's atom feature table when it is already at hand (a saved model carries
    it in its weights), which skips recomputing it from element data.
    """
    spec = registry.get(cfg.model.name)
    table = atom_inputs(cfg.features, atom_table)
    inputs = registry.BuildInputs(
        out_features=output_width(cfg),
        pooling=cfg.model.pooling,
        dropout=cfg.model.dropout,
        extra_features=crystal_input_width(cfg),
        atom_table=table,
        run=cfg,
    )
    model = spec.build(cfg.model.arch, inputs)
    for attribute in ("readout", "embedding_width"):
        if not hasattr(model, attribute):
            raise TypeError(f"model {spec.name!r} built a {type(model).__name__} without `{attribute}` (see crystalgnn.registry.ModelSpec)")
    return model
