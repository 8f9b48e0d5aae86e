"""A task's dataset from its :class:`~crystalgnn.benchmark.tasks.Source`, under a data root.

(Tasks arrive here as objects with the fields of :class:`~crystalgnn.benchmark.tasks.Task`; this
module does not import that one, which imports it.)

The data root is ``--data-root`` (``data_root=``), else ``$CRYSTALGNN_DATA``, else the first of
``./shared/data`` and ``../shared/data`` that exists. Archives (mp37k's ``cifs_data.tar.gz``,
QMOF's ``.tar.xz``) are extracted once into ``<cache>/datasets/<archive stem>/`` with tarfile's
``data`` filter (no absolute paths or links out of the tree); the extracted folder is renamed into
place only when complete, so a killed extraction is redone, not half-used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from crystalgnn.data.records import CrystalDataset
from crystalgnn.paths import default_cache_dir, folder_lock, resolve_cache_dir

log = logging.getLogger("crystalgnn")

_MARKER = ".extracted-ok"


def default_data_root() -> Path | None:
    """``$CRYSTALGNN_DATA``, else ``./shared/data`` or ``../shared/data`` when one exists."""
    env = os.environ.get("CRYSTALGNN_DATA")
    if env:
        return Path(env)
    for candidate in (Path("shared/data"), Path("../shared/data")):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_data_root(data_root: str | Path | None) -> Path:
    root = Path(data_root) if data_root else default_data_root()
    if root is None or not root.is_dir():
        raise FileNotFoundError(f"data root {root or '(none)'} not found: pass --data-root DIR (data_root=...), the folder holding "
                                "the task's files (e.g. mp37k/, matbench_mp_gap.json.gz), or set $CRYSTALGNN_DATA")
    return root


def _need(root: Path, relative: str, task: Any) -> Path:
    path = root / relative
    if not path.exists():
        hint = (" (a published task's own file: download it and put it there)" if task.group == "real" else "")
        raise FileNotFoundError(f"task {task.name}: {path} not found{hint}; --data-root names the folder that holds {relative}")
    return path


def extracted_archive(archive: Path, cache_dir: str | Path | None = "default") -> Path:
    """The folder ``archive`` is extracted into (once) under the cache's ``datasets/``."""
    cache = resolve_cache_dir(cache_dir) or default_cache_dir()
    stem = archive.name.split(".")[0]
    folder = cache / "datasets" / f"{archive.parent.name}-{stem}"
    if (folder / _MARKER).exists():
        return folder
    with folder_lock(cache / "datasets", f"extracting {archive.name}"):
        if (folder / _MARKER).exists():  # another process extracted it while this one waited
            return folder
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        started = time.perf_counter()
        log.warning("extracting %s into %s (once)", archive, folder)
        try:
            with tarfile.open(archive) as handle:
                handle.extractall(tmp, filter="data")
            (tmp / _MARKER).write_text(json.dumps({"archive": str(archive), "seconds": round(time.perf_counter() - started, 1)}) + "\n")
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _target(task: Any) -> str | int:
    return int(task.target) if task.target.isdigit() else task.target


def _read_source(task: Any, root: Path, cache_dir: str | Path | None) -> CrystalDataset:
    from crystalgnn.io import load_dataset

    src, target = task.source, _target(task)
    if src.kind == "chains":
        from crystalgnn.io.resolve import resolve_dataset

        return resolve_dataset(src.path or "chains:short", [target], task.transform)
    if src.kind == "jarvis":
        from crystalgnn.benchmark.readers import load_jarvis

        return load_jarvis(_need(root, src.path, task), target, transform=task.transform, id_key=src.id_key)
    if src.kind == "unconvbench":
        from crystalgnn.benchmark.readers import load_unconvbench

        return load_unconvbench(_need(root, src.path, task), task.name, transform=task.transform)
    if src.kind == "archive":
        folder = extracted_archive(_need(root, src.archive, task), cache_dir)
        structures = folder / src.structures if src.structures else folder
        return load_dataset(_need(root, src.path, task), [target], transform=task.transform, structures_dir=structures,
                            id_column=src.id_column or None)
    parts = [load_dataset(_need(root, p, task), [target], transform=task.transform, id_column=src.id_column or None)
             for p in src.all_paths()]
    if not parts:
        raise ValueError(f"task {task.name}: its source names no path")
    return parts[0] if len(parts) == 1 else concatenate(parts)


