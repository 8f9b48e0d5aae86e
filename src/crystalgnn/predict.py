"""Prediction with a trained run: ``load_model(run_dir).predict(structures)``.

The graph and feature settings are restored from the run's ``config.json``, so inputs are built
exactly as in training; outputs keep the input order. This module is the public face; the code
lives in :mod:`crystalgnn.training.predictor` and :mod:`crystalgnn.io.inputs`.
"""

from __future__ import annotations

from crystalgnn.io.inputs import sources_from_inputs
from crystalgnn.training.predictor import Predictions, Predictor, load_model

__all__ = ["Predictor", "Predictions", "load_model", "sources_from_inputs"]
