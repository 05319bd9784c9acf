"""The fast path (straight to the socket) and the queued path (the handler drains)
never reorder a subscriber's frames, however the switches between them fall.

The real `Subscription` and the real handler loop run against a socket stand-in
that records bytes and whose write buffer the test fills and empties at will.
The same steps then run against the front door's `StreamProtocol`, which drains
from transport callbacks instead of a handler task.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from broadcaster.backends.memory import MemoryBackend
from broadcaster.broker import Broker
from broadcaster.events import Event, EventId, Frame
from broadcaster.web.stream import _pump
from tests.conftest import RecordingSocket
from tests.protocol_kit import connect, door, get


class RecordingResponse:
    """The handler's view: `response.write`, which waits while the socket is full."""

    def __init__(self, socket: RecordingSocket) -> None:
        self.socket = socket

    async def write(self, data: bytes) -> None:
        self.socket.wire += data
        if self.socket.full:
            await self.socket.drained.wait()


Step = tuple[str, int]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 5)),
        st.tuples(st.just("publish-joined"), st.integers(2, 5)),
        st.tuples(st.just("full"), st.integers(0, 1)),
        st.tuples(st.just("run"), st.integers(1, 4)),
    ),
    max_size=40,
)


async def run(steps: list[Step]) -> tuple[bytes, bytes, int]:
    socket = RecordingSocket()
    sub = Broker(MemoryBackend(0), queue_size=10_000).subscribe({"t"}, socket)
    pump = asyncio.create_task(_pump(sub, RecordingResponse(socket), None, True))  # type: ignore[arg-type]
    expected = bytearray()
    seq = 0
    for kind, arg in steps:
        if kind.startswith("publish"):
            frames = []
            for _ in range(arg):
                seq += 1
                frames.append(Event("t", EventId(1, seq), f"message {seq}").frame)
                expected += frames[-1].data
            # Events published in one loop iteration reach the subscriber joined.
            for frame in [Frame.joined(frames)] if kind == "publish-joined" else frames:
                assert sub.offer(frame)
        elif kind == "full":
            socket.set_full(bool(arg))
        else:
            for _ in range(arg):
                await asyncio.sleep(0)
    socket.set_full(False)
    assert sub.end()
    assert await asyncio.wait_for(pump, 5) == "server shutdown"
    return bytes(socket.wire), bytes(expected), socket.direct_writes


def frames_for(kind: str, count: int, seq: int) -> tuple[list[Frame], bytes]:
    """The frames one publish step offers, and the bytes they must become."""
    events = [Event("t", EventId(1, seq + n + 1), f"message {seq + n + 1}") for n in range(count)]
    frames = [event.frame for event in events]
    expected = b"".join(bytes(frame.data) for frame in frames)
    # Events published in one loop iteration reach the subscriber joined.
    return ([Frame.joined(frames)] if kind == "publish-joined" else frames), expected


async def run_front_door(steps: list[Step]) -> tuple[bytes, bytes]:
    """`full` 1: the buffer is over the mark and the transport paused the
    protocol; 2: over the mark, not paused yet."""
    async with door() as front:
        protocol, transport = connect(front, get())
        preamble = transport.body()[0]
        expected = bytearray(preamble)
        seq = 0
        for kind, arg in steps:
            if kind.startswith("publish"):
                frames, wire = frames_for(kind, arg, seq)
                seq, expected = seq + arg, expected + wire
                for frame in frames:
                    front.broker.broadcast(frame)
            elif kind == "full":
                transport.set_buffer(full=arg > 0, pause=arg == 1)
            else:
                for _ in range(arg):
                    await asyncio.sleep(0)
        transport.set_buffer(full=False, pause=False)
        front.broker.close_all(Frame.of(b""))
        await asyncio.sleep(0)
        body, ended = transport.body()
        assert ended
        assert front.broker.stats.evictions == 0
        protocol.connection_lost(None)
        return body, bytes(expected)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_frames_arrive_in_publish_order(steps: list[Step]) -> None:
    wire, expected, _ = asyncio.run(run(steps))
    assert wire == expected


FRONT_DOOR_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 5)),
        st.tuples(st.just("publish-joined"), st.integers(2, 5)),
        st.tuples(st.just("full"), st.integers(0, 2)),
        st.tuples(st.just("run"), st.integers(1, 4)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=FRONT_DOOR_STEPS)
def test_frames_arrive_in_publish_order_through_the_front_door(steps: list[Step]) -> None:
    wire, expected = asyncio.run(run_front_door(steps))
    assert wire == expected


def test_both_paths_are_taken() -> None:
    steps = [("run", 1), ("publish", 2), ("full", 1), ("publish", 3), ("run", 2), ("full", 0)]
    steps += [("run", 3), ("publish", 2)]
    wire, expected, direct = asyncio.run(run(steps))
    assert wire == expected
    assert 0 < direct < 7
