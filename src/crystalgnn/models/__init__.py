"""Models: one file per model, each registered in :mod:`crystalgnn.registry`; shared layers in
:mod:`crystalgnn.models.blocks`, the shared pooling and head in :mod:`crystalgnn.models.readout`.

:func:`build_model` turns a :class:`~crystalgnn.config.RunConfig` into a module through the
registry, so it knows no model by name.
"""

from __future__ import annotations

import torch
from torch import nn

from crystalgnn import registry
from crystalgnn.config import RunConfig
from crystalgnn.models.alignn import ALIGNN, ALIGNNConfig
from crystalgnn.models.cgcnn import CGCNN, CGCNNConfig
from crystalgnn.models.readout import Readout, ReadoutOutput

__all__ = ["ALIGNN", "ALIGNNConfig", "CGCNN", "CGCNNConfig", "Readout", "ReadoutOutput", "build_model", "output_width"]


def output_width(cfg: RunConfig) -> int:
    """Number of model outputs: targets for regression, classes for classification."""
    return cfg.model.n_classes if cfg.model.task == "classification" else cfg.model.n_targets


def build_model(cfg: RunConfig, atom_table: torch.Tensor | None = None) -> nn.Module:
    """The model described by ``cfg`` (fresh weights).

    ``atom_table``: the atom feature table when it is already at hand (a saved model carries it
    in its weights), which skips recomputing it from element data.
    """
    from crystalgnn.features.atom import atom_feature_table

    spec = registry.get(cfg.model.name)
    table = None
    if cfg.features.atom_features == "cgcnn":
        table = atom_table if atom_table is not None else torch.tensor(atom_feature_table("cgcnn"))
    inputs = registry.BuildInputs(
        out_features=output_width(cfg),
        pooling=cfg.model.pooling,
        dropout=cfg.model.dropout,
        extra_features=len(cfg.model.descriptors),
        atom_table=table,
        run=cfg,
    )
    model = spec.build(cfg.model.arch, inputs)
    for attribute in ("readout", "embedding_width"):
        if not hasattr(model, attribute):
            raise TypeError(f"model {spec.name!r} built a {type(model).__name__} without `{attribute}` (see crystalgnn.registry.ModelSpec)")
    return model
