"""What went wrong talking to a server, in a person's words: network failures
without aiohttp's internals, and a refusal's own `error` text."""

from __future__ import annotations

import os
import socket
import ssl

import aiohttp
from yarl import URL


def describe(error: aiohttp.ClientError | TimeoutError, url: URL) -> str:
    """A network failure in a person's words, without aiohttp's internals."""
    origin = url.origin()
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect to {origin}: {_os_reason(error.os_error)}"
    if isinstance(error, TimeoutError):
        return f"no answer from {origin} in time"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return f"{origin} closed the connection"
    if isinstance(error, aiohttp.ClientPayloadError):
        return f"{origin} cut the response short"
    return f"talking to {origin} failed: {type(error).__name__}"


def _os_reason(error: OSError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its TLS certificate is not trusted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        if error.reason == "WRONG_VERSION_NUMBER":  # a plain-HTTP server's answer to a TLS hello
            return "it speaks plain HTTP, not TLS: use http://, not https://"
        return f"TLS failed ({error.reason})"
    if isinstance(error, socket.gaierror):
        return "no such host"
    if error.errno:
        return os.strerror(error.errno).lower()
    return str(error) or type(error).__name__


async def server_error(resp: aiohttp.ClientResponse) -> str:
    """The `error` text of the server's JSON answer, else the HTTP reason, on one line."""
    try:
        body = await resp.json(content_type=None)
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None
    text = str(message) if message else (resp.reason or "no reason given")
    return " ".join(text.split())[:500]
