"""The store's time budget: it ends a wait that is really too long, never one the event loop itself made late."""

from __future__ import annotations

import asyncio
import time

import pytest

from semcache.adapters.loop_deadline import within

pytestmark = pytest.mark.anyio


def _block_loop_at(delay_s: float, seconds: float) -> None:
    """Keep the event loop busy (as a burst of requests would) for seconds, starting delay_s from now."""
    asyncio.get_running_loop().call_later(delay_s, time.sleep, seconds)


async def _reply_at(delay_s: float) -> str:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(delay_s, future.set_result, "reply")
    return await future


async def test_a_reply_that_came_while_the_loop_was_busy_is_not_thrown_away() -> None:
    # The reply comes at 20 ms, in time for a 100 ms budget, but the loop is busy from 10 to 310 ms: afterwards the
    # deadline and the reply are due in the same turn, and asyncio.timeout lets the deadline win.
    _block_loop_at(0.01, 0.3)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await _reply_at(0.02)
    _block_loop_at(0.01, 0.3)
    async with within(0.1):
        assert await _reply_at(0.02) == "reply"


async def test_a_reply_that_is_really_late_still_ends_the_wait_on_budget() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with within(0.1):
            await _reply_at(5)
    assert 0.09 <= loop.time() - started < 1.0  # on budget (a loaded machine may add a little)


async def test_a_loop_that_stays_busy_extends_the_budget_a_bounded_number_of_times() -> None:
    loop = asyncio.get_running_loop()
    stop = loop.time() + 4

    def busy() -> None:  # 200 ms at a time for 4 s: every check of the deadline runs late
        time.sleep(0.2)
        if loop.time() < stop:
            loop.call_soon(busy)

    loop.call_soon(busy)
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with within(0.1, max_extensions=2):
            await _reply_at(10)
    # the budget, 2 extensions, then the cancellation: a turn of the busy loop (0.2 s) each, about 1.2-1.6 s in
    # all, not the 4 s the loop stays busy
    assert loop.time() - started < 2.5
    await asyncio.sleep(max(0.0, stop - loop.time()) + 0.1)


async def test_no_budget_waits() -> None:
    async with within(None):
        assert await _reply_at(0.01) == "reply"
