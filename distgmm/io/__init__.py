"""Sources, models, outputs and checkpoints: everything distgmm reads and writes."""

from ..parallel import readers as _readers
from ._zarr import read_adapter as _zarr_read_adapter

_readers.register(_zarr_read_adapter)
