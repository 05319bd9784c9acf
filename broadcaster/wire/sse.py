"""Pure Server-Sent Events wire encoding (WHATWG HTML, "Server-sent events").

Everything here returns UTF-8 `bytes` ready for the socket. Fields that the
spec reads up to the end of a line (`id`, `event`) have CR, LF and NUL removed,
since a stray newline there would end the field early and let a publisher
inject fields of its own. Payload lines become one `data:` line each; CR LF, CR
and LF all count as line breaks, as they do for the browser's parser.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(r"[\r\n\x00]")


def clean_field(value: str) -> str:
    """Remove the characters that would end or void an `id`/`event` field."""
    return _FIELD_UNSAFE.sub("", value)


def encode(
    data: str, *, id: str | None = None, event: str | None = None, retry: int | None = None
) -> bytes:
    """One complete event frame, terminated by a blank line."""
    parts: list[str] = []
    if id is not None:
        parts.append(f"id: {clean_field(id)}\n")
    # An empty name means the default type, "message": leave the field out.
    if event:
        parts.append(f"event: {clean_field(event)}\n")
    if retry is not None:
        parts.append(f"retry: {retry}\n")
    for line in _LINE_BREAK.split(data):
        parts.append(f"data: {line}\n" if line else "data:\n")
    parts.append("\n")
    return "".join(parts).encode()


def comment(text: str = "") -> bytes:
    """A comment frame: ignored by clients, but it keeps idle connections alive."""
    lines = _LINE_BREAK.split(text)
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode() + b"\n"


def retry(milliseconds: int) -> bytes:
    """Tell the client how long to wait before reconnecting."""
    if milliseconds < 0:
        raise ValueError("retry must not be negative")
    return f"retry: {milliseconds}\n\n".encode()
