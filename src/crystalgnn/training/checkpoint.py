"""Checkpoints without pickle: weights as safetensors, everything else as JSON.

:class:`SafetensorsCheckpointIO` plugs into Lightning (``Trainer(plugins=[...])``), so Lightning's
own ``ModelCheckpoint`` decides *when* to save (best on validation) while the files it writes can
be loaded with no code execution. Only weights-only checkpoints are supported: resuming an
optimizer state is not a goal of these files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from safetensors.torch import load_file, save_file


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


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write ``path`` (safetensors) and ``path.json`` (metadata), each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    meta_path = Path(f"{path}.json")
    meta_path.write_text(json.dumps(_json_safe(metadata or {}), indent=2, sort_keys=True) + "\n")


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a state dict and its JSON metadata (``{}`` when absent)."""
    meta_path = Path(f"{path}.json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return load_file(str(path), device=str(device)), meta


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O writing ``state_dict`` as safetensors and the rest as JSON."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "optimizer_states", "lr_schedulers")}
        save_weights(checkpoint["state_dict"], path, meta)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        state_dict, meta = load_weights(path)
        return {**meta, "state_dict": state_dict}

    def remove_checkpoint(self, path: str | Path) -> None:
        for p in (Path(path), Path(f"{path}.json")):
            if p.exists():
                p.unlink()


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
