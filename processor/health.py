"""Liveness and readiness of a worker, as probes see them (`/livez`, `/readyz`).

Live: the process answers HTTP at all, so its event loop turns. A worker
that fails in a way it cannot recover from exits (code 75) instead of
staying up unhealthy, so liveness needs nothing more.

Ready: the worker is doing its job: it owns partitions of the input topic,
Faust has finished recovering the tables from the changelogs, and no
rebalance is under way. A surplus replica (more replicas than partitions)
owns nothing and so is never ready; that is the truth, not a failure, and
it must not be restarted for it (only the liveness probe restarts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Readiness:
    partitions: tuple[int, ...]
    recovered: bool
    rebalancing: bool

    @property
    def ready(self) -> bool:
        return bool(self.partitions) and self.recovered and not self.rebalancing

    @property
    def reason(self) -> str:
        if self.rebalancing:
            return "rebalancing"
        if not self.recovered:
            return "recovering tables from the changelogs"
        if not self.partitions:
            return "no partitions assigned"
        return "ready"

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": self.reason,
            "partitions": list(self.partitions),
            "recovered": self.recovered,
            "rebalancing": self.rebalancing,
        }


def readiness(app: Any, owned: set[int]) -> Readiness:
    """Read the worker's state; changes nothing. `owned`: the worker's partitions."""
    recovery = app.tables.recovery
    # `completed` is set at the end of the first recovery and never cleared;
    # a later rebalance shows in `in_recovery` and `app.rebalancing`.
    recovered = recovery.completed.is_set() and not recovery.in_recovery
    return Readiness(
        partitions=tuple(sorted(owned)),
        recovered=recovered,
        rebalancing=bool(app.rebalancing),
    )
