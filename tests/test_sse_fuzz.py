"""The encoder, fuzzed: whatever the id, event name and payload, a parser no one
here wrote (sseclient-py) reads back exactly what was meant, and so does ours,
however the bytes are split on the way."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from sseclient import SSEClient

from broadcaster.wire import sse
from broadcaster.wire.sse_parser import SSEParser

LINE_BREAK = re.compile(r"\r\n|\r")
FIELD = st.one_of(st.none(), st.text(max_size=40))


def meant_data(data: str) -> str:
    """What a browser sees: CR LF and CR arrive as LF."""
    return LINE_BREAK.sub("\n", data)


@settings(max_examples=1000, deadline=None)
@given(data=st.text(), id=FIELD, event=FIELD, cuts=st.lists(st.integers(0, 10_000), max_size=5))
def test_round_trip_through_an_independent_parser(
    data: str, id: str | None, event: str | None, cuts: list[int]
) -> None:
    wire = sse.encode(data, id=id, event=event)
    event_type = sse.clean_field(event or "") or "message"

    (theirs,) = list(SSEClient(iter([wire])).events())
    assert theirs.data == meant_data(data)
    assert theirs.event == event_type
    if id is not None:
        assert theirs.id == sse.clean_field(id)

    pieces = [
        wire[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(wire)], strict=True)
    ]
    parser = SSEParser()
    (ours,) = [e for piece in pieces for e in parser.feed(piece)]
    assert (ours.data, ours.event) == (meant_data(data), event_type)
    assert ours.id == ("" if id is None else sse.clean_field(id))


@given(text=st.text())
def test_comments_are_invisible_to_an_independent_parser(text: str) -> None:
    wire = sse.comment(text) + sse.encode("after")
    assert [e.data for e in SSEClient(iter([wire])).events()] == ["after"]
