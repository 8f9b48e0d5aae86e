"""Whatever a caller names as its data, as a :class:`CrystalDataset`: a path, a ``chains:...``
spec, or a dataset already read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