def concatenate(parts: list[CrystalDataset]) -> CrystalDataset:
    """Several datasets of the same targets as one, in order; a repeated id raises."""
    ids = [i for p in parts for i in p.ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        repeated = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        raise ValueError(f"the joined parts share {len(repeated)} id(s), e.g. {repeated[:5]}")
    meta = dict(parts[0].meta)
    meta["source"] = " + ".join(str(p.meta.get("source", "")) for p in parts)
    return CrystalDataset(ids=ids, sources=[s for p in parts for s in p.sources], targets=np.concatenate([p.targets for p in parts]),
                          target_names=list(parts[0].target_names), problems=[q for p in parts for q in p.problems], meta=meta)


def atom_counts(dataset: CrystalDataset) -> np.ndarray:
    """Atoms per cell of every item. Structures are parsed (with the item's problem raised as a
    :class:`~crystalgnn.errors.DatasetError` when one cannot be); counts are cached per structure
    key under the cache's ``datasets/atom-counts.json``, so the size bins cost one pass."""
    cache_file = default_cache_dir() / "datasets" / "atom-counts.json"
    known: dict[str, int] = {}
    if cache_file.exists():
        try:
            known = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            known = {}
    counts = np.zeros(len(dataset), dtype=np.int64)
    missing = False
    for k, source in enumerate(dataset.sources):
        key = source.key
        if key not in known:
            structure = source.load_or_reason()
            if isinstance(structure, str):
                from crystalgnn.errors import DatasetError, Problem

                raise DatasetError([Problem(dataset.ids[k], structure)])
            known[key] = len(structure)
            missing = True
        counts[k] = known[key]
    if missing:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache_file)
    return counts


def select(dataset: CrystalDataset, selection: Any) -> CrystalDataset:
    """The items of ``selection`` (size bounds and a target bound, then a seeded draw of ``n``),
    in source order."""
    keep = np.ones(len(dataset), dtype=bool)
    if selection.by_size:
        counts = atom_counts(dataset)
        if selection.atoms_min:
            keep &= counts >= selection.atoms_min
        if selection.atoms_max:
            keep &= counts <= selection.atoms_max
    if selection.target_above is not None:
        keep &= dataset.targets[:, 0] > selection.target_above
    rows = np.flatnonzero(keep)
    if selection.n and selection.n < len(rows):
        rows = np.sort(np.random.default_rng(selection.seed).choice(rows, size=selection.n, replace=False))
    elif selection.n and selection.n > len(rows):
        log.warning("selection asks for %d items but only %d qualify; taking all", selection.n, len(rows))
    return dataset if len(rows) == len(dataset) else dataset.subset(rows)


def load_task_data(task: Any, data_root: str | Path | None = None, cache_dir: str | Path | None = "default") -> CrystalDataset:
    """The task's dataset: read, targets under its transform, the selection applied. Items the
    reader could not use stay listed in ``dataset.problems``."""
    root = resolve_data_root(data_root) if task.source.kind != "chains" else Path(".")
    dataset = _read_source(task, root, cache_dir)
    if not len(dataset):
        raise ValueError(f"task {task.name}: no usable item in its source ({len(dataset.problems)} problem(s), e.g. "
                         f"{dataset.problems[:3]})")
    dataset = select(dataset, task.select)
    dataset.meta.update(task=task.name, transform=task.transform)
    return dataset
