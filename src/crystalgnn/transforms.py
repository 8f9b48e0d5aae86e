"""Target transforms: the one place that knows what ``--transform`` does to a target and back.

A transform is applied once, when a reader reads the targets (``load_dataset(..., transform=)``);
the dataset records it (``dataset.meta["transform"]``) and the run's ``DataConfig.transform`` must
be the same (:func:`crystalgnn.io.resolve.resolve_dataset` refuses a mismatch), so ``config.json``
always says what the model learned. Models learn and metrics are computed on the transformed
values; predictions are reported in the units of the data file, with the transformed value in its
own column named by :func:`learned_name` (``log10_<target>``).
"""

from __future__ import annotations

import math

import numpy as np

#: The transforms there are ("none": the target as written).
TRANSFORMS = ("none", "log10")
#: Largest target magnitude (after the transform) a reader accepts. Models and losses compute in
#: float32 (largest 3.4e38): a value beyond 1e18 has a square beyond it, and no property in any
#: unit crystalgnn's users work in comes near it (1e300 is a typo or a missing-value code).
LARGEST_TARGET = 1e18


def check(transform: str | None) -> str:
    """The transform's name (None → "none"); an unknown one raises, listing the known ones."""
    name = "none" if transform is None else str(transform).lower()
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; expected one of {list(TRANSFORMS)}")
    return name


def forward(value: float, transform: str) -> float | None:
    """One target value transformed; None when the transform is undefined there (log10 of ≤ 0)."""
    if transform == "log10":
        return math.log10(value) if value > 0 else None
    return value


def inverse(values: np.ndarray, transform: str) -> np.ndarray:
    """Transformed values (any shape) back in the units of the data, in float64."""
    values = np.asarray(values, dtype=np.float64)
    return 10.0**values if transform == "log10" else values


def learned_name(target: str, transform: str) -> str:
    """Name of a target as the model learns it: ``log10_<target>``, or the target itself."""
    return target if transform == "none" else f"{transform}_{target}"
