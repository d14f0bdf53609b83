"""Commands that concurrent requests issue in one turn of the event loop go to Redis together, as one pipeline.

A lookup is a command or two per request. Sent one by one, every command in flight holds a connection of the
pool until its task runs again, and when the process is busy (a burst of 1,000 requests) that is long after the
reply came: the pool (64) runs dry and requests fail with "No connection available" although Redis is idle, so
the cache was bypassed because we were busy, not because Redis was. Here a command goes at once when no other is
on its way (a request alone pays nothing); otherwise it waits for the end of the loop's turn, and the commands
queued meanwhile leave together on one connection: one write, one read, one wake-up. ioredis calls this
auto-pipelining; redis-py has no such option.

A lone command (the common case: one request at a time, and every command of a Lambda instance) goes on one
connection checked out of the pool once and kept, not through redis-py's client: checking a connection out of the
blocking pool and back, with the client's bookkeeping, cost about 0.1-0.2 ms a command right after a model run
(docs/performance.md), as much as the round trip itself. Only one lone command is ever in flight (it goes alone
only when nothing else is under way), so that connection is never shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

Command = tuple[Any, ...]

IDLE_CHECK_S = 1.0
"""The lone commands' connection, idle longer than this, is first checked as the pool checks the connections it hands
out (reconnected if the server closed it meanwhile: an idle timeout, a Lambda environment thawed after minutes).
Closed by the server within that second (a restart), it fails one command, whose caller degrades to no cache as for
any store error, and is reopened for the next."""


def packed(command: Command) -> bytes:
    """command as Redis reads it (RESP: an array of bulk strings); the same bytes as redis-py's pack_command, in a
    fifth of its time for a KNN query of 26 arguments (12 against 59 us, hand check), which the lone path pays on
    every lookup. Arguments are bytes, or anything whose str() is the value meant (str, int)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


