"""Errors that name the offending item and say what to do."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One input item that cannot be used, and why."""

    id: str
    reason: str
    stage: str = "read"  # read | targets | structure | graph | features

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


class CrystalGNNError(Exception):
    """Base class of crystalgnn's own errors."""


class DatasetError(CrystalGNNError):
    """Raised before training when items of a dataset are unusable (``on_error="raise"``).

    Carries the full list of problems; ``str()`` shows the first ones and the way out.
    """

    def __init__(self, problems: Iterable[Problem], hint: str = "") -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        hint = hint or (
            "Fix these items, or pass on_error='skip' (CLI: --on-error skip) to leave them out; "
            "skipped items are then listed in skipped.csv in the run directory."
        )
        super().__init__(f"{len(self.problems)} unusable item(s):\n{shown}{more}\n{hint}")


class StructureError(ValueError):
    """A structure cannot be turned into model inputs (an isolated atom, an element a feature
    does not cover, a failed Voronoi tessellation); the message is the reason. Graph building
    reports it as that item's problem instead of raising."""


class NonFiniteLossError(CrystalGNNError):
    """Training met a loss that is NaN or infinite; names the epoch, the batch and its crystals."""

    def __init__(self, loss: float, epoch: int, batch: int, graph_index: list[int], ids: list[str] | None = None) -> None:
        self.loss, self.epoch, self.batch, self.graph_index, self.ids = loss, epoch, batch, graph_index, ids
        shown = ", ".join((ids or [str(i) for i in graph_index])[:20]) + (" ..." if len(graph_index) > 20 else "")
        super().__init__(
            f"training loss is {loss} at epoch {epoch}, batch {batch}; its crystals: {shown}. Training stopped; the "
            "checkpoints of the last finished epoch are kept (checkpoints/last.safetensors). Check these crystals' "
            "targets and structures, or lower the learning rate (--lr)"
        )


def write_problems(problems: Iterable[Problem], path: str | Path) -> None:
    """Write ``id,stage,reason`` rows (the skipped-items report)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "stage", "reason"])
        for p in problems:
            writer.writerow([p.id, p.stage, p.reason])
