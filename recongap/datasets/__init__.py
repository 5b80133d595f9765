"""Paired data: seeded simulation and the HDF5 files it writes."""

from .io import DataError, PairedDataset, Split, read_attrs, read_split, write_split
from .simulate import calibrate_noise_std, derived_seed, generator_for, measurement_operator, simulate_split

__all__ = [
    "DataError",
    "PairedDataset",
    "Split",
    "calibrate_noise_std",
    "derived_seed",
    "generator_for",
    "measurement_operator",
    "read_attrs",
    "read_split",
    "simulate_split",
    "write_split",
]
