from __future__ import annotations

import asyncio
import time

import pytest

from broadcaster.fanout.broker import END, Broker
from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.wire.events import Frame
from tests.support.polling import until
from tests.support.transport import FakeTransport, dechunk


@pytest.fixture
async def broker() -> Broker:
    broker = Broker(MemoryBackend(100), queue_size=4)
    await broker.start()
    return broker


def drain(queue: asyncio.Queue[Frame] | None) -> list[Frame]:
    return [] if queue is None else [queue.get_nowait() for _ in range(queue.qsize())]


async def test_every_subscriber_gets_the_same_frame_object(broker: Broker) -> None:
    with broker.subscribe({"t"}) as a, broker.subscribe({"t"}) as b, broker.subscribe({"t"}) as c:
        event = await broker.publish("t", "hello")
        frames = [drain(s.queue) for s in (a, b, c)]
    assert all(f == [event.frame] for f in frames)
    assert frames[0][0] is frames[1][0] is frames[2][0]
    assert broker.stats.deliveries == 3


async def test_topics_route_and_unsubscribe_cleans_up(broker: Broker) -> None:
    with broker.subscribe({"a"}) as a, broker.subscribe({"a", "b"}) as ab:
        assert broker.topic_counts() == {"a": 2, "b": 1}
        await broker.publish("b", "only-b")
        assert (len(drain(a.queue)), len(drain(ab.queue))) == (0, 1)
    assert broker.client_count == 0
    assert broker.topic_counts() == {}


async def test_full_queue_evicts_only_that_subscriber(broker: Broker) -> None:
    socket = FakeTransport()
    with broker.subscribe({"t"}, socket) as slow, broker.subscribe({"t"}) as fast:
        for i in range(6):
            await broker.publish("t", str(i))
            broker.flush()
            drain(fast.queue)
        assert slow.evicted
        assert not fast.evicted
        assert socket.aborted
        assert broker.client_count == 1
        assert broker.stats.evictions == 1


async def test_close_all_ends_every_stream_and_later_ones(broker: Broker) -> None:
    final = Frame.of(b"event: shutdown\ndata:\n\n")
    with broker.subscribe({"t"}) as sub:
        broker.close_all(final)
        assert drain(sub.queue) == [final, END]
        with broker.subscribe({"t"}) as late:
            assert drain(late.queue) == [END]


async def test_close_all_evicts_a_subscriber_with_no_room(broker: Broker) -> None:
    with broker.subscribe({"t"}) as sub:
        for i in range(4):
            await broker.publish("t", str(i))
            broker.flush()
        broker.close_all(Frame.of(b":\n\n"))
        assert sub.evicted


async def test_broadcast_reaches_every_topic(broker: Broker) -> None:
    beat = Frame.of(b":\n\n")
    with broker.subscribe({"a"}) as a, broker.subscribe({"b"}) as b:
        broker.broadcast(beat)
        assert drain(a.queue) == drain(b.queue) == [beat]


async def test_events_of_one_iteration_go_out_together_in_order(broker: Broker) -> None:
    with broker.subscribe({"a"}) as a, broker.subscribe({"a", "b"}) as ab:
        events = [await broker.publish(topic, topic) for topic in ("a", "a", "a", "b", "a")]
        first = drain(ab.queue)
        assert first == [events[0].frame]  # the first goes out at once
        await until(lambda: ab.queue is not None and not ab.queue.empty())  # the rest, joined
        joined = drain(ab.queue)
        assert [f.parts for f in joined] == [(events[1].frame, events[2].frame), (), ()]
        assert [f.id for f in joined] == [events[2].id, events[3].id, events[4].id]
        parts = bytes(events[1].frame.payload) + bytes(events[2].frame.payload)
        assert bytes(joined[0].payload) == parts
        assert [f.id for f in drain(a.queue)] == [events[0].id, events[2].id, events[4].id]
    assert broker.stats.deliveries == 4 * 2 + 1
    assert broker.stats.published == {"a": 4, "b": 1}


async def test_close_all_sends_held_events_before_the_final_frame(broker: Broker) -> None:
    final = Frame.of(b"event: shutdown\ndata:\n\n")
    with broker.subscribe({"t"}) as sub:
        one, two = await broker.publish("t", "1"), await broker.publish("t", "2")
        broker.close_all(final)
        assert drain(sub.queue) == [one.frame, two.frame, final, END]


async def test_a_published_batch_reaches_each_subscriber_in_one_write(broker: Broker) -> None:
    sockets = [FakeTransport(), FakeTransport()]
    subs = [broker.subscribe({"a", "b"}, socket).open() for socket in sockets]
    for sub in subs:
        sub.go_direct()
    events = await broker.publish_many([("a", "1", None), ("a", "2", "x"), ("a", "3", None)])
    broker.flush()
    assert [e.id.seq for e in events] == [1, 2, 3]
    wire = b"".join(e.frame.payload for e in events)
    assert [(s.writes, dechunk(bytes(s.wire))) for s in sockets] == [(1, (wire, False))] * 2
    assert broker.stats.deliveries == 6
    for sub in subs:
        sub.close()


class SlowSocket(FakeTransport):
    """A socket whose every write costs `cost` seconds of the loop, as a write
    syscall to thousands of clients does, so the fan-out falls behind."""

    def __init__(self, cost: float) -> None:
        super().__init__()
        self.cost = cost
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        time.sleep(self.cost)  # the cost being simulated, not a wait for anything
        super().write(data)
        self.sent.append(data)


async def test_when_the_fan_out_falls_behind_events_are_held_and_go_out_together() -> None:
    broker = Broker(MemoryBackend(100), queue_size=100, hold_window=0.004)
    await broker.start()
    socket = SlowSocket(cost=0.01)
    with broker.subscribe({"t"}, socket) as sub:
        sub.go_direct()
        first = await broker.publish("t", "1")
        assert len(socket.sent) == 1  # nothing was held: the fan-out was idle
        await asyncio.sleep(0)  # the next publishes land in later loop iterations
        held = [await broker.publish("t", "2")]
        assert len(socket.sent) == 1  # the last fan-out took 10 ms: this one waits
        await asyncio.sleep(0)
        held.append(await broker.publish("t", "3"))
        assert broker.backlog() == 2  # what /metrics shows as the publish backlog
        deadline = time.monotonic() + 5
        while len(socket.sent) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        assert socket.sent == [first.frame.chunk, Frame.joined([e.frame for e in held]).chunk]
        assert broker.backlog() == 0
        # Once the fan-out has had time to spare, an event goes out at once again.
        socket.cost = 0
        while broker.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        last = await broker.publish("t", "4")
        assert socket.sent[-1] == last.frame.chunk
    assert broker.stats.deliveries == 4
