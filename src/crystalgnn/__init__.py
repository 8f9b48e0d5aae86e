"""crystalgnn: graph neural networks for crystal properties on one fast, cached core.

Python API::

    import crystalgnn
    result = crystalgnn.train("data/my_cifs", run_dir="runs/demo",
                              config=crystalgnn.RunConfig())   # or targets via load_dataset
    model = crystalgnn.load_model("runs/demo")
    frame = model.predict(["new1.cif", "new2.cif"])            # pandas DataFrame, input order
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ALIGNNConfig",
    "CGCNNConfig",
    "CrystalDataset",
    "DatasetError",
    "FeatureConfig",
    "GraphConfig",
    "ModelConfig",
    "DataConfig",
    "RunConfig",
    "TrainConfig",
    "defaults_for",
    "load_dataset",
    "load_model",
    "registry",
    "train",
]

# Heavy modules (torch, lightning, pymatgen) load on first use, so `crystalgnn --help` is instant.
_LAZY = {
    "ALIGNNConfig": "crystalgnn.models.alignn",
    "CGCNNConfig": "crystalgnn.models.cgcnn",
    "registry": "crystalgnn.registry",
    "CrystalDataset": "crystalgnn.data.records",
    "DatasetError": "crystalgnn.errors",
    "FeatureConfig": "crystalgnn.config",
    "GraphConfig": "crystalgnn.config",
    "ModelConfig": "crystalgnn.config",
    "DataConfig": "crystalgnn.config",
    "RunConfig": "crystalgnn.config",
    "TrainConfig": "crystalgnn.config",
    "defaults_for": "crystalgnn.config",
    "load_dataset": "crystalgnn.io",
    "load_model": "crystalgnn.predict",
    "train": "crystalgnn.training.run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"crystalgnn.{name}" else getattr(module, name)
    raise AttributeError(f"module 'crystalgnn' has no attribute {name!r}")


if TYPE_CHECKING:  # pragma: no cover
    from crystalgnn import registry
    from crystalgnn.config import (
        DataConfig,
        FeatureConfig,
        GraphConfig,
        ModelConfig,
        RunConfig,
        TrainConfig,
        defaults_for,
    )
    from crystalgnn.data.records import CrystalDataset
    from crystalgnn.errors import DatasetError
    from crystalgnn.io import load_dataset
    from crystalgnn.models.alignn import ALIGNNConfig
    from crystalgnn.models.cgcnn import CGCNNConfig
    from crystalgnn.predict import load_model
    from crystalgnn.training.run import train
