"""Models. One file per model; :func:`build_model` turns a :class:`RunConfig` into a module."""

from __future__ import annotations

import torch
from torch import nn

from crystalgnn.config import MODEL_NAMES, RunConfig
from crystalgnn.models.alignn import ALIGNN
from crystalgnn.models.cgcnn import CGCNN
from crystalgnn.models.readout import Readout, ReadoutOutput

__all__ = ["ALIGNN", "CGCNN", "Readout", "ReadoutOutput", "build_model", "output_width"]


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
    if m.name not in MODEL_NAMES:
        raise ValueError(f"unknown model {m.name!r}; available: {', '.join(MODEL_NAMES)}")
    table = None
    if f.atom_features == "cgcnn":
        table = atom_table if atom_table is not None else torch.tensor(atom_feature_table("cgcnn"))
    if m.name == "alignn":
        a = m.alignn
        return ALIGNN(
            atom_table=table,
            out_features=output_width(cfg),
            alignn_layers=a.alignn_layers,
            gcn_layers=a.gcn_layers,
            hidden_features=a.hidden_features,
            embedding_features=a.embedding_features,
            edge_bins=a.edge_bins,
            edge_max=a.edge_max,
            angle_bins=a.angle_bins,
            norm=a.norm,
            pooling=m.pooling,
            head_layers=a.head_layers,
            dropout=m.dropout,
            extra_features=len(m.descriptors),
            descriptor_head_layers=a.descriptor_head_layers,
        )
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
