"""Logging setup: readable text, or one JSON object per line for log shippers;
and the one format of an access line, whichever door served the request.

aiohttp's side of access logging (its `AbstractAccessLogger`) is
`web/access_log.py`; this module reads no request or response type."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from aiohttp.http_exceptions import HttpProcessingError

from broadcaster.auth.carriers import QUERY_PARAMETER

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed request, quoting the
    request's bytes. That is a client's mistake, not a bug here, and a hostile
    client could flood the log with them: drop it. `web.connection` logs one
    WARNING in its own words instead, and the access line follows."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestFilter())


# Polled by every open page and by Prometheus: a line per poll would drown the log.
QUIET_PATHS = frozenset({"/healthz", "/metrics", "/favicon.ico"})
QUIET_PREFIXES = ("/static/",)  # six files per page load say nothing a reader needs


def access_level(path: str, status: int) -> int:
    """Refusals and failures stand out; routine polling stays out of the way."""
    if status >= 500:
        return logging.WARNING
    if (path in QUIET_PATHS or path.startswith(QUIET_PREFIXES)) and status < 400:
        return logging.DEBUG
    return logging.INFO


SCRUBBED_PARAMETERS = frozenset({QUERY_PARAMETER})
"""Query parameters that carry secrets: never written to a log."""


def scrub(path_qs: str) -> str:
    """`path_qs` with the value of every secret query parameter replaced by `***`."""
    path, mark, query = path_qs.partition("?")
    if not mark or "token" not in unquote_plus(query).lower():
        return path_qs
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name) in SCRUBBED_PARAMETERS:
            parts[index] = f"{name}{equals}***"
    return f"{path}?{'&'.join(parts)}"


def log_access(
    logger: logging.Logger,
    request: tuple[str | None, str, str],
    status: int,
    size: int | None,
    elapsed: float,
    note: str = "",
    level: int | None = None,
) -> None:
    """One format for every access line, streams included:
    `remote "METHOD /path?query" status bytes seconds[, note]`; `level` when
    the handler knows better than the status (a refusal it summarises itself)."""
    remote, method, path_qs = request
    if level is None:
        level = access_level(path_qs.partition("?")[0], status)
    if logger.isEnabledFor(level):
        logger.log(
            level,
            '%s "%s %s" %d %s %.3fs%s',
            remote or "-",
            method,
            scrub(path_qs),
            status,
            "-" if size is None else size,
            elapsed,
            f", {note}" if note else "",
        )


class Summarised:
    """A warning that can repeat thousands of times a second (publishes refused
    under overload): written the first time, then at most once every `every`
    seconds, saying how many more there were. A metric counts every one."""

    __slots__ = ("_every", "_last", "_logger", "_since")

    def __init__(self, logger: logging.Logger, every: float = 10.0) -> None:
        self._logger, self._every = logger, every
        self._last: float | None = None
        self._since = 0

    def warning(self, message: str) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every:
            self._since += 1
            return
        more = f" (and {self._since} more like it since the last such line)" if self._since else ""
        self._logger.warning("%s%s", message, more)
        self._last, self._since = now, 0
