"""Data: the IDX reader, the MNIST-layout data sets (found on disk or bundled) and batching."""

from .datasets import (CLASS_NAMES, DATASETS, DataNotFoundError, Dataset, batch_indices, fake_dataset,
                       find_data_dir, fingerprint, iterate_batches, load_dataset, to_float)
from .idx import IdxError, parse_idx, read_idx, write_idx

__all__ = ["CLASS_NAMES", "DATASETS", "DataNotFoundError", "Dataset", "IdxError", "batch_indices",
           "fake_dataset", "find_data_dir", "fingerprint", "iterate_batches", "load_dataset", "parse_idx", "read_idx",
           "to_float", "write_idx"]
