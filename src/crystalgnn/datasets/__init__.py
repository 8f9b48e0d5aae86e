"""Built-in and synthetic datasets."""

from crystalgnn.datasets.chains import (
    chains_dataset_name,
    generate_chain,
    generate_chains,
    parse_chains_spec,
)

__all__ = ["chains_dataset_name", "generate_chain", "generate_chains", "parse_chains_spec"]
