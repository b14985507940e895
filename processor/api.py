"""The balance API: `GET /accounts/{client}` and `GET /accounts/{client}/deposits/{tx}`.

Any worker answers for any client. Who serves a request:

1. the owner of the client's partition (SPEC M1: murmur2 of the key),
   from its state, when the partition is restored and resumed here
   (`BatchWorker.owned`) and its membership lease holds
   (processor.membership_lease: no other worker can own it yet);
2. with `?stale=ok`, a worker holding a standby copy of the partition
   (state.standby), saying so (`"stale": true`) and how far behind it is;
3. otherwise the worker forwards the request to the owner, as the last
   assignment named it (processor.assignment), and relays the answer. Forwarded, not redirected:
   a caller then needs no route to every pod, only to the Service, and
   sees one answer whichever replica it reached. A forwarded request is
   never forwarded again: a worker that receives one and does not own the
   partition (the assignment moved meanwhile) says "not now".

"Not now" is 503 with Retry-After, never a guess: during a rebalance, a
restore, or when the owner cannot be reached. An owner's answer is exact as
of `position` (the next input offset of the partition not yet applied):
it is read from the state the last committed batch left, in the event loop
that writes it, so an answer never shows half a batch.

With LEDGER_API_TOKEN set, every request needs `Authorization: Bearer
<token>`; forwarded requests carry the caller's header on.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import faust
from faust.web import Request, Response, View

from ledger.keys import client_key, partition_for
from processor import queries
from processor.agent import BatchWorker
from processor.assignment import assignor
from processor.membership_lease import lease
from processor.openapi import document

log = logging.getLogger("ledger.api")

#: Header a forwarding worker adds (its own URL): the receiver never forwards again.
FORWARDED = "X-Ledger-Forwarded-By"
#: Seconds a caller should wait before asking again after a 503.
RETRY_AFTER = "1"
#: Seconds a forwarded request may take, connection included.
FORWARD_TIMEOUT = 5.0

Answer = tuple[int, dict[str, Any]]
Read = Callable[[queries.PartitionView], dict[str, Any] | None]


class BalanceApi:
    def __init__(self, worker: BatchWorker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.url = worker.settings.web_url
        self._token = self.settings.api_token
        self._session: aiohttp.ClientSession | None = None

    def partition_of(self, client: int) -> int:
        return partition_for(client_key(client), self.settings.partitions)

    def owner_url(self, partition: int) -> str | None:
        """The URL of the worker the last assignment gave `partition` to (None: unknown)."""
        url = assignor.owner(self.settings.transactions_topic, partition)
        return None if url is None else url.rstrip("/")

    def authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        given = request.headers.get("Authorization", "")
        # Constant time: the comparison must not tell how much of a guess was right.
        return hmac.compare_digest(given.encode(), f"Bearer {self._token.reveal()}".encode())

    async def answer(
        self, request: Request, client: int, read: Read, missing: str
    ) -> tuple[int, dict[str, Any], str]:
        """(status, body, who answered: owner | standby | forwarded | none)."""
        p = self.partition_of(client)
        worker = self.worker
        if p in worker.owned:
            if not lease.valid(self.settings.session_timeout):
                return (*_not_now(p, "this worker's group membership is not confirmed"), "none")
            store = worker.stores[p]
            return (*self._local(store, read, missing, stale=False), "owner")
        stale_ok = request.query.get("stale") == "ok"
        standby = worker.standby
        if stale_ok and standby is not None:
            kept, found = standby.read(
                p, lambda store: self._local(store, read, missing, stale=True)
            )
            if kept:
                status, body = found
                lag = standby.lag.get(p)
                body["lag_records"] = lag
                return status, body, "standby"
        if request.headers.get(FORWARDED):
            return (*_not_now(p, "the partition is changing owner"), "none")
        owner = self.owner_url(p)
        if owner is None or owner == self.url:
            return (*_not_now(p, "the partition is being assigned or restored"), "none")
        return (*await self._forward(request, owner, p), "forwarded")

    def _local(
        self, view: queries.PartitionView, read: Read, missing: str, *, stale: bool
    ) -> Answer:
        body = read(view)
        extra = {
            "partition": view.partition,
            "position": queries.position(view),
            "stale": stale,
            "served_by": self.url,
        }
        if body is None:
            return 404, {"error": missing, **extra}
        return 200, {**body, **extra}

    async def _forward(self, request: Request, owner: str, partition: int) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
            )
        headers = {FORWARDED: self.url}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with self._session.get(
                owner + request.rel_url.path_qs, headers=headers, allow_redirects=False
            ) as answer:
                body = await answer.json(content_type=None)
                return answer.status, body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("owner %s of partition %d did not answer (%s)", owner, partition, exc)
            return _not_now(partition, "the partition's owner did not answer")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _not_now(partition: int, why: str) -> Answer:
    return 503, {"error": "not now", "reason": why, "partition": partition}


def _invalid(what: str) -> Answer:
    return 400, {"error": f"{what} must be plain digits within SPEC R4's range"}


def install_api(app: faust.App, worker: BatchWorker) -> BalanceApi:
    api = BalanceApi(worker)
    metrics = worker.metrics

    def respond(view: View, route: str, started: float, answer: Answer, via: str) -> Response:
        status, body = answer
        metrics.api_requests.labels(route, str(status)).inc()
        if via != "none":
            metrics.api_seconds.labels(route, via).observe(time.perf_counter() - started)
        headers = {"Retry-After": RETRY_AFTER} if status == 503 else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return view.json(body, status=status, headers=headers)

    @app.page("/accounts/{client}")
    class AccountView(View):
        async def get(self, request: Request, client: str) -> Response:
            started = time.perf_counter()
            if not api.authorized(request):
                return respond(self, "account", started, (401, {"error": "unauthorized"}), "none")
            found = queries.parse_id(client, queries.MAX_CLIENT)
            if found is None:
                return respond(self, "account", started, _invalid("client"), "none")
            c = found
            status, body, via = await api.answer(
                request, c, lambda view: queries.account(view, c), "unknown client"
            )
            return respond(self, "account", started, (status, body), via)

    @app.page("/accounts/{client}/deposits/{tx}")
    class DepositView(View):
        async def get(self, request: Request, client: str, tx: str) -> Response:
            started = time.perf_counter()
            if not api.authorized(request):
                return respond(self, "deposit", started, (401, {"error": "unauthorized"}), "none")
            c = queries.parse_id(client, queries.MAX_CLIENT)
            t = queries.parse_id(tx, queries.MAX_TX)
            if c is None or t is None:
                return respond(self, "deposit", started, _invalid("client and tx"), "none")
            cc, tt = c, t
            status, body, via = await api.answer(
                request,
                cc,
                lambda view: queries.deposit(view, cc, tt),
                "unknown deposit (a locked account's deposits are not kept)",
            )
            return respond(self, "deposit", started, (status, body), via)

    @app.page("/openapi.json")
    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return self.json(document(api.url))

    async def close(_sender: Any, /, *_args: Any, signal: Any = None, **_: Any) -> None:
        await api.close()

    app.on_before_shutdown.connect(close)

    return api
