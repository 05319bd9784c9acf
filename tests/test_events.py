from __future__ import annotations

import inspect
import types

import pytest

from broadcaster.wire.events import Event, EventId


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("1-2", EventId(1, 2)), (" 1795257957765-30 ", EventId(1795257957765, 30))],
)
def test_parse_id(text: str, parsed: EventId) -> None:
    assert EventId.parse(text) == parsed
    assert str(parsed) == text.strip()


@pytest.mark.parametrize(
    "text",
    ["", "12", "a-1", "1-", "-1", "1-2-3", "1.5-2", "1" * 21 + "-1", "0-" + "9" * 20],
)
def test_malformed_id_names_the_problem(text: str) -> None:
    with pytest.raises(ValueError, match="malformed event id"):
        EventId.parse(text)


def test_ids_order_across_epochs() -> None:
    assert EventId(1, 99) < EventId(2, 1) < EventId(2, 2)


def test_event_frame_is_encoded_once_with_its_id() -> None:
    event = Event("orders", EventId(3, 4), "hi", "created")
    assert bytes(event.frame.payload) == b"id: 3-4\nevent: created\ndata: hi\n\n"
    assert event.frame.chunk == b"21\r\nid: 3-4\nevent: created\ndata: hi\n\n\r\n"
    assert event.frame.id == EventId(3, 4)
    # Stored in a slot at construction, not computed on each read (a property
    # or a lazy cache would encode it again, or hold a dict per event).
    assert type(inspect.getattr_static(Event, "frame")) is types.MemberDescriptorType
    assert not hasattr(event, "__dict__")
