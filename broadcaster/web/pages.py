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


def static_dir() -> Path:
    """Inside the package when installed from a wheel; at the top level in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "static", here.parent / "static"):
        if (candidate / "index.html").is_file():
            return candidate
    raise FileNotFoundError("static/index.html is missing from the installation")


def openapi_path() -> Path:
    """docs/openapi.yaml: shipped inside the package by the wheel, at the top in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "openapi.yaml", here.parent / "docs" / "openapi.yaml"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("openapi.yaml is missing from the installation")


def openapi_handler(path: Path) -> Handler:
    async def openapi(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={"Content-Type": "application/yaml"})

    return openapi


def index_handler(root: Path) -> Handler:
    page = root / "index.html"

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(page)

    return index


async def security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """An `on_response_prepare` hook; event streams carry no page, so they skip it."""
    if response.content_type == "text/event-stream":
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
