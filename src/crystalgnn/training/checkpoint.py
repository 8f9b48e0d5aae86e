"""Checkpoints without pickle: every tensor in safetensors, everything else as JSON.

:class:`crystalgnn.training.trainer.SafetensorsCheckpointIO` plugs these files into Lightning, so
Lightning's own ``ModelCheckpoint`` decides *when* to save while the files it writes load with no
code execution (this module does not import Lightning: prediction does not need it). A full checkpoint (the "last" one, from which ``--resume`` continues) holds the
weights, the optimizer and scheduler states, the loop counters and the callbacks' states: its
tensors go into the safetensors file (weights under their own names, every other tensor under
``__checkpoint__/<path>``) and the rest into JSON stored in the same file's header, so that one
atomic rename writes the whole checkpoint. Tuples, int-keyed dicts (optimizer states) and
``Counter``s (a MultiStepLR's milestones) keep their types through tagged JSON.

Run-directory weights (``model.safetensors``) carry their metadata in a ``.json`` file beside
them as well, for people to read.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

#: Header key of the JSON metadata inside a safetensors file.
HEADER_KEY = "crystalgnn"
#: Prefix of tensors that are not weights (optimizer moments, best scores, random states).
OTHER_TENSORS = "__checkpoint__/"


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _json_safe(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [_json_safe(v) for v in value]
        return str(value)


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON form of ``value``; tensors are moved into ``tensors`` and replaced by a reference."""
    if isinstance(value, torch.Tensor):
        key = OTHER_TENSORS + path
        tensors[key] = value.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(value, collections.Counter):
        return {"__counter__": [[_encode(k, f"{path}.k{i}", tensors), v] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {"__dict__": {k: _encode(v, f"{path}.{k}", tensors) for k, v in value.items()}}
        return {"__items__": [[_encode(k, f"{path}.k{i}", tensors), _encode(v, f"{path}.{i}", tensors)] for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} at {path} in a pickle-free checkpoint")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__counter__" in value:
        return collections.Counter({_decode(k, tensors): v for k, v in value["__counter__"]})
    if "__dict__" in value:
        return {k: _decode(v, tensors) for k, v in value["__dict__"].items()}
    if "__items__" in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value["__items__"]}
    if "__tuple__" in value:
        return tuple(_decode(v, tensors) for v in value["__tuple__"])
    return {k: _decode(v, tensors) for k, v in value.items()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, header: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates 0600 files; weights are as readable as the rest
    os.replace(tmp, path)


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``path`` (safetensors, metadata also in its header) and ``path.json``, each atomically."""
    path = Path(path)
    meta = _json_safe(metadata or {})
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    _atomic_save(tensors, path, {HEADER_KEY: json.dumps(meta)})
    meta_path = Path(f"{path}.json")
    tmp = meta_path.with_name(f".{meta_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, meta_path)


def read_header(path: str | Path) -> dict[str, Any] | None:
    """The JSON metadata in a safetensors file's header (None when it has none)."""
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get(HEADER_KEY)
    return None if raw is None else json.loads(raw)


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read the weights of a checkpoint or model file and its metadata (header, else ``.json``).

    Tensors that are not weights (``__checkpoint__/...``) are left out of the state dict."""
    tensors = load_file(str(path), device=str(device))
    header = read_header(path)
    if header is not None:
        meta = _decode(header, tensors)
    else:
        meta_path = Path(f"{path}.json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return {k: v for k, v in tensors.items() if not k.startswith(OTHER_TENSORS)}, meta


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | Path) -> None:
    """A whole Lightning checkpoint as one safetensors file (see module docstring)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint["state_dict"].items()}
    rest = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    encoded = _encode(rest, "checkpoint", tensors)
    _atomic_save(tensors, Path(path), {HEADER_KEY: json.dumps(encoded)})


def load_checkpoint_file(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The Lightning checkpoint dict written by :func:`save_checkpoint_file` (no code executed)."""
    tensors = load_file(str(path), device=str(device))
    header = read_header(path)
    if header is None:
        raise ValueError(f"{path} holds weights only (no training state to resume from)")
    rest = _decode(header, tensors)
    state = {k: v for k, v in tensors.items() if not k.startswith(OTHER_TENSORS)}
    return {**rest, "state_dict": state}


def upgrade_state_dict(state: dict[str, torch.Tensor], layout: int, renames: dict[str, str], classification: bool) -> dict[str, torch.Tensor]:
    """Weights saved under config layout ``layout`` → today's names.

    Layout 1 (before the model registry) kept the target statistics as ``target_mean`` /
    ``target_std`` at the top of the module (now ``objective.normalizer.mean`` / ``std``; a
    classification run has none) and named the atom input per model: ``renames`` are the model's
    prefix renames (``ModelSpec.legacy_state_keys``).
    """
    if layout >= 2:
        return state
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name in ("target_mean", "target_std"):
            if not classification:
                out["objective.normalizer." + name.removeprefix("target_")] = tensor
            continue
        for old, new in renames.items():
            if name.startswith(old):
                name = new + name[len(old):]
                break
        out[name] = tensor
    return out
