"""aiohttp's access logger, writing the one access-line format of `ops/logs.py`."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from broadcaster.ops.logs import log_access
from broadcaster.web.keys import THROTTLED


class AccessLogger(AbstractAccessLogger):
    """One line per request. Streams log their own line when they end, because
    aiohttp writes no access line for a handler cancelled by a disconnect."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.method == "GET" and request.path == "/events" and response.status == 200:
            return
        where = (request.remote, request.method, request.path_qs)
        # One of thousands a second under overload, summarised by the throttle.
        level = logging.INFO if request.get(THROTTLED) else None
        log_access(self.logger, where, response.status, response.body_length, time, level=level)

    @property
    def enabled(self) -> bool:
        # The loudest line it writes is a WARNING; `log_access` checks each level.
        return self.logger.isEnabledFor(logging.WARNING)
