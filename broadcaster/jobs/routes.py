"""POST /jobs (upload a spreadsheet), GET /jobs and GET /jobs/{id}."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from broadcaster.auth.carriers import token_from
from broadcaster.auth.tokens import Refusal, mint
from broadcaster.jobs import data_dir
from broadcaster.jobs.registry import Job
from broadcaster.ops.config import Settings
from broadcaster.web.authorization import api_error
from broadcaster.web.errors import ApiError
from broadcaster.web.keys import JOBS, POLICY, SETTINGS

FIELD = "file"
_HOW = f"send it as a file in a field named {FIELD!r} (curl -F {FIELD}=@sales.csv)"
CHUNK = 256 * 1024
JOB_TOKEN_TTL = 24 * 3600  # an import of the largest upload ends well within it

log = logging.getLogger("broadcaster.jobs")


async def create_job(request: web.Request) -> web.Response:
    jobs, limit = request.app[JOBS], request.app[SETTINGS].max_upload_bytes
    too_large = ApiError(413, f"upload exceeds the limit of {limit} bytes (--max-upload-bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    if request.content_type != "multipart/form-data":
        raise ApiError(415, f"send the file as multipart/form-data in a field named {FIELD!r}")
    job_id = jobs.new_id()
    try:
        path = jobs.upload_path(job_id)
    except OSError as error:
        raise storage_error(error) from None
    try:
        filename = await _save_file_part(request, path, Budget(limit, too_large))
    except BaseException as error:
        # Nothing half-written stays (unless the directory has gone, taking it along).
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, ConnectionError):
            # The disk failed, not the client: a client leaving is a ConnectionError.
            raise storage_error(error) from None
        raise
    job = await jobs.start(job_id, filename, path)
    status_url = f"/jobs/{job.id}"
    events_url = f"/events?topic={job.topic}"
    if job.origin_id is not None:
        # Replays the job's events from its first, however late the client is.
        events_url += f"&lastEventId={job.origin_id}"
    body = {"id": job.id, "status_url": status_url, "events_url": events_url, "topic": job.topic}
    if request.app[POLICY].needs_token([job.topic]):
        body |= job_token(request.app[SETTINGS], job.topic)
    return web.json_response(body, status=202, headers={"Location": status_url})


def job_token(settings: Settings, topic: str) -> dict[str, str]:
    """A token for the uploader to follow its private job topic; only a server
    holding the HS256 secret can mint one (with a public key, the uploader's own
    token must cover the topic)."""
    if settings.jwt_secret is None:
        return {}
    token = mint(
        settings.jwt_secret, [topic], ttl=JOB_TOKEN_TTL,
        audience=settings.jwt_audience, issuer=settings.jwt_issuer,
    )  # fmt: skip
    return {"token": token}


class Budget:
    """Bytes the whole body may still use, other form fields included."""

    def __init__(self, limit: int, too_large: ApiError) -> None:
        self.left = limit
        self._too_large = too_large

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise self._too_large


async def _save_file_part(request: web.Request, path: Path, budget: Budget) -> str:
    """Stream the `file` part to `path`; other fields are read past. Returns its filename."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == FIELD:
                if part.filename is None:
                    raise ApiError(400, f"the {FIELD!r} field holds text, not a file: {_HOW}")
                await _copy(part, path, budget)
                return part.filename or "upload"
            await _copy(part, None, budget)
    except (ValueError, AssertionError, HttpProcessingError) as error:
        reason = _multipart_reason(error)
        raise ApiError(400, f"malformed multipart/form-data body: {reason}") from None
    raise ApiError(400, f"no file in the form: {_HOW}")


async def _copy(part: object, path: Path | None, budget: Budget) -> None:
    """Chunk by chunk: an upload is never held whole in memory."""
    if not isinstance(part, BodyPartReader):
        raise ApiError(400, "nested multipart bodies are not accepted")
    with path.open("wb") if path is not None else contextlib.nullcontext() as out:
        while chunk := await part.read_chunk(CHUNK):
            budget.spend(len(chunk))
            if out is not None:
                out.write(chunk)


def storage_error(error: OSError) -> ApiError:
    """A filesystem failure as an answer the client can act on, and one log line:
    the log names the path, the answer does not show a client the server's disk."""
    log.warning("Upload refused: %s", data_dir.reason(error))
    if data_dir.is_full(error):
        return ApiError(507, f"no space left to store the upload ({error.strerror})")
    return ApiError(503, f"the data directory is unusable ({error.strerror})")


def _multipart_reason(error: Exception) -> str:
    """aiohttp's words quote the body's bytes and its own internals; say what to fix."""
    text = str(error).lower()
    if "boundary" in text:
        return "its parts do not match the boundary named in Content-Type"
    return "a part's headers or framing are broken"


async def get_job(request: web.Request) -> web.Response:
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None:
        raise ApiError(404, f"no job {request.match_info['id'][:64]!r}")
    refusal = may_follow(request, job)
    if refusal is not None:
        request.app[POLICY].count(refusal)
        raise api_error(refusal)
    return web.json_response(shown(request, job))


async def list_jobs(request: web.Request) -> web.Response:
    jobs = [job for job in request.app[JOBS].all() if may_follow(request, job) is None]
    return web.json_response({"jobs": [shown(request, job) for job in jobs]})


def may_follow(request: web.Request, job: Job) -> Refusal | None:
    """A private job's state is shown to those who may follow its topic, and
    only them; the refusal they would get, otherwise."""
    policy = request.app[POLICY]
    if not policy.needs_token([job.topic]):
        return None
    headers = request.headers
    token = token_from(
        headers.get("Authorization"), headers.get("Cookie"), request.query, policy.cookie_name
    )
    try:
        policy.subscribe(frozenset({job.topic}), token)
    except Refusal as refusal:
        return refusal
    return None


def shown(request: web.Request, job: Job) -> dict[str, Any]:
    """A job's state, saying whether its topic needs a token: a page follows
    only the jobs it may."""
    return job.state() | {"private": bool(request.app[POLICY].needs_token([job.topic]))}
