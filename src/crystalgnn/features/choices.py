"""The atom-feature choices every model can take (``FeatureConfig.atom_features``).

A choice is ``"embedding"`` (a learned vector per element) or one or more *parts* joined by ``+``,
concatenated in the order written:

========  =====  ====================================================================  =============
part      width  what                                                                  source
========  =====  ====================================================================  =============
cgcnn        92  CGCNN's one-hot element vector (SM Table II), Z 1–100                 element table
cfid        438  JARVIS CFID element descriptors, imputed and standardised (Z 1–100)   element table
ofm        1056  per-site orbital field matrix (32² + 32; 39² + 39 with the period     graph add-on
                 tag), Z 1–94                                                          ``ofm``
pretrained   64  the element embedding learned by ``crystalgnn pretrain`` (masked-atom  element table
                 pretraining, CrysToGraph), frozen; written ``pretrained:RUN``, Z 1–100
========  =====  ====================================================================  =============

Element-table parts are looked up by atomic number; site parts are computed per atom when the
graph is built (a graph add-on, cached with the graph). ``"ofm+cfid"`` is OCrystalNet's 1494-dim
input; ``"cgcnn+ofm"`` an OGCNN-style one; ``"cgcnn+pretrained:runs/pre"`` CrysToGraph's 156-dim
one (92 + 64).

``pretrained:RUN`` names the run directory of ``crystalgnn pretrain`` (written as given, case kept;
it may not contain ``+``). Its table is read when a model is built for training
(:func:`check_atom_features` says early when ``RUN/embedding.safetensors`` is missing); a trained
model keeps the rows in its own weights, so predicting never reads RUN again. The width is that of
the pretraining run (64 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Element-table parts and their widths.
ELEMENT_PARTS: dict[str, int] = {"cgcnn": 92, "cfid": 438, "pretrained": 64}
#: How the pretrained part is written: ``pretrained:RUN``.
PRETRAINED_PREFIX = "pretrained:"
#: Site parts and the graph add-on each reads.
SITE_PARTS: dict[str, str] = {"ofm": "ofm"}
#: The named choices shown in ``--help`` (any ``+`` join of parts is accepted as well).
PRESETS: tuple[str, ...] = ("cgcnn", "embedding", "ofm", "cfid", "ofm+cfid", "cgcnn+ofm", "cgcnn+pretrained:RUN")


@dataclass(frozen=True)
class AtomFeatureChoice:
    """A parsed ``atom_features`` value: ``parts`` in order, or ``embedding``; ``pretrained_run``
    the RUN of a ``pretrained:RUN`` part (whose name in ``parts`` is ``"pretrained"``)."""

    parts: tuple[str, ...]
    embedding: bool = False
    pretrained_run: str | None = None

    @property
    def element_parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p in ELEMENT_PARTS)

    @property
    def site_parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p in SITE_PARTS)


def parse_atom_features(text: str) -> AtomFeatureChoice:
    """Parse an ``atom_features`` value; an unknown or repeated part raises, naming the choices."""
    value = str(text).strip()
    if value.lower() == "embedding":
        return AtomFeatureChoice((), embedding=True)
    parts: list[str] = []
    run: str | None = None
    for piece in value.split("+"):
        piece = piece.strip()
        if piece.lower().startswith(PRETRAINED_PREFIX):
            run = piece[len(PRETRAINED_PREFIX):].strip()  # a path: its case is kept
            if not run:
                raise ValueError(f"atom features {text!r}: 'pretrained:' needs the run directory of `crystalgnn pretrain` "
                                 "(pretrained:RUN)")
            parts.append("pretrained")
        elif piece.lower() == "pretrained":
            raise ValueError(f"atom features {text!r}: write the pretrained part with its run directory, pretrained:RUN "
                             "(made by `crystalgnn pretrain DATA --run-dir RUN`)")
        else:
            parts.append(piece.lower())
    known = (*ELEMENT_PARTS, *SITE_PARTS)
    unknown = [p for p in parts if p not in known]
    if unknown or not parts:
        names = [p if p != "pretrained" else "pretrained:RUN" for p in known]
        raise ValueError(f"atom features {text!r}: unknown part(s) {unknown or [text]}; choose 'embedding' or parts of "
                         f"{', '.join(names)} joined by '+' (e.g. {', '.join(PRESETS)})")
    if len(set(parts)) != len(parts):
        raise ValueError(f"atom features {text!r}: a part is repeated")
    return AtomFeatureChoice(tuple(parts), pretrained_run=run)


def check_atom_features(text: str) -> None:
    """What parsing cannot see: a ``pretrained:RUN`` part whose ``RUN/embedding.safetensors`` is
    missing raises ``FileNotFoundError`` naming the path and saying to run ``crystalgnn pretrain``.
    Called before training (a saved model needs no RUN: its weights hold the table)."""
    choice = parse_atom_features(text)
    if choice.pretrained_run is not None:
        from crystalgnn.features.pretrained import embedding_path

        embedding_path(choice.pretrained_run)


def graph_addons_for(text: str) -> tuple[str, ...]:
    """The graph add-ons an ``atom_features`` value needs built (``"ofm"`` for the OFM)."""
    return tuple(SITE_PARTS[p] for p in parse_atom_features(text).site_parts)
