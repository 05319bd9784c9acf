"""CORS's rule, knowing no framework: which origins may read an answer, and the
headers that say so. `web/cors.py` applies it to aiohttp's answers; the stream
core puts it in a stream's header list, which both doors write."""

from __future__ import annotations

from collections.abc import Collection

Headers = tuple[tuple[str, str], ...]
EXPOSED = "Location, Mercure-Last-Event-ID"
"""Answer headers a script may read: a job's address, Mercure's replay anchor."""


def cors_headers(origin: str | None, allowed: Collection[str]) -> Headers:
    """The CORS headers of any answer. With no allow-list, answers never vary by origin."""
    if not allowed:
        return ()
    if origin is None or origin not in allowed:
        return (("Vary", "Origin"),)
    # Credentials too: an allowed page's EventSource `withCredentials` sends the
    # token cookie, as Mercure's clients do; every allowed origin is named.
    return (
        ("Vary", "Origin"),
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Expose-Headers", EXPOSED),
    )
