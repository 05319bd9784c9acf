"""POST /jobs (upload a spreadsheet), GET /jobs and GET /jobs/{id}."""

from __future__ import annotations

from pathlib import Path

from aiohttp import BodyPartReader, web

from broadcaster.web.errors import ApiError
from broadcaster.web.keys import JOBS, SETTINGS

FIELD = "file"
CHUNK = 256 * 1024


async def create_job(request: web.Request) -> web.Response:
    jobs, limit = request.app[JOBS], request.app[SETTINGS].max_upload_bytes
    too_large = ApiError(413, f"upload exceeds the limit of {limit} bytes (--max-upload-bytes)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    if request.content_type != "multipart/form-data":
        raise ApiError(415, f"send the file as multipart/form-data in a field named {FIELD!r}")
    part = await _file_part(request)
    job_id = jobs.new_id()
    path = jobs.upload_path(job_id)
    try:
        await _save(part, path, limit, too_large)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    job = await jobs.start(job_id, part.filename or "upload")
    status_url = f"/jobs/{job.id}"
    body = {
        "id": job.id,
        "status_url": status_url,
        "events_url": f"/events?topic={job.topic}",
        "topic": job.topic,
    }
    return web.json_response(body, status=202, headers={"Location": status_url})


async def _file_part(request: web.Request) -> BodyPartReader:
    try:
        reader = await request.multipart()
        part = await reader.next()
    except (ValueError, AssertionError) as error:
        raise ApiError(400, f"malformed multipart body: {error}") from None
    if not isinstance(part, BodyPartReader) or part.name != FIELD or not part.filename:
        raise ApiError(400, f"the first part must be a file in a field named {FIELD!r}")
    return part


async def _save(part: BodyPartReader, path: Path, limit: int, too_large: ApiError) -> None:
    """Stream the part to disk, chunk by chunk: an upload is never held whole in memory."""
    size = 0
    with path.open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large
            out.write(chunk)


async def get_job(request: web.Request) -> web.Response:
    job = request.app[JOBS].get(request.match_info["id"])
    if job is None:
        raise ApiError(404, f"no job {request.match_info['id'][:64]!r}")
    return web.json_response(job.state())


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response({"jobs": [job.state() for job in request.app[JOBS].all()]})
