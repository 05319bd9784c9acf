"""The in-process backend: ids from a boot epoch and a counter, a bounded history ring."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection, Sequence
from itertools import islice

from broadcaster.fanout.stores.base import Deliver, Replay, StoreDraft
from broadcaster.wire.events import Event, EventId, Mercure


class MemoryBackend:
    name = "memory"

    def __init__(self, history: int, epoch: int | None = None) -> None:
        # Boot time in ms: a restarted server never reissues an id, and ids from a
        # previous run are recognised as foreign rather than misread as ours.
        self._epoch = time.time_ns() // 1_000_000 if epoch is None else epoch
        self._seq = 0
        self._ring: deque[Event] = deque(maxlen=history)
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def publish(
        self, topic: str, data: str, type: str | None = None, mercure: Mercure | None = None
    ) -> Event:
        return (await self.publish_many([(topic, data, type, mercure)]))[0]

    async def publish_many(self, drafts: Sequence[StoreDraft]) -> list[Event]:
        first = self._seq + 1
        self._seq += len(drafts)
        events = [
            Event(topic, EventId(self._epoch, seq), data, type, mercure)
            for seq, (topic, data, type, mercure) in enumerate(drafts, first)
        ]
        self._ring.extend(events)
        if self._deliver is not None:
            self._deliver(events)
        return events

    async def since(self, last: EventId | None, topics: Collection[str] | None) -> Replay:
        newest = EventId(self._epoch, self._seq) if self._seq else None
        first_seq = self._seq - len(self._ring) + 1
        if last is None:
            last = EventId(self._epoch, first_seq - 1)
        # Seqs in the ring are contiguous, so `last` is provably gap-free exactly
        # when it lies between the event just before the ring and the newest one.
        if last.epoch != self._epoch or not first_seq - 1 <= last.seq <= self._seq:
            return Replay([], complete=False, newest=newest)
        missed = islice(self._ring, last.seq - first_seq + 1, None)
        if topics is None:
            return Replay(list(missed), complete=True, newest=newest)
        return Replay([e for e in missed if e.topic in topics], complete=True, newest=newest)

    async def find(self, custom_id: str) -> EventId | None:
        for event in self._ring:
            if event.mercure is not None and event.mercure.custom_id == custom_id:
                return event.id
        return None

    def healthy(self) -> bool:
        return True

    def leads_ticker(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._deliver = None
