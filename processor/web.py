"""The worker's HTTP endpoints, on Faust's own web server (LEDGER_WEB_PORT).

- `/metrics`: Prometheus text format (processor.metrics);
- `/livez`: 200 while the process serves HTTP;
- `/readyz`: 200 when partitions are assigned, the tables are recovered and
  no rebalance is running; 503 otherwise (processor.health). Both answer JSON.

Faust starts its web server before the consumer, so `/livez` answers during
table recovery and `/readyz` says why the worker is not ready yet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust
from aiohttp import web as aiohttp_web
from faust.types import TP
from faust.web import Request, Response, View

from kafkaio.admin import committed_offsets
from processor.agent import BatchWorker
from processor.health import readiness
from processor.metrics import CONTENT_TYPE, Status
from processor.patience import until_answered

log = logging.getLogger("ledger.web")


@aiohttp_web.middleware
async def no_tracebacks(
    request: aiohttp_web.Request,
    handler: Callable[[aiohttp_web.Request], Awaitable[aiohttp_web.StreamResponse]],
) -> aiohttp_web.StreamResponse:
    """Any error inside a view: logged here, answered with a bare 500 (no traceback, no detail)."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPException:
        raise  # 404s and the like: aiohttp's own short answers
    except Exception:
        # %r: the path is the client's, and must not forge log lines.
        log.exception("GET %r failed", request.path[:200])
        return aiohttp_web.json_response({"error": "internal error"}, status=500)


def install_web(app: faust.App, worker: BatchWorker) -> None:
    metrics = worker.metrics
    settings = worker.settings
    topic = settings.transactions_topic

    def lag() -> Mapping[int, int]:
        found: dict[int, int] = {}
        for partition in list(worker.owned):
            committed = metrics.committed.get(partition)
            try:
                # The end of the partition from the last fetch response; None
                # before the first fetch. (Fetch responses carry the right high
                # watermark even on Tansu, unlike ListOffsets.)
                highwater = app.consumer.highwater(TP(topic, partition))
            except Exception:  # not assigned to the client yet, or no consumer
                continue
            if committed is not None and highwater is not None:
                found[partition] = max(highwater - committed, 0)
        return found

    metrics.lag_source = lag

    def status() -> Status:
        standby = worker.standby
        return Status(
            ready=readiness(app, worker.owned).ready,
            owned=len(worker.owned),
            standby_lag=dict(standby.lag) if standby is not None else {},
        )

    metrics.status_source = status

    owned: set[int] = set()

    async def assigned(_sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        # Lag needs each new partition's committed offset before this worker
        # commits anything there itself (it may be idle, or stuck). No batch
        # commits while this runs: the agent holds batches during a rebalance.
        mine = {tp.partition for tp in args[0] if tp.topic == topic}
        new = mine - owned
        owned.update(mine)
        if new:
            offsets = await until_answered(
                committed_offsets,
                settings.bootstrap_servers,
                settings.app_id,
                topic,
                settings.partitions,
            )
            # Nothing committed (-1): the partition is read from its start.
            metrics.record_commit({p: max(offsets.get(p, -1), 0) for p in new})

    async def revoked(_sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        gone = {tp.partition for tp in args[0] if tp.topic == topic}
        owned.difference_update(gone)
        metrics.forget(gone)

    app.on_partitions_assigned.connect(assigned)
    app.on_partitions_revoked.connect(revoked)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE)

    @app.page("/livez")
    class Livez(View):
        async def get(self, request: Request) -> Response:
            return self.json({"live": True})

    @app.page("/readyz")
    class Readyz(View):
        async def get(self, request: Request) -> Response:
            state = readiness(app, worker.owned)
            answer = state.as_json()
            # While a restore runs: changelog records still to read, per partition.
            answer["restoring"] = worker.metrics.restoring()
            return self.json(answer, status=200 if state.ready else 503)