class AutoPipeline:
    """Runs groups of commands, each group's together, batching the groups of concurrent callers.

    transaction=True wraps each group in a MULTI/EXEC of its own, so a group is applied atomically; the groups of one
    pipeline still share its round trip. (One MULTI/EXEC around every group of the pipeline would name the keys of
    several entries, which a cluster-mode server, MemoryDB or ElastiCache, refuses with CROSSSLOT however few its
    shards.) A group is never split across pipelines; a pipeline holds about max_commands commands, and the rest of
    a large batch goes in further pipelines at the same time.
    """

    def __init__(self, client: Redis, *, transaction: bool = False, max_commands: int = 64) -> None:
        if max_commands < 1:
            raise ValueError(f"max_commands must be at least 1, got {max_commands}")
        self._client = client
        self._transaction = transaction
        self._max = max_commands
        self._queue: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # round trips under way: a command issued meanwhile waits for the next turn's batch
        self._lone: AbstractConnection | None = None  # the lone commands' own connection, made on first use
        self._lone_used = -IDLE_CHECK_S  # when it last completed a command (the event loop's clock)
        self._lone_busy = False  # a command is between sending and its reply on it
        self.pipelines = 0
        """Pipelines (or lone commands) sent so far: fewer than the groups when callers were batched."""

    async def execute(self, *commands: Command) -> list[Any]:
        """The replies to these commands, in order; raises the first error among them (their own or the pipeline's)."""
        if not commands:
            raise ValueError("no command to execute")
        if not self._in_flight and not self._queue:  # nothing to share a round trip with: go now, in this task
            self.pipelines += 1
            self._in_flight += 1
            try:
                if len(commands) == 1 and not self._transaction:
                    return self._own([await self._alone(commands[0])])
                return self._own(await self._run([commands]))
            finally:
                self._in_flight -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)  # after the callbacks already due this turn, which may add theirs
        self._queue.append((commands, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        size = 0
        for group in queue:
            if batch and size + len(group[0]) > self._max:
                self._send_soon(batch)
                batch, size = [], 0
            batch.append(group)
            size += len(group[0])
        if batch:
            self._send_soon(batch)

    def _send_soon(self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        live = [(commands, future) for commands, future in batch if not future.done()]  # callers may have gone
        if not live:
            return
        self.pipelines += 1
        self._in_flight += 1
        try:
            replies = await self._run([commands for commands, _ in live])
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001  (any failure, even a bug, must reach the callers: none may hang)
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._in_flight -= 1
        start = 0
        for commands, future in live:
            mine = replies[start : start + len(commands)]
            start += len(commands)
            if not future.done():
                try:
                    future.set_result(self._own(mine))
                except Exception as exc:  # noqa: BLE001  (the caller's own error reply)
                    future.set_exception(exc)

    async def _run(self, groups: Sequence[Sequence[Command]]) -> list[Any]:
        """One round trip: the replies to every command of groups, errors in place."""
        if len(groups) == 1 and len(groups[0]) == 1 and not self._transaction:
            # Not on the lone commands' connection: a batch may go while a lone command is in flight there.
            try:
                return [await self._client.execute_command(*groups[0][0])]  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for commands in groups:
            if self._transaction:
                pipe.execute_command("MULTI")
            for command in commands:
                pipe.execute_command(*command)
            if self._transaction:
                pipe.execute_command("EXEC")
        replies = await pipe.execute(raise_on_error=False)
        return _executed(groups, replies) if self._transaction else replies

    async def _alone(self, command: Command) -> Any:
        """The reply to one command (its error in place), sent on the lone commands' connection. Only execute's
        direct path calls this, and it runs only when no other round trip is under way: never two at once."""
        pool, loop = self._client.connection_pool, asyncio.get_running_loop()
        conn = self._lone
        if conn is None:
            # Checked out of the pool once and kept: it counts against max_connections and closes with the pool.
            conn = self._lone = await pool.get_connection()  # type: ignore[no-untyped-call]
            self._lone_used = loop.time()  # the pool has just checked it
        self._lone_busy = True
        try:
            if loop.time() - self._lone_used > IDLE_CHECK_S:
                await pool.ensure_connection(conn)  # connects, or reconnects if the server has closed it
            await conn.send_packed_command(packed(command))
            reply = await conn.read_response()
        except ResponseError as exc:  # the command's own error: its reply was read, the connection is sound
            reply = exc
        except BaseException:
            # Cancelled (out of budget) or broken between sending and reading: a reply may be on its way, which
            # the next command would take for its own. This connection is dropped; sending the next reconnects it.
            await conn.disconnect(nowait=True)
            raise
        finally:
            self._lone_busy = False
        self._lone_used = loop.time()
        return reply

    @staticmethod
    def _own(replies: list[Any]) -> list[Any]:
        """A group's replies, or the first error among them raised."""
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def aclose(self) -> None:
        """Wait for the pipelines being sent (their callers are waiting for them too), and give the lone commands'
        connection back to the pool."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._lone is not None:
            conn, self._lone = self._lone, None
            if self._lone_busy:
                # A command's reply is still to come on it: given back as it is, the pool would hand that reply to
                # whoever took the connection next. Closed, its command fails and the pool reconnects it for the next.
                await conn.disconnect(nowait=True)
            await self._client.connection_pool.release(conn)


def _executed(groups: Sequence[Sequence[Command]], replies: list[Any]) -> list[Any]:
    """The replies to the commands of groups sent each as MULTI, the commands, EXEC: each command's reply from its
    group's EXEC, or, where the group was refused (a command refused as it was queued, OOM for one, and so the whole
    transaction), that first refusal in place of each of its replies."""
    out: list[Any] = []
    at = 0
    for commands in groups:
        n = len(commands)
        queued, executed = replies[at : at + n + 1], replies[at + n + 1]
        at += n + 2
        refused = next((r for r in queued if isinstance(r, Exception)), None)
        if refused is None and isinstance(executed, Exception):
            refused = executed
        if refused is None and not (isinstance(executed, list) and len(executed) == n):
            refused = ResponseError(f"unexpected EXEC reply: {executed!r:.200}")
        out.extend([refused] * n if refused is not None else executed)
    return out
