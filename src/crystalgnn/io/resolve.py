"""Whatever a caller names as its data, as a :class:`CrystalDataset`: a path, a ``chains:...``
spec, or a dataset already read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crystalgnn import transforms
from crystalgnn.data.records import CrystalDataset
from crystalgnn.io.load import load_dataset


def resolve_dataset(data: Any, targets: Sequence[str | int] = (), transform: str = "none") -> CrystalDataset:
    """A :class:`CrystalDataset` from a path, a ``chains:...`` spec, or in-memory structures, with
    its targets under ``transform``.

    A dataset already read must have been read with that same transform (it records it in
    ``meta["transform"]``): otherwise a model would learn one thing while ``config.json`` says
    another, so a mismatch raises ``ValueError`` naming both.
    """
    transform = transforms.check(transform)
    if isinstance(data, CrystalDataset):
        read_with = transforms.check(data.meta.get("transform", "none"))
        if read_with != transform and len(data.target_names):
            raise ValueError(
                f"the dataset's targets were read with transform={read_with!r} but the run's settings say "
                f"transform={transform!r} (DataConfig.transform, CLI --transform): read the data with "
                f"load_dataset(..., transform={transform!r}) or set DataConfig(transform={read_with!r}), so that "
                "config.json says what the model learns"
            )
        return data
    if isinstance(data, str) and data.startswith("chains"):
        from crystalgnn.datasets import generate_chains, parse_chains_spec

        spec = parse_chains_spec(data)
        chains = generate_chains(**spec)
        ds = load_dataset([s for _, s, _ in chains], ids=[i for i, _, _ in chains],
                          target_values={"a": [a for _, _, a in chains]}, transform=transform)
        ds.meta.update(source=data, format="chains")
        return ds

    # CLI targets arrive as text: a bare number is a 0-based column index.
    targets = [int(t) if str(t).isdigit() else t for t in targets] or None
    return load_dataset(data, targets, transform=transform)


def resolve_structures(data: Any, max_items: int | None = None) -> CrystalDataset:
    """The structures of ``data`` alone (anything :func:`resolve_dataset` reads), for work that needs
    no target (masked-atom pretraining): target columns are never read, so a missing or non-numeric
    target leaves no item out. ``max_items`` reads only the first items (rows, files in name order)."""
    if isinstance(data, CrystalDataset):
        ds = data if max_items is None else data.subset(range(min(len(data), int(max_items))))
    elif isinstance(data, str) and data.startswith("chains"):
        ds = resolve_dataset(data)
        if max_items is not None:
            ds = ds.subset(range(min(len(ds), int(max_items))))
    else:
        ds = load_dataset(data, [], max_rows=max_items)
    return CrystalDataset(ids=list(ds.ids), sources=list(ds.sources), targets=np.zeros((len(ds), 0)), target_names=[],
                          problems=list(ds.problems), meta=dict(ds.meta))
