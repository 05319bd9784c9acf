"""Exact wire bytes of encoded frames."""

from __future__ import annotations

import pytest

from broadcaster.wire import sse


@pytest.mark.parametrize(
    ("data", "id", "event", "wire"),
    [
        ("hello", None, None, b"data: hello\n\n"),
        ("hello", "1-2", "tick", b"id: 1-2\nevent: tick\ndata: hello\n\n"),
        ("a\nb\nc", None, None, b"data: a\ndata: b\ndata: c\n\n"),
        ("a\r\nb\rc", None, None, b"data: a\ndata: b\ndata: c\n\n"),
        ("trailing\n", None, None, b"data: trailing\ndata:\n\n"),
        ("", None, None, b"data:\n\n"),
        ("", "7", None, b"id: 7\ndata:\n\n"),
        ("\n", None, None, b"data:\ndata:\n\n"),
        (" lead", None, None, b"data:  lead\n\n"),
        ("héllo ✓ 🎉", None, None, "data: héllo ✓ 🎉\n\n".encode()),
        ("x", "1\r\n2\x003", None, b"id: 123\ndata: x\n\n"),
        ("x", None, "ev\nent\rx", b"event: eventx\ndata: x\n\n"),
        ("x", "", "", b"id: \ndata: x\n\n"),
        ("data: nested", None, None, b"data: data: nested\n\n"),
        (": not a comment", None, None, b"data: : not a comment\n\n"),
    ],
)
def test_encode_wire_bytes(data: str, id: str | None, event: str | None, wire: bytes) -> None:
    assert sse.encode(data, id=id, event=event) == wire


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", b":\n\n"),
        ("heartbeat", b": heartbeat\n\n"),
        ("two\nlines", b": two\n: lines\n\n"),
    ],
)
def test_comment_wire_bytes(text: str, wire: bytes) -> None:
    assert sse.comment(text) == wire


def test_retry_wire_bytes() -> None:
    assert sse.retry(2000) == b"retry: 2000\n\n"


def test_retry_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        sse.retry(-1)
