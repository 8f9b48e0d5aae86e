"""Arguments shared by several commands: the data options, and the model options made from the
registry (one flag per field of each model's settings dataclass, see :mod:`crystalgnn.registry`)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from crystalgnn import registry


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "-t", action="append", dest="targets", metavar="NAME",
                   help="target column name or 0-based index; repeat for several targets (default: all target columns of id_prop.csv)")
    p.add_argument("--transform", choices=["none", "log10"], default=None, help="transform targets before training, e.g. log10 for elastic moduli")
    p.add_argument("--on-error", choices=["raise", "skip"], default=None,
                   help="unusable items (bad CIF, NaN target, partial occupancy, ...): stop before training with the full list (raise, default) or leave them out and list them in skipped.csv (skip)")
    p.add_argument("--cache-dir", default="default", help="graph cache folder (default: $CRYSTALGNN_CACHE or ~/.cache/crystalgnn)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the graph cache")
    p.add_argument("--workers", type=int, default=0, help="processes that build graphs (0: one per core)")


def add_model_choice(p: argparse.ArgumentParser, default: str | None = None, help_tail: str = "") -> None:
    """``--model`` with the registered models as choices."""
    choices = registry.names()
    listing = "; ".join(f"{n}: {registry.get(n).description}" for n in choices)
    p.add_argument("--model", choices=choices, default=default,
                   help=f"{' or '.join(choices)} ({default or 'cgcnn'} by default){help_tail}. {listing}")


@dataclass(frozen=True)
class ModelFlag:
    """One command-line flag of model settings and the (model, field) pairs it sets."""

    flag: str
    dest: str
    owners: tuple[tuple[str, str], ...]

    def models(self) -> tuple[str, ...]:
        return tuple(model for model, _ in self.owners)


def _argparse_type(hint: Any) -> dict[str, Any]:
    """argparse keywords for a settings field annotated ``hint``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        return {"choices": list(typing.get_args(hint))}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint}
    raise TypeError(f"a model setting of type {hint!r} has no command-line form; give it a metadata 'flag': None to leave it out")


def model_flags() -> dict[str, ModelFlag]:
    """Every model flag of every registered model, by flag (``--n-conv``, ``--hidden``, ...)."""
    flags: dict[str, ModelFlag] = {}
    for name in registry.names():
        for f in dataclasses.fields(registry.get(name).settings):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            if flag is None:
                continue
            known = flags.get(flag)
            owners = (known.owners if known else ()) + ((name, f.name),)
            flags[flag] = ModelFlag(flag, "model_" + flag.lstrip("-").replace("-", "_"), owners)
    return flags


def _owner_field(model: str, field_name: str) -> tuple[Any, dataclasses.Field]:
    settings = registry.get(model).settings
    return typing.get_type_hints(settings)[field_name], next(f for f in dataclasses.fields(settings) if f.name == field_name)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """One argument group per registered model with a flag per setting; a flag shared by several
    models (same name) appears once, in the group of the first, with the choices of all of them
    and each model's help (``arch_from_args`` then checks the value against the chosen model's)."""
    added: set[str] = set()
    flags = model_flags()
    for name in registry.names():
        spec = registry.get(name)
        group = p.add_argument_group(f"{name} settings (with --model {name}; defaults are the paper's)")
        hints = typing.get_type_hints(spec.settings)
        for f in dataclasses.fields(spec.settings):
            flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
            if flag is None or flag in added:
                continue
            added.add(flag)
            owners = flags[flag].owners
            kind = _argparse_type(hints[f.name])
            text = f.metadata.get("help", "")
            if len(owners) > 1:
                helps = {model: _owner_field(model, field_name)[1].metadata.get("help", "") for model, field_name in owners}
                text = "; ".join(f"{model}: {h}" for model, h in helps.items()) if len(set(helps.values())) > 1 else f"{text} [{', '.join(helps)}]"
                if "choices" in kind:
                    merged = dict.fromkeys(c for model, field_name in owners for c in _argparse_type(_owner_field(model, field_name)[0])["choices"])
                    kind["choices"] = list(merged)
            if "type" in kind:
                kind["metavar"] = flag.lstrip("-").replace("-", "_").upper()
            group.add_argument(flag, dest=flags[flag].dest, default=None, help=text, **kind)


def arch_from_args(args: argparse.Namespace, model: str, arch: Any) -> Any:
    """``arch`` (settings of ``model``) with the model flags given on the command line applied.

    A flag of another model is an error naming the model(s) it belongs to, instead of being
    silently ignored."""
    changes: dict[str, Any] = {}
    for flag in model_flags().values():
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        fields = dict(flag.owners)
        if model not in fields:
            models = flag.models()
            owners = models[0] if len(models) == 1 else f"{', '.join(models[:-1])} and {models[-1]}"
            raise ValueError(f"{flag.flag} is a setting of {owners}, not of {model}: drop it, or use --model {flag.models()[0]}")
        choices = _argparse_type(_owner_field(model, fields[model])[0]).get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{flag.flag} {value} is not a choice of {model} ({', '.join(map(str, choices))})")
        changes[fields[model]] = value
    return dataclasses.replace(arch, **changes)


def model_config_from_args(args: argparse.Namespace):
    """``defaults_for(--model)`` with the model flags applied (probe, periodicity)."""
    from crystalgnn.config import defaults_for

    cfg = defaults_for(args.model or "cgcnn")
    arch = arch_from_args(args, cfg.model.name, cfg.model.arch)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch=arch))


def split_fractions(text: str | None) -> tuple[float, float, float] | None:
    if not text:
        return None
    split = tuple(float(x) for x in text.split(","))
    if len(split) != 3:
        raise ValueError("--split takes three fractions: train,val,test (e.g. 0.6,0.2,0.2)")
    return split  # type: ignore[return-value]
