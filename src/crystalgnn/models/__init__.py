"""Models. One file per model; :func:`build_model` turns a :class:`RunConfig` into a module."""

from __future__ import annotations

import torch
from torch import nn

from crystalgnn.config import RunConfig
from crystalgnn.models.cgcnn import CGCNN
from crystalgnn.models.readout import Readout, ReadoutOutput

__all__ = ["CGCNN", "Readout", "ReadoutOutput", "build_model", "output_width"]


def output_width(cfg: RunConfig) -> int:
    """Number of model outputs: targets for regression, classes for classification."""
    return cfg.model.n_classes if cfg.model.task == "classification" else cfg.model.n_targets


def build_model(cfg: RunConfig, atom_table: torch.Tensor | None = None) -> nn.Module:
    """The model described by ``cfg`` (fresh weights).

    ``atom_table``: the atom feature table when it is already at hand (a saved model carries it
    in its weights), which skips recomputing it from element data.
    """
    from crystalgnn.features.atom import atom_feature_table

    m, f = cfg.model, cfg.features
    if m.name != "cgcnn":
        raise ValueError(f"unknown model {m.name!r}; available: cgcnn")
    table = None
    if f.atom_features == "cgcnn":
        table = atom_table if atom_table is not None else torch.tensor(atom_feature_table("cgcnn"))
    return CGCNN(
        atom_table=table,
        out_features=output_width(cfg),
        atom_fea_len=m.atom_fea_len,
        n_conv=m.n_conv,
        h_fea_len=m.h_fea_len,
        n_h=m.n_h,
        conv=m.conv,
        pooling=m.pooling,
        dropout=m.dropout,
        gaussian=(f.gaussian_start, f.gaussian_stop, f.gaussian_step, f.gaussian_width),
        extra_features=len(m.descriptors),
    )
