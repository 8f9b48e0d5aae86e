"""Structural descriptors of Gong et al. (matminer definitions, one Voronoi tessellation per structure).

See :mod:`crystalgnn.descriptors.bank` for the definition of every descriptor and
:mod:`crystalgnn.descriptors.voronoi` for the tessellation.
"""

from crystalgnn.descriptors.bank import (
    CATEGORICAL_DESCRIPTORS,
    CRYSTAL_SYSTEMS,
    DESCRIPTOR_CODE_VERSION,
    DESCRIPTOR_NAMES,
    GLOBAL_DESCRIPTORS,
    LOCAL_DESCRIPTORS,
    DescriptorSettings,
    DescriptorTable,
    structure_descriptors,
)
from crystalgnn.descriptors.compute import compute_descriptors
from crystalgnn.descriptors.voronoi import (
    VoronoiError,
    VoronoiFacets,
    periodic_voronoi,
    structure_voronoi,
)

__all__ = [
    "CATEGORICAL_DESCRIPTORS",
    "CRYSTAL_SYSTEMS",
    "DESCRIPTOR_CODE_VERSION",
    "DESCRIPTOR_NAMES",
    "GLOBAL_DESCRIPTORS",
    "LOCAL_DESCRIPTORS",
    "DescriptorSettings",
    "DescriptorTable",
    "VoronoiError",
    "VoronoiFacets",
    "compute_descriptors",
    "periodic_voronoi",
    "structure_descriptors",
    "structure_voronoi",
]
