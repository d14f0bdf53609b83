"""A time budget for awaiting I/O that does not blame the other side for the event loop's own lateness.

asyncio.timeout (and redis-py's socket timeout, built on it) cancels when its timer runs. In a process busy with
a burst (1,000 requests on two cores), every await waits behind hundreds of other callbacks, and a reply that came
in time may sit unread behind them: the wait is declared too long, the store down, and requests bypass a cache
that was fine. Here, when the budget runs out, the deadline first asks how busy the loop is: how late its own
check ran, plus how long the callbacks already queued take to run. If the loop spent more than a tenth of the
budget on other work, the wait cannot be blamed on the other side: the budget is extended by half, a bounded
number of times. An idle loop (the other side really is slow) ends the wait on budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MAX_EXTENSIONS = 8


@asynccontextmanager
async def within(budget_s: float | None, *, max_extensions: int = MAX_EXTENSIONS) -> AsyncIterator[None]:
    """asyncio.timeout(budget_s) (TimeoutError when it ends the wait), extended by half the budget, up to
    max_extensions times, whenever the event loop was busy with other work when it ran out. None: no budget."""
    if budget_s is None:
        yield
        return
    loop = asyncio.get_running_loop()
    grace, busy_limit = budget_s / 2, budget_s / 10
    async with asyncio.timeout(None) as timeout:
        pending: list[asyncio.Handle] = []  # the check to cancel is the last
        extensions = 0

        def check(due: float) -> None:
            # Runs after the callbacks queued before it: the time they take is how busy the loop is right now.
            pending.append(loop.call_soon(decide, due))

        def decide(due: float) -> None:
            nonlocal extensions
            now = loop.time()
            if now - due > busy_limit and extensions < max_extensions:
                extensions += 1
                pending.append(loop.call_at(now + grace, check, now + grace))
            else:
                timeout.reschedule(now)  # asyncio cancels the waiting task and raises TimeoutError at the `async with`

        due = loop.time() + budget_s
        pending.append(loop.call_at(due, check, due))
        try:
            yield
        finally:
            pending[-1].cancel()
