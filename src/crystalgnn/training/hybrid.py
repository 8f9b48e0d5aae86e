"""Descriptor hybridization (Gong et al.) and warm starts: which descriptors, their statistics,
and copying weights from an earlier run.

* Eq. 14 ("de-CGCNN", ``hybrid="end-to-end"``): pooled representation ⊕ standardized
  descriptors → head, all trained together, so the descriptors shape the representation.
* Eq. S5 ("CGCNN+descriptors", ``hybrid="frozen"``): the plain model is trained first; its
  encoder is then frozen and only a new head on representation ⊕ descriptors is trained.

By default every descriptor of the bank except the space-group number is used, as in the paper
("all descriptors in Table 3 except space group number"); see :mod:`crystalgnn.descriptors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crystalgnn.training.checkpoint import load_weights, upgrade_state_dict

#: Descriptors left out of hybridization by default (the paper leaves out the space group number).
EXCLUDED_BY_DEFAULT = ("space_group_num",)


def default_hybrid_descriptors() -> tuple[str, ...]:
    from crystalgnn.descriptors import DESCRIPTOR_NAMES

    return tuple(n for n in DESCRIPTOR_NAMES if n not in EXCLUDED_BY_DEFAULT)


def resolve_descriptor_names(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"default"``/``"all"``/None-like → the default set; ``"a,b"`` or a list → those names,
    checked against the bank (an unknown name raises, listing the valid ones)."""
    from crystalgnn.descriptors import DESCRIPTOR_NAMES

    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "default", "all")):
        return default_hybrid_descriptors() if spec != "all" else tuple(DESCRIPTOR_NAMES)
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    unknown = [n for n in names if n not in DESCRIPTOR_NAMES]
    if unknown:
        raise ValueError(f"unknown descriptor(s) {unknown}; available: {', '.join(DESCRIPTOR_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"descriptor list {names} repeats a name")
    return tuple(names)


def descriptor_statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and standard deviation per column (a column that is all NaN: 0 and 1)."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    count = finite.sum(0)
    filled = np.where(finite, values, 0.0)
    mean = np.divide(filled.sum(0), count, out=np.zeros(values.shape[1]), where=count > 0)
    var = np.divide((np.where(finite, values - mean, 0.0) ** 2).sum(0), count, out=np.ones(values.shape[1]), where=count > 0)
    return mean, np.sqrt(var)


def initialize_from(module: torch.nn.Module, run_dir: str | Path, skip_readout: bool = False) -> list[str]:
    """Copy every tensor of ``run_dir/model.safetensors`` whose name and shape match ``module``.

    ``skip_readout``: keep the new head (and its descriptor statistics) as they are. Returns the
    names copied. Target and descriptor statistics are not copied: they belong to this run's data.
    """
    path = Path(run_dir) / "model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: init_from must be a finished crystalgnn run directory")
    from crystalgnn import registry
    from crystalgnn.training.predictor import load_run_config

    source, _ = load_weights(path)
    source_cfg, layout = load_run_config(run_dir)
    source = upgrade_state_dict(source, layout, dict(registry.get(source_cfg.model.name).legacy_state_keys),
                                source_cfg.model.task == "classification")
    own = module.state_dict()
    copied = []
    for name, tensor in source.items():
        if skip_readout and name.startswith("model.readout."):
            continue
        if name.startswith("model.readout.extra_") or name.startswith("objective."):
            continue  # target and descriptor statistics come from this run's training split
        if name in own and own[name].shape == tensor.shape:
            own[name] = tensor.to(own[name].dtype)
            copied.append(name)
    if not any(n.startswith("model.") and not n.startswith("model.readout.") for n in copied):
        raise ValueError(f"no encoder weights of {path} fit this model: were both trained with the same model settings?")
    module.load_state_dict(own)
    return copied
