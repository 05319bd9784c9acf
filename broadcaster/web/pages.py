"""The browser page and its scripts."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

# Inline scripts, inline styles and foreign origins are all refused: a payload
# that slips past escaping still cannot run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# Served at /favicon.ico too, where browsers look when a page names no icon;
# every current browser takes an SVG there when the Content-Type says so.
SVG = "image/svg+xml"

PACKAGE = Path(__file__).resolve().parent.parent


def bundled(in_package: str, in_checkout: str) -> Path:
    """A file or folder the wheel ships inside the package (see pyproject.toml);
    in a checkout it sits at the top level instead."""
    for candidate in (PACKAGE / in_package, PACKAGE.parent / in_checkout):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{in_checkout} is missing from the installation")


def static_dir() -> Path:
    return bundled("static", "static")


def openapi_path() -> Path:
    return bundled("openapi.yaml", "docs/openapi.yaml")


def file_handler(path: Path, content_type: str | None = None) -> Handler:
    headers = {"Content-Type": content_type} if content_type else None

    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=headers)

    return serve


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook; event streams carry no page, so they skip it."""
    if response.content_type == "text/event-stream":
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
