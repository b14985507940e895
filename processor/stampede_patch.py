"""Shield the shared future of mode's StampedeWrapper from its waiters' cancellation.

Tested with mode-streaming 0.7.1 and faust-streaming 0.15.3 (pyproject pins
both below their next minor release); `install` refuses other versions.

The bug: `StampedeWrapper` lets concurrent callers of one async operation
share its result. The first caller runs it and sets the result on a shared
future; the others `await` that future directly. A waiter that is cancelled
meanwhile (Faust cancels tasks during start-up and rebalances) cancels the
*shared* future with it, and the first caller's `fut.set_result(result)`
then raises InvalidStateError. Faust creates topics through such a wrapper
(`Transport._create_topic`), so a worker died at start-up with
`InvalidStateError: invalid state` from `maybe_declare` of a changelog topic:
seen once on Apache Kafka, where topic creation takes long enough (it goes
through the controller) for the window to matter, in a rolling restart.

The fix: waiters await the future through `asyncio.shield`, so cancelling a
waiter cancels only that waiter; and the owner sets the result only on a
future that is not done yet.
"""

from __future__ import annotations

import asyncio
from typing import Any

from mode.utils import futures

from processor.pins import require

TESTED_MODE = ("0.7.1",)


async def _call(self: Any) -> Any:
    await asyncio.sleep(0)
    fut = self.fut
    if fut is None:
        fut = asyncio.Future(loop=self.loop)
        self.fut = fut
        try:
            result = await self.fun(*self.args, **self.kwargs)
            if not fut.done():
                fut.set_result(result)
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            # The original leaves waiters hanging on an exception until the
            # next caller; hand them the error instead.
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            await asyncio.sleep(0)
            self.fut = None
        return result
    if fut.done():
        return fut.result()
    return await asyncio.shield(fut)


def install() -> None:
    require(
        "processor.stampede_patch",
        "mode-streaming",
        TESTED_MODE,
        "mode.utils.futures.StampedeWrapper",
    )
    futures.StampedeWrapper.__call__ = _call  # type: ignore[method-assign]
