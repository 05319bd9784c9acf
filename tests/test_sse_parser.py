"""The client-side parser, fed the way a network delivers: in arbitrary pieces."""

from __future__ import annotations

import pytest

from broadcaster.wire.sse_parser import ServerEvent, SSEParser


def parse(*chunks: bytes) -> list[ServerEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


@pytest.mark.parametrize(
    ("chunks", "events"),
    [
        ((b"data: a\n\n",), [ServerEvent("a")]),
        ((b"data: a\r\n\r\n",), [ServerEvent("a")]),
        ((b"data: a\r\rdata: b\r\r", b"data: c"), [ServerEvent("a"), ServerEvent("b")]),
        ((b"data: a\r", b"\n\r\n"), [ServerEvent("a")]),
        ((b"id: 5\nevent: tick\ndata: x\ndata: y\n\n",), [ServerEvent("x\ny", "tick", "5")]),
        ((b": comment\n\n",), []),
        ((b"data\n\n",), [ServerEvent("")]),
        ((b"data:no-space\n\n",), [ServerEvent("no-space")]),
        ((b"event: x\n\n", b"data: y\n\n"), [ServerEvent("y")]),
        ((b"id: 1\x002\ndata: z\n\n",), [ServerEvent("z")]),
        ((b"data: caf", b"\xc3", b"\xa9\n\n"), [ServerEvent("café")]),
        ((b"data: unfinished",), []),
    ],
)
def test_parse(chunks: tuple[bytes, ...], events: list[ServerEvent]) -> None:
    assert parse(*chunks) == events


def test_id_persists_across_events_and_retry_is_read() -> None:
    parser = SSEParser()
    events = list(parser.feed(b"retry: 1500\n\nid: 9\ndata: a\n\ndata: b\n\nretry: x\n\n"))
    assert events == [ServerEvent("a", id="9"), ServerEvent("b", id="9")]
    assert (parser.last_id, parser.retry) == ("9", 1500)
