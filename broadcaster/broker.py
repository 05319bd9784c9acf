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
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from broadcaster.backends.base import Backend, Replay
from broadcaster.events import Event, EventId, Frame

log = logging.getLogger("broadcaster.broker")

END = Frame(b"")
"""Queued after a subscription's last frame: the stream handler returns on it.
It is only ever compared by identity, never written."""

HIGH_WATER = 64 * 1024
"""Bytes a socket may have waiting in user space before frames queue instead."""


class Sink(Protocol):
    """The part of `asyncio.WriteTransport` the fast path uses."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class Subscription:
    """One connected client: the topics it follows and its backlog of frames.

    Two delivery paths, one order. While the client is caught up (its queue is
    empty) and its socket is keeping up, `offer` writes the pre-framed chunk
    straight to the socket: no task wakes, nothing is copied. Otherwise the
    frame joins the queue, which the stream handler drains. A frame only goes
    direct when the queue is empty, and the handler writes whatever it takes
    from the queue before it next yields, so nothing overtakes anything.
    """

    __slots__ = ("_on_evict", "_sink", "evicted", "queue", "topics")

    def __init__(self, topics: frozenset[str], queue_size: int, on_evict: Callable[[], None]):
        self.topics = topics
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(queue_size)
        self.evicted = False
        self._on_evict = on_evict
        self._sink: Sink | None = None

    def write_directly_to(self, sink: Sink | None) -> None:
        """Turn the fast path on (to `sink`) once the stream is caught up, or off."""
        self._sink = sink

    def offer(self, frame: Frame) -> bool:
        """Deliver or queue `frame` without waiting; False when the backlog is full."""
        sink = self._sink
        if sink is not None and self.queue.empty() and sink.get_write_buffer_size() < HIGH_WATER:
            # A closing socket drops the frame: its handler is being cancelled.
            if not sink.is_closing():
                sink.write(frame.chunk)
            return True
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> bool:
        """Queue END; False when the backlog is full."""
        try:
            self.queue.put_nowait(END)
        except asyncio.QueueFull:
            return False
        return True

    def evict(self) -> None:
        self.evicted = True
        self._sink = None
        self._on_evict()


@dataclass(slots=True)
class BrokerStats:
    """Running totals, read by the metrics endpoint at scrape time."""

    published: Counter[str] = field(default_factory=Counter)
    deliveries: int = 0
    evictions: int = 0
    replays: int = 0
    resyncs: int = 0


class Broker:
    def __init__(
        self,
        backend: Backend,
        *,
        queue_size: int,
        on_fanout: Callable[[float], None] | None = None,
    ) -> None:
        self.backend = backend
        self.stats = BrokerStats()
        self._queue_size = queue_size
        self._on_fanout = on_fanout
        self._by_topic: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._closed = False
        self._batch: list[Event] | None = None

    @property
    def clients(self) -> int:
        return len(self._all)

    def topic_counts(self) -> dict[str, int]:
        return {topic: len(subs) for topic, subs in self._by_topic.items()}

    async def start(self) -> None:
        await self.backend.start(self._deliver)

    @contextmanager
    def subscribe(
        self, topics: Collection[str], on_evict: Callable[[], None] = lambda: None
    ) -> Iterator[Subscription]:
        """Register a subscriber for the duration of the `with` block."""
        sub = Subscription(frozenset(topics), self._queue_size, on_evict)
        self._add(sub)
        try:
            yield sub
        finally:
            self._remove(sub)

    async def publish(self, topic: str, data: str, type: str | None = None) -> Event:
        return await self.backend.publish(topic, data, type)

    async def replay(self, last: EventId, topics: Collection[str]) -> Replay:
        replay = await self.backend.since(last, topics)
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
        for sub in list(self._all):
            if not (sub.offer(final) and sub.end()):
                self._evict(sub)

    def _deliver(self, event: Event) -> None:
        """The backend's callback, once per event, in id order.

        The first event of a loop iteration is fanned out at once. Events that
        follow in the same iteration wait for its end and then go out together,
        one write per subscriber: under load, when many publishes land in one
        iteration, the per-socket write is what it costs, so this is where
        capacity comes from. Order is kept: once a batch is open, every event
        joins it.
        """
        if self._batch is None:
            self._batch = []
            asyncio.get_running_loop().call_soon(self.flush)
            self._fan_out([event])
        else:
            self._batch.append(event)

    def flush(self) -> None:
        """Fan out the events held for the end of this loop iteration."""
        batch, self._batch = self._batch, None
        for run in _same_topic_runs(batch or ()):
            self._fan_out(run)

    def _fan_out(self, events: list[Event]) -> None:
        started = time.perf_counter()
        topic = events[0].topic
        subs = self._by_topic.get(topic, ())
        frame = events[0].frame if len(events) == 1 else Frame.joined([e.frame for e in events])
        delivered = self._offer_all(subs, frame)
        self.stats.published[topic] += len(events)
        self.stats.deliveries += delivered * len(events)
        if self._on_fanout is not None:
            self._on_fanout(time.perf_counter() - started)
        for event in events:
            log.info("Broadcast message %s to %d clients", event.id, delivered)

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
