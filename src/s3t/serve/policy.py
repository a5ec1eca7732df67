"""When the service retrains after forgets: the retrain policy (torch-free).

Exactness never waits on the policy: a forget serves the cut (surviving prefixes) at once in
every case. The policy only decides when to spend compute to get accuracy back:

* ``immediate``: every forget wakes a retrain (one retrain per burst). Most compute, best
  accuracy at every moment.
* ``accuracy``: retrain only when a shard is dead (its every lineage cut) or the served
  accuracy fell more than ``delta`` below the fitted one. The accuracy is the mean validation
  accuracy of the served members, the number the ledger keeps for every checkpoint (re-scored
  when validation rows are erased), so deciding costs no inference. Few retrains while
  deletions only shorten prefixes a little; a dead shard is always retrained.
* ``interval``: retrain at most once every ``every`` seconds (deletions in between are
  batched). Bounded compute; accuracy may lag by up to ``every`` seconds.

Example
-------
>>> p = RetrainPolicy("accuracy", delta=0.02)
>>> p.decide(pending=True, dead_shards=0, accuracy_now=0.79, accuracy_fit=0.80, since_last=None)
Decision(run=False, reason='served accuracy 0.790 is within 0.02 of the fitted 0.800', wait=None)
>>> p.decide(pending=True, dead_shards=1, accuracy_now=0.79, accuracy_fit=0.80, since_last=None).run
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from ..config import RETRAIN_POLICIES
from ..errors import ConfigError

__all__ = ["Decision", "RetrainPolicy", "served_accuracy"]


class Decision(NamedTuple):
    run: bool
    reason: str
    wait: float | None  # seconds until the decision may change by itself (interval), else None


@dataclass(frozen=True)
class RetrainPolicy:
    kind: str = "immediate"
    delta: float = 0.02
    every: float = 600.0

    def __post_init__(self) -> None:
        if self.kind not in RETRAIN_POLICIES:
            raise ConfigError(f"retrain policy must be one of {list(RETRAIN_POLICIES)}; got {self.kind!r}")

    @classmethod
    def from_config(cls, serve: Any) -> "RetrainPolicy":
        return cls(serve.retrain, float(serve.retrain_delta), float(serve.retrain_every))

    def decide(self, *, pending: bool, dead_shards: int, accuracy_now: float | None, accuracy_fit: float | None,
               since_last: float | None) -> Decision:
        """Whether to retrain now. ``since_last``: seconds since the last retrain started (None = never)."""
        if not pending:
            return Decision(False, "nothing to retrain", None)
        if self.kind == "immediate":
            return Decision(True, "policy immediate", None)
        if self.kind == "interval":
            if since_last is None or since_last >= self.every:
                return Decision(True, f"policy interval: {self.every:g} s since the last retrain", None)
            return Decision(False, f"policy interval: next retrain in {self.every - since_last:.0f} s",
                            self.every - since_last)
        if dead_shards:
            return Decision(True, f"{dead_shards} shard(s) dead", None)
        if accuracy_now is None or accuracy_fit is None:
            return Decision(True, "served accuracy unknown", None)
        if accuracy_now < accuracy_fit - self.delta:
            return Decision(True, f"served accuracy {accuracy_now:.3f} fell more than {self.delta:g} below the fitted "
                                  f"{accuracy_fit:.3f}", None)
        return Decision(False, f"served accuracy {accuracy_now:.3f} is within {self.delta:g} of the fitted "
                               f"{accuracy_fit:.3f}", None)


def served_accuracy(body: Mapping[str, Any]) -> tuple[int, float | None]:
    """(dead shards, mean validation accuracy of the live members) of a manifest body."""
    shards = body["shards"].values()
    dead = sum(1 for v in shards if v is None)
    accs = [v["val_accuracy"] for v in shards if v is not None and v.get("val_accuracy") is not None]
    return dead, (sum(accs) / len(accs)) if accs else None
