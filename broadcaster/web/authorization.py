"""A token refusal as an HTTP answer: 401 with `WWW-Authenticate`, or 403."""

from __future__ import annotations

from broadcaster.auth.tokens import Refusal
from broadcaster.web.errors import ApiError


def api_error(refusal: Refusal) -> ApiError:
    if refusal.status == 401:
        # RFC 6750 section 3: a missing token gets no error code.
        code = "" if refusal.reason == "missing" else ' error="invalid_token"'
        return ApiError(
            401, refusal.message, {"WWW-Authenticate": f'Bearer realm="broadcaster"{code}'}
        )
    return ApiError(refusal.status, refusal.message)
