"""A token refusal as an HTTP answer: 401 with `WWW-Authenticate`, or 403."""

from __future__ import annotations

from broadcaster.auth.tokens import Refusal, challenge
from broadcaster.web.errors import ApiError


def api_error(refusal: Refusal) -> ApiError:
    return ApiError(refusal.status, refusal.message, challenge(refusal))
