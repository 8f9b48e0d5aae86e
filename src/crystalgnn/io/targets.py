"""Target values and ids of the items being read: checked, converted and collected.

Every reader hands its items to a :class:`_Collector`, which keeps ids unique, turns each target
into a float (or reports why it cannot), applies the transform and builds the
:class:`~crystalgnn.data.records.CrystalDataset` with the problems found on the way.
:func:`_select` picks the requested target columns out of those a layout offers.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgnn import transforms
from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import Problem
from crystalgnn.structures.source import SourceList, StructureSource


def _format_id(value: Any) -> str | None:
    """Item id as a string (``3.0`` → ``"3"``); ``None`` for missing ids."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return None
        if float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    text = str(value).strip()
    return text or None


def _place(where: str | int) -> str:
    return f"line {where}" if isinstance(where, int) else where


_MISSING_WORDS = {"none", "null", "na", "n/a", "nan", "missing", "-"}


#: Class labels written as words: read as 1 / 0.
_BOOLEAN_WORDS = {"true": 1.0, "false": 0.0}


def _to_float(value: Any) -> tuple[float | None, str | None]:
    """(number, None) or (None, kind) where kind is 'missing' | 'not_number' | 'nan' | 'inf'."""
    if value is None:
        return None, "missing"
    if isinstance(value, (bool, np.bool_)):
        return float(value), None
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
    else:
        text = str(value).strip()
        if text.lower() in _BOOLEAN_WORDS:  # class labels written as True/False (pandas, MP's is_metal)
            return _BOOLEAN_WORDS[text.lower()], None
        try:
            v = float(text)
        except ValueError:
            if not text or text.lower() in _MISSING_WORDS:
                return None, "missing"
            return None, "not_number"
    if math.isnan(v):
        return None, "nan"
    if math.isinf(v):
        return None, "inf"
    return v, None


@dataclass
class _Collector:
    """Accumulates kept items and problems, enforcing unique ids and valid targets."""

    target_names: list[str]
    transform: str
    ids: list[str] = field(default_factory=list)
    #: Compact columns for file sources (a reader of millions of CIFs holds ~40 bytes per source).
    sources: SourceList = field(default_factory=SourceList)
    #: Target values, row after row (a flat float64 buffer, not a list per item).
    values: array = field(default_factory=lambda: array("d"))
    problems: list[Problem] = field(default_factory=list)
    #: Where each id was first seen: a text ("row 3") or a line number of the file read.
    first_seen: dict[str, str | int] = field(default_factory=dict)

    def problem(self, item_id: str, reason: str, stage: str = "read") -> None:
        self.problems.append(Problem(item_id, reason, stage))

    def claim(self, item_id: str, where: str | int) -> bool:
        """Reserve ``item_id``; report a duplicate (the first occurrence wins). ``where``: a text,
        or a line number (an int is kept instead of a text per item)."""
        if item_id in self.first_seen:
            first = self.first_seen[item_id]
            self.problem(
                item_id,
                f"duplicate id (also at {_place(first)}); the first occurrence is kept, "
                f"this one ({_place(where)}) is left out",
            )
            return False
        self.first_seen[item_id] = where
        return True

    def targets(self, item_id: str, values: Sequence[Any]) -> list[float] | None:
        """Check/convert one item's target values; report every bad one. None if any is bad."""
        out: list[float] = []
        ok = True
        for name, raw in zip(self.target_names, values):
            v, kind = _to_float(raw)
            if kind == "missing":
                shown = "empty value" if raw is None or not str(raw).strip() else repr(str(raw).strip())
                self.problem(item_id, f"target {name} is missing ({shown})", "targets")
            elif kind == "not_number":
                self.problem(item_id, f"target {str(raw).strip()!r} is not a number (column {name})", "targets")
            elif kind == "nan":
                self.problem(item_id, f"target {name} is NaN", "targets")
            elif kind == "inf":
                self.problem(item_id, f"target {name} is {raw} (not finite)", "targets")
            elif self.transform != "none":
                transformed = transforms.forward(v, self.transform)  # type: ignore[arg-type]
                if transformed is None:
                    self.problem(item_id, f"target {name} = {v:g} cannot take {self.transform}", "targets")
                    kind = "transform"
                else:
                    v = transformed
            if kind is None and abs(v) > transforms.LARGEST_TARGET:  # type: ignore[arg-type]
                learned = "" if self.transform == "none" else f" after {self.transform}"
                self.problem(item_id, f"target {name} = {v:g}{learned} is beyond ±{transforms.LARGEST_TARGET:g}: models train in "
                                      "float32, where values that large (or their squares) overflow; check its units", "targets")
                kind = "too_large"
            if kind is not None:
                ok = False
            else:
                out.append(float(v))  # type: ignore[arg-type]
        return out if ok else None

    def add(self, item_id: str, source: StructureSource, values: list[float]) -> None:
        if len(values) != len(self.target_names):
            raise ValueError(f"{item_id}: {len(values)} target values for {len(self.target_names)} targets")
        self.ids.append(item_id)
        self.sources.append(source)
        self.values.extend(values)

    def dataset(self, meta: dict[str, Any]) -> CrystalDataset:
        k = len(self.target_names)
        targets = np.array(self.values, dtype=np.float64).reshape(len(self.ids), k)
        meta = dict(meta)
        meta.setdefault("transform", self.transform)
        return CrystalDataset(
            ids=list(self.ids),
            sources=self.sources,
            targets=targets,
            target_names=list(self.target_names),
            problems=list(self.problems),
            meta=meta,
        )


