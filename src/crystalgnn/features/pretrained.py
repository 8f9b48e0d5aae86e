"""The element embedding learned by masked-atom pretraining (``crystalgnn pretrain``), read as an
element table for the ``pretrained:RUN`` atom-feature part.

``RUN/embedding.safetensors`` holds ``embedding``, a (101, W) float32 table whose row Z is the
learned vector of element Z (row 0, no element, is zero), and ``mask_token`` (W,), the vector of
the mask token (not an element; kept for completeness). Its JSON metadata (in the safetensors
header and in ``embedding.safetensors.json`` beside it) says which elements the pretraining data
held (``elements_seen``): the rows of the others are the embedding's random initial values, never
trained (they are kept, so any element 1–100 has a vector, but they carry no information).
Reading never executes code (safetensors + JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

#: The file ``crystalgnn pretrain`` writes into its run directory.
EMBEDDING_FILE = "embedding.safetensors"
#: Header key of the JSON metadata (the same as :mod:`crystalgnn.training.checkpoint`'s).
HEADER_KEY = "crystalgnn"


def embedding_path(run: str | Path) -> Path:
    """``RUN/embedding.safetensors``; raises ``FileNotFoundError`` naming the path and what to do."""
    run = Path(run)
    path = run / EMBEDDING_FILE
    if not run.is_dir():
        raise FileNotFoundError(f"pretrained:{run}: no such run directory ({run.resolve()}); "
                                f"create it with `crystalgnn pretrain DATA --run-dir {run}`")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained:{run}: {path} not found (an unfinished or other kind of run?); "
                                f"run `crystalgnn pretrain DATA --run-dir {run}` first")
    return path


def read_embedding(run: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The (101, W) element table of a pretraining run (row Z = element Z) and its metadata."""
    from safetensors import safe_open

    path = embedding_path(run)
    with safe_open(str(path), framework="np") as handle:
        if "embedding" not in handle.keys():
            raise ValueError(f"{path} holds no 'embedding' tensor; was it written by `crystalgnn pretrain`?")
        table = np.asarray(handle.get_tensor("embedding"), dtype=np.float32)
        raw = (handle.metadata() or {}).get(HEADER_KEY)
    if table.ndim != 2 or table.shape[0] < 2:
        raise ValueError(f"{path}: 'embedding' has shape {table.shape}; expected (Z_max + 1, width)")
    return table, ({} if raw is None else json.loads(raw))
