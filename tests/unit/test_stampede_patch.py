"""processor.stampede_patch: a cancelled waiter no longer breaks the shared operation.

Without the patch the first caller's `set_result` raises InvalidStateError
(the start-up crash seen in a rolling restart on Apache Kafka).
"""

from __future__ import annotations

import asyncio

from mode.utils.futures import StampedeWrapper

from processor.stampede_patch import install


async def _slow_create() -> str:
    await asyncio.sleep(0.05)
    return "created"


async def _first_caller_survives_a_cancelled_waiter() -> tuple[str, bool]:
    wrapper = StampedeWrapper(_slow_create)
    first = asyncio.ensure_future(wrapper())
    await asyncio.sleep(0.01)  # the first caller now runs the operation
    waiter = asyncio.ensure_future(wrapper())
    await asyncio.sleep(0.01)  # the second one waits on the shared future
    waiter.cancel()
    result = await first
    return result, waiter.cancelled()


async def _waiters_get_the_owners_error() -> str:
    async def fails() -> None:
        await asyncio.sleep(0.02)
        raise OSError("broker said no")

    wrapper = StampedeWrapper(fails)
    owner = asyncio.ensure_future(wrapper())
    await asyncio.sleep(0.005)
    waiter = asyncio.ensure_future(wrapper())
    await asyncio.gather(owner, waiter, return_exceptions=True)
    error = waiter.exception()
    return str(error)


def test_a_cancelled_waiter_does_not_break_the_first_callers_result() -> None:
    install()
    assert asyncio.run(_first_caller_survives_a_cancelled_waiter()) == ("created", True)


def test_waiters_receive_the_first_callers_error_instead_of_hanging() -> None:
    install()
    assert asyncio.run(asyncio.wait_for(_waiters_get_the_owners_error(), 5)) == "broker said no"
