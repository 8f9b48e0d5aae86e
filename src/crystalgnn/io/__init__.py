"""Reading datasets and structures: lazy readers, one parser, one validity check."""

from crystalgnn.io.parse import (
    StructureParseError,
    format_from_path,
    parse_structure,
    validate_structure,
)
from crystalgnn.io.readers import load_dataset

__all__ = [
    "load_dataset",
    "parse_structure",
    "validate_structure",
    "format_from_path",
    "StructureParseError",
]
