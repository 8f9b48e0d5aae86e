"""The model zoo: models trained here, shipped inside the package, for users without training data.

``crystalgnn predict zoo:NAME my.cif``, ``crystalgnn.load_model("zoo:NAME")``, ``crystalgnn zoo
list``. Each model is a folder beside this file holding what a run directory's prediction needs
(``config.json``, ``model.safetensors`` + ``.json``: weights without pickle, metadata as JSON) and
its card: ``card.json`` (data, split, test metrics, budget, limits) with ``card.md`` the same in
prose, and ``test_ids.csv`` / ``test_predictions.csv``, the held-out items and what the model
predicted for them, so ``crystalgnn evaluate zoo:NAME DATA --test-split`` reproduces the card's
metrics. A deep ensemble's folder holds, instead of the weights, ``members/<k>/`` (each member's
``config.json`` and weights) beside its own ``config.json``: it predicts the members' mean and
their spread (``<target>_std`` beside the prediction; ``pred_<target>_std`` in test_predictions.csv). The folders are made by ``benchmarks/zoo.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).resolve().parent
PREFIX = "zoo:"
#: The files of a zoo model (a run directory's prediction files plus its card).
MODEL_FILES = ("config.json", "model.safetensors", "model.safetensors.json", "card.json", "card.md", "test_ids.csv",
               "test_predictions.csv")
#: The files of a zoo model that is an ensemble (each of ``members/<k>/`` holds ``MEMBER_FILES``).
ENSEMBLE_FILES = ("config.json", "members", "card.json", "card.md", "test_ids.csv", "test_predictions.csv")
MEMBER_FILES = ("config.json", "model.safetensors", "model.safetensors.json")


def is_zoo_name(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def names() -> list[str]:
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "card.json").is_file())


def model_dir(name: str) -> Path:
    """The folder of zoo model ``name`` (with or without ``zoo:``); an unknown name raises,
    listing the models."""
    bare = name[len(PREFIX):] if is_zoo_name(name) else name
    folder = ZOO_DIR / bare
    if not bare or "/" in bare or not (folder / "card.json").is_file():
        raise FileNotFoundError(f"no zoo model {bare!r}; the zoo has: {', '.join(names()) or '(none)'} (crystalgnn zoo list)")
    return folder


def resolve(run_dir: Any) -> Any:
    """``zoo:NAME`` → that model's folder; anything else unchanged."""
    return model_dir(run_dir) if is_zoo_name(run_dir) else run_dir


def card(name: str) -> dict[str, Any]:
    return json.loads((model_dir(name) / "card.json").read_text())


def test_ids(name: str) -> list[str]:
    """The ids of the model's held-out test split."""
    lines = (model_dir(name) / "test_ids.csv").read_text().splitlines()
    return [line.split(",")[0] for line in lines[1:] if line.strip()]
