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
========  =====  ====================================================================  =============

Element-table parts are looked up by atomic number; site parts are computed per atom when the
graph is built (a graph add-on, cached with the graph). ``"ofm+cfid"`` is OCrystalNet's 1494-dim
input; ``"cgcnn+ofm"`` an OGCNN-style one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Element-table parts and their widths.
ELEMENT_PARTS: dict[str, int] = {"cgcnn": 92, "cfid": 438}
#: Site parts and the graph add-on each reads.
SITE_PARTS: dict[str, str] = {"ofm": "ofm"}
#: The named choices shown in ``--help`` (any ``+`` join of parts is accepted as well).
PRESETS: tuple[str, ...] = ("cgcnn", "embedding", "ofm", "cfid", "ofm+cfid", "cgcnn+ofm")


@dataclass(frozen=True)
class AtomFeatureChoice:
    """A parsed ``atom_features`` value: ``parts`` in order, or ``embedding``."""

    parts: tuple[str, ...]
    embedding: bool = False

    @property
    def element_parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p in ELEMENT_PARTS)

    @property
    def site_parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.parts if p in SITE_PARTS)


def parse_atom_features(text: str) -> AtomFeatureChoice:
    """Parse an ``atom_features`` value; an unknown or repeated part raises, naming the choices."""
    value = str(text).strip().lower()
    if value == "embedding":
        return AtomFeatureChoice((), embedding=True)
    parts = tuple(p.strip() for p in value.split("+"))
    known = (*ELEMENT_PARTS, *SITE_PARTS)
    unknown = [p for p in parts if p not in known]
    if unknown or not parts:
        raise ValueError(f"atom features {text!r}: unknown part(s) {unknown or [text]}; choose 'embedding' or parts of "
                         f"{', '.join(known)} joined by '+' (e.g. {', '.join(PRESETS)})")
    if len(set(parts)) != len(parts):
        raise ValueError(f"atom features {text!r}: a part is repeated")
    return AtomFeatureChoice(parts)


def graph_addons_for(text: str) -> tuple[str, ...]:
    """The graph add-ons an ``atom_features`` value needs built (``"ofm"`` for the OFM)."""
    return tuple(SITE_PARTS[p] for p in parse_atom_features(text).site_parts)
