"""The Python client: `async for event in listen(url, topics=[...])`.

It imports nothing of the server's side, only the SSE parser in `wire/`.
"""

from broadcaster.client.listener import ListenError, Retry, listen
from broadcaster.wire.sse_parser import ServerEvent

__all__ = ["ListenError", "Retry", "ServerEvent", "listen"]