def _normalize_transform(transform: str | None) -> str:
    return transforms.check(transform)


def _as_target_list(targets: Any) -> list[Any] | None:
    if targets is None:
        return None
    if isinstance(targets, (str, int, np.integer)) and not isinstance(targets, bool):
        return [targets]
    if isinstance(targets, bool):
        raise TypeError("targets must be a column name, an int index or a list of them, not a bool")
    return list(targets)


def _select(
    targets: Any,
    names: Sequence[str],
    numeric: Sequence[bool],
    what: str,
    *,
    aliases: dict[str, int] | None = None,
    auto: str = "all",
) -> list[int]:
    """Indices into ``names`` for the requested targets.

    ``auto="all"``: ``targets=None`` takes every numeric column; ``auto="one"``: only when
    exactly one is numeric (several → ValueError asking to choose, none → no targets).
    """
    available = ", ".join(f"{i}: {n!r}" + ("" if numeric[i] else " (not numeric)") for i, n in enumerate(names))
    available = available or "none"
    requested = _as_target_list(targets)
    if requested is None:
        chosen = [i for i, is_num in enumerate(numeric) if is_num]
        if auto == "one" and len(chosen) > 1:
            numeric_names = [names[i] for i in chosen]
            raise ValueError(
                f"{what} has several numeric columns {numeric_names}: say which to learn, e.g. "
                f"targets={numeric_names[0]!r} or targets={numeric_names[:2]!r} (targets=[] for "
                "prediction-only data)"
            )
        if auto == "all" and not chosen and names:
            raise ValueError(
                f"{what} has no numeric target column (columns: {available}); pass targets=[] for "
                "prediction-only data"
            )
        return chosen
    out: list[int] = []
    for t in requested:
        if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
            i = int(t)
            if not 0 <= i < len(names):
                raise ValueError(
                    f"target index {i} is out of range: {what} has {len(names)} target column(s) "
                    f"({available}); indices are 0-based over these columns"
                )
        elif isinstance(t, str):
            if t in names:
                i = list(names).index(t)
            elif aliases and t in aliases:
                i = aliases[t]
            else:
                lower = [n.lower() for n in names]
                if t.lower() in lower and lower.count(t.lower()) == 1:
                    i = lower.index(t.lower())
                else:
                    raise ValueError(
                        f"unknown target column {t!r} in {what}; available: {available} (give a "
                        "name or a 0-based index)"
                    )
        else:
            raise TypeError(f"a target must be a column name or an int index, got {t!r}")
        if i in out:
            raise ValueError(f"target {names[i]!r} was requested twice")
        out.append(i)
    return out
