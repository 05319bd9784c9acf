"""The Redis Streams backend: one history, one order and one set of ids, shared
by every instance. The only module that imports `redis`.

- Publishing is an XADD with an approximate MAXLEN (the history bound) to one
  stream for all topics, so Redis orders events across topics and its entry ids
  (`<ms>-<seq>`) are the event ids, the same on every instance. A batch is its
  XADDs in one MULTI/EXEC: one round trip, all or none, and next to each other.
- One reader task per instance follows the stream with XREAD BLOCK and hands
  every entry to the broker, in stream order; an instance's own publishes come
  back this way too, so all instances deliver the same sequence. It starts from
  the newest entry when the backend starts, taken before the app serves anyone.
- Replay is an XRANGE from the client's last id, in one transaction with the
  XINFO STREAM that gives its newest id.
- When Redis goes away, publishing raises `BackendUnavailable` (a 503), the
  reader retries every `RETRY_SECONDS` and resumes from the last id it saw, and
  the log says so once per change of state, not once per retry. Any call that
  Redis answers (a publish, a replay, the lease) marks it up and wakes the
  reader at once, so health and delivery never lag behind publishing.
- A lease (redis-py's `Lock`: taken without blocking, renewed only while this
  instance still holds it) elects the one instance whose ticker publishes; it
  moves when its holder dies or stalls past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Collection, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError, RedisError

from broadcaster.fanout.stores.base import BackendUnavailable, Deliver, Replay, StoreDraft
from broadcaster.wire.events import Event, EventId, Mercure

log = logging.getLogger("broadcaster.redis")

STREAM = "broadcaster:events"
LEADER = "broadcaster:ticker-leader"
BLOCK_MS = 1000
READ_COUNT = 1000
RETRY_SECONDS = 0.2
"""The reader's pause between attempts while Redis is away. Short, because
health and delivery wait on it: a growing backoff (it was 0.1 s to 5 s) kept both
down for seconds after Redis was back. An attempt is one connection, refused at
once or cut by `socket_connect_timeout`, which costs Redis no more than a probe."""


def _fields(draft: StoreDraft) -> dict[Any, Any]:
    topic, data, type, mercure = draft
    fields: dict[Any, Any] = {"topic": topic, "data": data}
    if type is not None:
        fields["type"] = type
    if mercure is not None:
        fields["mercure"] = mercure.to_json()
    return fields


# With decode_responses=True, redis-py answers str where its annotations allow bytes.
Entries = list[tuple[str, dict[str, str]]]


def _client(url: str, read_timeout: float) -> Redis:
    # No retries inside redis-py: a publish must fail fast (503) while Redis is
    # away, and the reader has its own pace of retries.
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=read_timeout,
        retry=Retry(NoBackoff(), 0),
    )


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, history: int, lease_seconds: float) -> None:
        self.instance = secrets.token_hex(4)
        self._writer = _client(url, read_timeout=2.0)
        self._reader = _client(url, read_timeout=BLOCK_MS / 1000 + 2.0)
        self._history = history
        self._lease_seconds = lease_seconds
        # Its value is this instance's id, so `GET` on it names the leader.
        self._lease = self._writer.lock(
            LEADER, timeout=lease_seconds, blocking=False, thread_local=False
        )
        self._last: str | None = None
        self._up: bool | None = None
        self._answered = asyncio.Event()
        self._positioning = asyncio.Lock()
        self._leader = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, deliver: Deliver) -> None:
        # Where the reader starts is taken now, before the app serves anyone: an
        # entry added between a subscriber's arrival and that moment would
        # never be delivered. If Redis is away, the reader takes it once back.
        with contextlib.suppress(RedisError):
            await self._take_start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read_forever(deliver), name="redis reader"),
            loop.create_task(self._lead_forever(), name="redis ticker lease"),
        ]

    async def publish(
        self, topic: str, data: str, type: str | None = None, mercure: Mercure | None = None
    ) -> Event:
        return (await self.publish_many([(topic, data, type, mercure)]))[0]

    async def publish_many(self, drafts: Sequence[StoreDraft]) -> list[Event]:
        # One MULTI/EXEC: one round trip, and the XADDs land next to each
        # other, so the reader takes them in one read and the broker fans them
        # out together.
        try:
            if self._last is None:
                # Or these very events could come before the reader's start.
                await self._take_start()
            async with self._writer.pipeline(transaction=len(drafts) > 1) as pipe:
                for draft in drafts:
                    pipe.xadd(STREAM, _fields(draft), maxlen=self._history, approximate=True)
                entry_ids = cast(list[str], await pipe.execute())
        except RedisError as error:
            self._mark_down(error)
            raise BackendUnavailable(f"Redis is unreachable ({error})") from None
        self._mark_up()
        return [
            Event(topic, EventId.parse(entry_id), data, type, mercure)
            for entry_id, (topic, data, type, mercure) in zip(entry_ids, drafts, strict=True)
        ]

    async def since(self, last: EventId | None, topics: Collection[str] | None) -> Replay:
        # One transaction, so the newest id reported is exactly the newest entry the
        # range can hold: the stream drops live frames at or below it as
        # already replayed, and takes every one after it. Read apart, entries
        # added between the two commands were sent twice (replayed and live),
        # and a trim between them could have cut the range without a resync.
        try:
            if self._last is None:
                # Else entries between the replay's newest id and a later start are lost.
                await self._take_start()
            async with self._writer.pipeline(transaction=True) as transaction:
                transaction.xinfo_stream(STREAM)
                transaction.xrange(STREAM, "-" if last is None else f"({last}", "+")
                info, entries = await transaction.execute(raise_on_error=False)
            info = self._stream_info(info)
        except RedisError as error:
            self._mark_down(error)
            return Replay([], complete=False, newest=None)
        self._mark_up()
        last_entry = info["last-entry"]
        newest = EventId.parse(last_entry[0]) if last_entry else None
        if last is not None and (
            newest is None or last > newest or last < self._oldest_complete(info)
        ):
            return Replay([], complete=False, newest=newest)
        if isinstance(entries, Exception):  # an id Redis refuses in XRANGE: not one of ours
            return Replay([], complete=False, newest=newest)
        events = (self._event(entry_id, fields) for entry_id, fields in cast(Entries, entries))
        kept = [e for e in events if e and (topics is None or e.topic in topics)]
        return Replay(kept, complete=True, newest=newest)

    async def find(self, custom_id: str) -> EventId | None:
        # The history is bounded (--history), so one pass over it is too.
        try:
            entries = cast(Entries, await self._writer.xrange(STREAM, "-", "+"))
        except RedisError as error:
            self._mark_down(error)
            return None
        for entry_id, fields in entries:
            event = self._event(entry_id, fields)
            if event and event.mercure and event.mercure.custom_id == custom_id:
                return event.id
        return None

    def healthy(self) -> bool:
        return bool(self._up)

    def leads_ticker(self) -> bool:
        return self._leader

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._leader:
            # Hand the lease over at once instead of letting it expire.
            with contextlib.suppress(RedisError):
                await self._lease.release()
        await self._writer.aclose()
        await self._reader.aclose()

    @staticmethod
    def _stream_info(reply: dict[str, Any] | Exception) -> dict[str, Any]:
        """XINFO STREAM's answer, with a stream not created yet read as empty."""
        if isinstance(reply, Exception):
            if "no such key" not in str(reply).lower():
                raise reply
            return {"last-entry": None, "first-entry": None}
        return reply

    @staticmethod
    def _oldest_complete(info: dict[str, Any]) -> EventId:
        """The oldest `last` id that replays without a gap.

        Redis 7 reports the newest id ever trimmed; anything from it on is whole.
        Older servers do not, so only ids from the oldest kept entry on count.
        """
        trimmed = info.get("max-deleted-entry-id")
        if isinstance(trimmed, str):
            return EventId.parse(trimmed)
        first = info.get("first-entry")
        return EventId.parse(first[0]) if first else EventId(0, 0)

    async def _read_forever(self, deliver: Deliver) -> None:
        while True:
            try:
                last = self._last or await self._take_start()
                replies = cast(
                    list[tuple[str, Entries]],
                    await self._reader.xread({STREAM: last}, block=BLOCK_MS, count=READ_COUNT),
                )
            except RedisError as error:
                self._mark_down(error)
                await self._drop_idle_connections()
                await self._pause_unless_answered()
                continue
            self._mark_up()
            events = []
            for _stream, entries in replies:
                for entry_id, fields in entries:
                    self._last = entry_id
                    event = self._event(entry_id, fields)
                    if event is not None:
                        events.append(event)
            if events:
                deliver(events)

    async def _take_start(self) -> str:
        """The reader's starting point: the newest entry, read once. Afterwards it
        always resumes from the last id seen, so nothing Redis accepted is ever
        skipped. Under a lock: a publish waits for a start being read, rather
        than landing before it."""
        async with self._positioning:
            if self._last is None:
                newest = cast(Entries, await self._writer.xrevrange(STREAM, count=1))
                self._last = newest[0][0] if newest else "0-0"
                self._mark_up()
            return self._last

    async def _drop_idle_connections(self) -> None:
        """Close the publisher's idle connections: a Redis that went away took
        them with it. redis-py 8 (maintenance notifications on "auto") no longer
        checks an idle connection before reusing it, so without this the first
        publish after Redis is back fails on a dead one."""
        with contextlib.suppress(RedisError, OSError):
            await self._writer.connection_pool.disconnect(inuse_connections=False)

    async def _pause_unless_answered(self) -> None:
        """Wait `RETRY_SECONDS` before the reader tries again, or less, if Redis
        answers another call meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RETRY_SECONDS):
                await self._answered.wait()

    async def _lead_forever(self) -> None:
        while True:
            self._set_leader(await self._hold_lease())
            await asyncio.sleep(self._lease_seconds / 3)

    async def _hold_lease(self) -> bool:
        """Renew the lease if this instance holds it, else try to take it."""
        try:
            if self._leader:
                await self._lease.reacquire()
                held = True
            else:
                held = await self._lease.acquire(token=self.instance)
        except LockNotOwnedError:
            # It lapsed, and may be another's by now: a renewal must not take it back.
            held = False
        except RedisError:
            return False
        self._mark_up()
        return held

    def _set_leader(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            if leader:
                log.info("Instance %s now leads the ticker", self.instance)
            else:
                log.info("Instance %s no longer leads the ticker", self.instance)

    def _event(self, entry_id: str, fields: dict[str, str]) -> Event | None:
        try:
            extra = fields.get("mercure")
            return Event(
                fields["topic"], EventId.parse(entry_id), fields["data"], fields.get("type"),
                None if extra is None else Mercure.from_json(extra),
            )  # fmt: skip
        except (KeyError, ValueError, TypeError):
            log.warning("Skipped stream entry %s: not a broadcaster event", entry_id)
            return None

    def _mark_down(self, error: Exception) -> None:
        if self._up is not False:
            log.warning("Redis unavailable: %s; publishing answers 503 until it is back", error)
        self._up = False
        self._answered.clear()

    def _mark_up(self) -> None:
        if self._up is False:
            log.warning("Redis connection restored; resuming from %s", self._last)
        elif self._up is None:
            log.info("Connected to Redis; instance %s", self.instance)
        self._up = True
        self._answered.set()
