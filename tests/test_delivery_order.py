"""The fast path (straight to the socket) and the queued path (the handler drains)
never reorder a subscriber's frames, however the switches between them fall.

The real `Subscription` and the real handler loop run against a socket stand-in
that records bytes and whose write buffer the test fills and empties at will.
The same steps then run against the front door's `StreamProtocol`, which drains
from transport callbacks instead of a handler task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.fanout.broker import Broker
from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.web.stream import pump
from broadcaster.web.stream_core import Stream, StreamRequest
from broadcaster.wire.events import Event, EventId, Frame
from tests.support.front_door import connect, door, get
from tests.support.transport import FakeTransport, chunk


class RecordingResponse:
    """The handler's view: `response.write`, which frames a chunk and waits while
    the socket is full, as aiohttp's does."""

    def __init__(self, transport: FakeTransport) -> None:
        self.transport = transport
        self.writes = 0

    async def write(self, data: bytes) -> None:
        self.transport.write(chunk(data))
        self.writes += 1
        await self.transport.drained.wait()


Step = tuple[str, int]


def step_lists(buffer_states: int) -> st.SearchStrategy[list[Step]]:
    return st.lists(
        st.one_of(
            st.tuples(st.just("publish"), st.integers(1, 5)),
            st.tuples(st.just("publish-joined"), st.integers(2, 5)),
            st.tuples(st.just("full"), st.integers(0, buffer_states - 1)),
            st.tuples(st.just("run"), st.integers(1, 4)),
        ),
        max_size=40,
    )


async def play(
    steps: list[Step], offer: Callable[[Frame], None], set_full: Callable[[int], None]
) -> bytes:
    """Run the steps; returns the bytes the subscriber must end up with."""
    expected, seq = bytearray(), 0
    for kind, arg in steps:
        if kind.startswith("publish"):
            events = [
                Event("t", EventId(1, seq + n), f"message {seq + n}") for n in range(1, arg + 1)
            ]
            frames = [event.frame for event in events]
            seq, expected = seq + arg, expected + b"".join(bytes(f.payload) for f in frames)
            # Events published in one loop iteration reach the subscriber joined.
            for frame in [Frame.joined(frames)] if kind == "publish-joined" else frames:
                offer(frame)
        elif kind == "full":
            set_full(arg)
        else:
            for _ in range(arg):
                await asyncio.sleep(0)
    return bytes(expected)


async def run(steps: list[Step]) -> tuple[bytes, bytes, int]:
    socket = FakeTransport()
    request = StreamRequest(frozenset({"t"}), None, ())
    broker = Broker(MemoryBackend(0), queue_size=10_000)
    stream = Stream()
    sub = stream.open(broker, request, ("-", "/events"), socket)
    response = RecordingResponse(socket)
    pumping = asyncio.create_task(pump(stream, sub, response, True))  # type: ignore[arg-type]

    def offer(frame: Frame) -> None:
        assert sub.offer(frame)

    expected = await play(steps, offer, lambda state: socket.set_buffer(full=bool(state)))
    socket.set_buffer(full=False)
    assert sub.end()
    await asyncio.wait_for(pumping, 5)
    assert stream.ending == "server shutdown"
    stream.close()
    wire, ended = socket.payload()
    assert not ended
    return wire, bytes(expected), socket.writes - response.writes


async def run_front_door(steps: list[Step]) -> tuple[bytes, bytes]:
    """`full` 1: the buffer is over the mark and the transport paused the
    protocol; 2: over the mark, not paused yet."""
    async with door() as front:
        protocol, transport = connect(front, get())
        preamble = transport.body()[0]

        def set_full(state: int) -> None:
            transport.set_buffer(full=state > 0, pause=state == 1)

        expected = preamble + await play(steps, front.broker.broadcast, set_full)
        transport.set_buffer(full=False, pause=False)
        front.broker.close_all(Frame.of(b""))
        await transport.changed(lambda: transport.body()[1])
        body, _ = transport.body()
        assert front.broker.stats.evictions == 0
        protocol.connection_lost(None)
        return body, expected


@settings(max_examples=300, deadline=None)
@given(steps=step_lists(buffer_states=2))
def test_frames_arrive_in_publish_order(steps: list[Step]) -> None:
    wire, expected, _ = asyncio.run(run(steps))
    assert wire == expected


# More examples: reordering here needs the buffer over the mark without a pause,
# then a publish before the scheduled drain runs.
@settings(max_examples=600, deadline=None)
@given(steps=step_lists(buffer_states=3))
def test_frames_arrive_in_publish_order_through_the_front_door(steps: list[Step]) -> None:
    wire, expected = asyncio.run(run_front_door(steps))
    assert wire == expected


def test_both_paths_are_taken() -> None:
    steps = [("run", 1), ("publish", 2), ("full", 1), ("publish", 3), ("run", 2), ("full", 0)]
    steps += [("run", 3), ("publish", 2)]
    wire, expected, direct = asyncio.run(run(steps))
    assert wire == expected
    assert 0 < direct < 7
