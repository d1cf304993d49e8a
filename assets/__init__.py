"""Software-defined assets: thin Dagster wrappers over the plain functions beside them."""
