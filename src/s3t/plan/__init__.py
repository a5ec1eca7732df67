"""Torch-free planning for S3T: sharding, sequence selection and deletion-rate analysis.

Only numpy and scipy are imported here, so plans can be made and analysed without torch.
"""

from s3t.plan.deletion_rate import (
    SimulationResult,
    deletion_rate,
    harmonic,
    served_prefix,
    simulate,
)
from s3t.plan.placement import PLACEMENTS, Placement, place, resolve_placement
from s3t.plan.sequences import SELECTORS, bms, cyclic, select_sequences, sequence_score
from s3t.plan.sharding import assign_shards

__all__ = [
    "PLACEMENTS",
    "Placement",
    "SELECTORS",
    "SimulationResult",
    "assign_shards",
    "bms",
    "cyclic",
    "deletion_rate",
    "harmonic",
    "place",
    "resolve_placement",
    "select_sequences",
    "sequence_score",
    "served_prefix",
    "simulate",
]
