"""Where a request carries its token, in order: an `Authorization: Bearer` header,
a cookie, then an `access_token` query parameter.

`EventSource` cannot set headers, so a browser sends a cookie (or, last resort,
the query parameter, which the access log scrubs: see `broadcaster.ops.logs`).
"""

from __future__ import annotations

from collections.abc import Mapping

QUERY_PARAMETER = "access_token"
DEFAULT_COOKIE = "broadcaster_token"


def bearer(authorization: str | None) -> str | None:
    """The token in an `Authorization: Bearer <token>` value; None for any other scheme."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def cookie(header: str | None, name: str) -> str | None:
    """The value of cookie `name` in a `Cookie` header value.

    Split as browsers send it (RFC 6265 section 5.4: `name=value` pairs joined
    by "; "), not with `http.cookies.SimpleCookie`, which stops at the first
    value it dislikes (JSON, a space): another cookie on the same site would
    hide the token.
    """
    if not header or name not in header:
        return None
    for pair in header.split(";"):
        key, equals, value = pair.strip().partition("=")
        if equals and key.strip() == name:
            return value.strip().strip('"') or None
    return None


def token_from(
    authorization: str | None,
    cookie_header: str | None,
    query: Mapping[str, str],
    cookie_name: str = DEFAULT_COOKIE,
) -> str | None:
    return (
        bearer(authorization)
        or cookie(cookie_header, cookie_name)
        or query.get(QUERY_PARAMETER)
        or None
    )
