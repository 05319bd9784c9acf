"""The broker: one bounded queue per subscriber, and a fan-out that never waits.

It mirrors the Go fan-out example (a channel per client, every client gets every
message) with two differences that matter under load: a frame is encoded once
and the same object is offered to every queue, and a subscriber whose queue is
full is evicted instead of being waited for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Re-exported: the broker is the one way to the stores.
from broadcaster.fanout.stores.base import Backend as Backend
from broadcaster.fanout.stores.base import BackendUnavailable as BackendUnavailable
from broadcaster.fanout.stores.base import Draft, Replay, StoreDraft
from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.wire.events import Event, EventId, Frame, Mercure
from broadcaster.wire.topics import DEFAULT_MAX_LENGTH, check_topic

log = logging.getLogger("broadcaster.broker")

END = Frame(b"")
"""Queued after a subscription's last frame: the stream ends on it.
It is only ever compared by identity, never written."""

HIGH_WATER = 64 * 1024
"""Bytes a socket may have waiting in user space before frames queue instead."""


class Sink(Protocol):
    """The part of `asyncio.WriteTransport` a subscription uses."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


class Subscription:
    """One connected client: the topics it follows and its backlog of frames.

    Two delivery paths, one order. While the client is caught up (it has no
    backlog) and its socket is keeping up, `offer` writes the pre-framed chunk
    straight to the socket: no task wakes, nothing is copied. Otherwise the
    frame joins the backlog, a bounded `asyncio.Queue` that the stream drains:
    aiohttp's handler from its task, the front door from transport callbacks
    (told by `on_backlog`). A frame only goes direct when the backlog is empty,
    and the stream writes whatever it takes from the queue before anything else
    runs, so nothing overtakes anything.

    The queue is created the first time there is a backlog. A caught-up client
    never needs one, and an idle `asyncio.Queue` costs about 3 KB (four deques):
    at 10,000 streams, that was a fifth of the server's memory.

    It is registered with its broker from `open()` to `close()`, or for the
    duration of a `with` block; a plain class rather than a generator-based
    context manager, for the same reason of memory.
    """

    __slots__ = (
        "_broker", "_deadline", "_on_backlog", "_queue", "_queue_size", "_sink", "_transport",
        "_waiter", "evicted", "expired", "topics",
    )  # fmt: skip

    def __init__(
        self,
        broker: Broker,
        topics: frozenset[str],
        queue_size: int,
        transport: Sink | None,
        on_backlog: Callable[[], None] | None = None,
    ) -> None:
        self.topics = topics
        self.evicted = self.expired = False
        self._deadline: asyncio.TimerHandle | None = None
        self._broker = broker
        self._queue: asyncio.Queue[Frame] | None = None
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None
        self._transport = transport
        self._sink: Sink | None = None
        self._on_backlog = on_backlog

    def open(self) -> Subscription:
        """Register with the broker: frames for its topics start arriving."""
        self._broker._add(self)
        return self

    def close(self) -> None:
        """Unregister; closing twice, or after an eviction, is harmless."""
        if self._deadline is not None:
            # The timer holds this subscription: free it now, not at the deadline.
            self._deadline.cancel()
            self._deadline = None
        self._broker._remove(self)

    def __enter__(self) -> Subscription:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def end_at(self, when: float, final: Frame) -> None:
        """End the stream at epoch time `when` (a token's expiry): `final`, then END."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time())
        self._deadline = loop.call_at(loop.time() + delay, self._expire, final)

    def _expire(self, final: Frame) -> None:
        self._deadline = None
        self.expired = True
        if not (self.offer(final) and self.end()):
            self._broker._evict(self)

    @property
    def queue(self) -> asyncio.Queue[Frame] | None:
        """The backlog, once there has been one."""
        return self._queue

    def backlog_created(self) -> asyncio.Future[None]:
        """Resolves once `queue` exists. A plain future, not a coroutine: an idle
        stream waits on it, and a coroutine frame would be kept alive as well."""
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_future()
            if self._queue is not None:
                self._waiter.set_result(None)
        return self._waiter

    def go_direct(self) -> None:
        """Turn the fast path on, once the stream has caught up with its replay."""
        self._sink = self._transport

    def offer(self, frame: Frame) -> bool:
        """Deliver or queue `frame` without waiting; False when the backlog is full."""
        sink, queue = self._sink, self._queue
        if (
            sink is not None
            and (queue is None or queue.empty())
            and sink.get_write_buffer_size() < HIGH_WATER
            and not sink.is_closing()
        ):
            sink.write(frame.chunk)
            return True
        # A closing socket's frames queue too: that wakes its stream, whose write
        # fails and ends it. Nothing else would when aiohttp does not cancel the
        # handler of a departed client (`run_app`'s default, so an embedding
        # application's); when it does, the queue goes with the subscription.
        return self._put(frame)

    def end(self) -> bool:
        """Queue END; False when the backlog is full."""
        return self._put(END)

    def _put(self, frame: Frame) -> bool:
        queue = self._queue
        if queue is None:
            queue = self._queue = asyncio.Queue(self._queue_size)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
        was_empty = queue.empty()
        try:
            queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        if was_empty and self._on_backlog is not None:
            self._on_backlog()
        return True

    def take_all(self) -> list[Frame]:
        """Empty the backlog, oldest first, without waiting."""
        queue, frames = self._queue, []
        while queue is not None and not queue.empty():
            frames.append(queue.get_nowait())
        return frames

    def evict(self) -> None:
        self.evicted = True
        self._sink = None
        # The client is not reading, so a polite end of stream would never arrive.
        if self._transport is not None:
            self._transport.abort()


MAX_COUNTED_TOPICS = 1000
OTHER_TOPICS = "(other)"
"""Where publishes to topics past the first `MAX_COUNTED_TOPICS` are counted: a
publisher inventing topics must not grow the metrics (or this process) without
bound. Parentheses are not allowed in topic names, so this is never a topic."""


@dataclass(slots=True)
class BrokerStats:
    """Running totals, read by the metrics endpoint at scrape time."""

    published: Counter[str] = field(default_factory=Counter)
    label: Callable[[str], str] = str
    """The series a topic is counted under: the app folds families of short-lived
    topics (one per job) into one, so they neither grow the metrics nor use up
    the cap that ordinary topics share."""
    deliveries: int = 0
    evictions: int = 0
    replays: int = 0
    resyncs: int = 0

    def count_published(self, topic: str, events: int) -> None:
        topic = self.label(topic)
        if topic not in self.published and len(self.published) >= MAX_COUNTED_TOPICS:
            topic = OTHER_TOPICS
        self.published[topic] += events


Tap = Callable[[list[Event]], Iterable[tuple[Frame, Collection[Subscription]]]]
"""Picks, for a run of events, subscribers that follow something other than
their topic (Mercure's matchers), with the frame each group gets: the broker
offers it to them and evicts the full."""


class Broker:
    """The one way to the event store: publish, replay, subscribe, and the
    store's health and leadership; and the fan-out of every event it feeds back.

    `publish` stores an event and returns it with its id; the store then feeds
    every event back, in id order, to the fan-out, which offers each event's one
    `Frame` to every subscriber of its topic without waiting (a subscriber whose
    backlog is full is evicted). `subscribe` makes a `Subscription`; `replay`
    answers a reconnecting client's `Last-Event-ID`. `start()` before the first
    publish, `close_all()` to end every stream at shutdown, then `aclose()`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        queue_size: int,
        on_fanout: Callable[[float], None] | None = None,
        max_topic_length: int = DEFAULT_MAX_LENGTH,
        hold_window: float = 0.0,
    ) -> None:
        self._backend = backend
        self._max_topic_length = max_topic_length
        self.stats = BrokerStats()
        self._queue_size = queue_size
        self._on_fanout = on_fanout
        self._by_topic: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._closed = False
        self._batch: list[Event] | None = None
        self._taps: list[Tap] = []
        self._flush_due: asyncio.Handle | None = None
        self._hold_window = hold_window
        self._busy_until = 0.0
        self._storing = 0

    @property
    def name(self) -> str:
        """The store's name, as /healthz reports it."""
        return self._backend.name

    def healthy(self) -> bool:
        """Whether the store is reachable now."""
        return self._backend.healthy()

    def leads_ticker(self) -> bool:
        """Whether this instance's ticker should publish (one instance does)."""
        return self._backend.leads_ticker()

    async def aclose(self) -> None:
        """Stop the store's feed and release its connections."""
        await self._backend.aclose()

    @property
    def client_count(self) -> int:
        """How many subscriptions are open now."""
        return len(self._all)

    def topic_counts(self) -> dict[str, int]:
        return {topic: len(subs) for topic, subs in self._by_topic.items()}

    async def start(self) -> None:
        await self._backend.start(self._deliver)

    def subscribe(
        self,
        topics: Collection[str],
        transport: Sink | None = None,
        on_backlog: Callable[[], None] | None = None,
    ) -> Subscription:
        """A subscriber, registered from its `open()` to its `close()` (or for
        the duration of a `with` block).

        `transport` is the client's socket: eviction aborts it. `on_backlog` is
        called whenever the backlog goes from empty to not empty, for a stream
        that drains it from callbacks rather than from a task.
        """
        return Subscription(self, frozenset(topics), self._queue_size, transport, on_backlog)

    async def publish(
        self,
        topic: str,
        data: str,
        event: str | None = None,
        mercure: Mercure | None = None,
    ) -> Event:
        """Store an event and return it, with its id (`str(event.id)`); its
        subscribers get it once the store feeds it back, in id order. `event` is
        its type (None: `message`). Raises `InvalidTopic` for a name no stream
        could follow, and `BackendUnavailable` when the store cannot take it.
        A Mercure update (`mercure`) was checked by the hub: its topics are
        any strings, URLs included."""
        return (await self._store([self._checked((topic, data, event), mercure)]))[0]

    async def publish_many(self, drafts: Sequence[Draft]) -> list[Event]:
        """Publish several events at once (consecutive ids, all or none); they
        reach each subscriber together, in one write. Raises as `publish` does,
        storing none."""
        return await self._store([self._checked(draft, None) for draft in drafts])

    async def _store(self, drafts: list[StoreDraft]) -> list[Event]:
        self._storing += len(drafts)
        try:
            return await self._backend.publish_many(drafts)
        finally:
            self._storing -= len(drafts)

    def _checked(self, draft: Draft, mercure: Mercure | None) -> StoreDraft:
        topic, data, event = draft
        if mercure is None:
            topic = check_topic(topic, self._max_topic_length)
        return topic, data, event, mercure

    def backlog(self) -> int:
        """Events published here and not fanned out yet: held for a batch, or
        on their way to the store."""
        return len(self._batch or ()) + self._storing

    def add_tap(self, tap: Tap) -> None:
        """Also fan every event out to the subscribers `tap` picks for it."""
        self._taps.append(tap)

    async def find(self, custom_id: str) -> EventId | None:
        """The id of the oldest event in the history published with `custom_id`."""
        return await self._backend.find(custom_id)

    async def replay(self, last: EventId | None, topics: Collection[str] | None) -> Replay:
        replay = await self._backend.since(last, topics)
        if replay.complete:
            self.stats.replays += 1
        else:
            self.stats.resyncs += 1
        return replay

    def broadcast(self, frame: Frame) -> None:
        """Offer `frame` to every subscriber, whatever its topics (heartbeats)."""
        self._offer_all(self._all, frame)

    def close_all(self, final: Frame) -> None:
        """End every stream: what is held for this iteration, `final`, then END.
        Later subscribers end at once."""
        self.flush()
        self._closed = True
        log.info("Shutting down: telling %s", clients(len(self._all)))
        for sub in list(self._all):
            if not (sub.offer(final) and sub.end()):
                self._evict(sub)

    def _deliver(self, events: Sequence[Event]) -> None:
        """The backend's callback, with the events it has at hand, in id order.

        Events go out together, one write per subscriber, whenever they can:
        under load the per-socket write is what a delivery costs, so this is
        where capacity comes from. Order is kept: once a batch is open, every
        event joins it, and it goes out whole.

        - At an ordinary pace, the first events of a loop iteration are fanned
          out at once; events that follow in the same iteration are held to its
          end. Nothing waits on a clock.
        - When the fan-out is not keeping up (an event arrives before the last
          fan-out's end plus its own length, so fanning out takes at least half
          the loop), events are held for up to `hold_window` seconds, and
          whatever arrives meanwhile goes out with them.
        """
        if not events:
            return
        if self._batch is not None:
            self._batch.extend(events)
            return
        loop = asyncio.get_running_loop()
        self._batch = []
        if self._hold_window and self.busy():
            self._batch.extend(events)
            self._flush_due = loop.call_later(self._hold_window, self.flush)
        else:
            self._flush_due = loop.call_soon(self.flush)
            self._fan_out_all(events)

    def busy(self) -> bool:
        """Whether the fan-out is falling behind: the last one ended less than
        its own length ago."""
        return time.perf_counter() < self._busy_until

    def flush(self) -> None:
        """Fan out the events held for the end of this loop iteration, or window."""
        batch, self._batch = self._batch, None
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if batch:
            self._fan_out_all(batch)

    def _fan_out_all(self, events: Sequence[Event]) -> None:
        # Not `loop.time()`: uvloop's is cached per iteration, to the millisecond.
        started = time.perf_counter()
        for run in _same_topic_runs(events):
            self._fan_out(run)
        ended = time.perf_counter()
        self._busy_until = ended + (ended - started)

    def _fan_out(self, events: list[Event]) -> None:
        started = time.perf_counter()
        topic = events[0].topic
        subs = self._by_topic.get(topic, ())
        frame = events[0].frame if len(events) == 1 else Frame.joined([e.frame for e in events])
        delivered = self._offer_all(subs, frame)
        tapped = sum(
            self._offer_all(subs, tapped_frame) * (len(tapped_frame.parts) or 1)
            for tap in self._taps
            for tapped_frame, subs in tap(events)
        )
        self.stats.count_published(topic, len(events))
        self.stats.deliveries += delivered * len(events) + tapped
        delivered += tapped
        if self._on_fanout is not None:
            self._on_fanout(time.perf_counter() - started)
        # With nobody listening, a line per tick is noise; the Go example's
        # "Broadcast message" line is for watching a fan-out happen.
        level = logging.INFO if delivered else logging.DEBUG
        if log.isEnabledFor(level):
            to = clients(delivered)
            for event in events:
                log.log(level, "Broadcast message %s to %s", event.id, to)

    def _offer_all(self, subs: Collection[Subscription], frame: Frame) -> int:
        offered = len(subs)
        full = [sub for sub in subs if not sub.offer(frame)]
        # Evicting shrinks `subs` itself, so count before.
        for sub in full:
            self._evict(sub)
        return offered - len(full)

    def _add(self, sub: Subscription) -> None:
        self._all.add(sub)
        for topic in sub.topics:
            self._by_topic.setdefault(topic, set()).add(sub)
        log.info("Added new client (%d connected)", len(self._all))
        if self._closed:
            sub.end()

    def _remove(self, sub: Subscription) -> None:
        if sub not in self._all:
            return
        self._all.discard(sub)
        for topic in sub.topics:
            subs = self._by_topic[topic]
            subs.discard(sub)
            if not subs:
                del self._by_topic[topic]
        log.info("Removed client (%d connected)", len(self._all))

    def _evict(self, sub: Subscription) -> None:
        self.stats.evictions += 1
        log.warning("Evicted slow client: its queue of %d frames is full", self._queue_size)
        self._remove(sub)
        sub.evict()


def _same_topic_runs(events: Iterable[Event]) -> Iterator[list[Event]]:
    """Consecutive events of one topic, together; a subscriber of several topics
    still receives them in id order."""
    run: list[Event] = []
    for event in events:
        if run and event.topic != run[0].topic:
            yield run
            run = []
        run.append(event)
    if run:
        yield run


def clients(count: int) -> str:
    """`count` with its noun, for log lines and messages: "1 client", "3 clients"."""
    return f"{count} client" if count == 1 else f"{count} clients"


def open_store(history: int, redis_url: str | None, lease_seconds: float) -> Backend:
    """The in-memory store, or Redis Streams when given a URL."""
    if redis_url is None:
        return MemoryBackend(history)
    from broadcaster.fanout.stores.redis import RedisBackend  # only when asked for: imports redis

    return RedisBackend(redis_url, history, lease_seconds=lease_seconds)
