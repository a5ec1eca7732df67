"""Serving: the pure serving rule (here) and the torch ensemble (``s3t.serve.ensemble``)."""

from .rule import Served, StageView, choose_served, valid_prefix

__all__ = ["Served", "StageView", "choose_served", "valid_prefix"]
