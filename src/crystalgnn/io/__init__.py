"""Reading datasets and structures: lazy readers, one parser, one validity check."""

from crystalgnn.io.load import load_dataset
from crystalgnn.structures.parse import (
    StructureParseError,
    format_from_path,
    parse_structure,
    validate_structure,
)

__all__ = [
    "load_dataset",
    "parse_structure",
    "validate_structure",
    "format_from_path",
    "StructureParseError",
]
