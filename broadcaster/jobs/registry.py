"""Background import jobs, and their progress published as events.

Each job has its own topic, `job.<id>`, carrying `created`, then `progress`
events a few times a second, then one `done` or `failed`. Every event's data is
the job's whole state as JSON, so a client that sees only the newest one is up
to date. New jobs are announced on the `jobs` topic, so that every open page
can follow them; that announcement comes just before the job's own first event,
so its id replays all of them to a subscriber who arrives late (`origin_id`).
Jobs run one at a time, in a worker thread; the registry lives in memory and is
forgotten on restart (the imported tables stay).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcaster.fanout.broker import BackendUnavailable, Broker
from broadcaster.jobs import data_dir
from broadcaster.jobs.importer import (
    MEMORY_BUDGET,
    Imported,
    ImportFailed,
    Progress,
    import_file,
    sniff,
)

log = logging.getLogger("broadcaster.jobs")

ANNOUNCE_TOPIC = "jobs"
PROGRESS_INTERVAL = 0.25  # seconds between progress events
KEPT_JOBS = 100  # finished jobs remembered for GET /jobs


JOB_TOPIC_PREFIX = "job."
JOB_TOPICS = "job.*"
"""How metrics name every job's topic at once; "*" is never in a topic name."""


def job_topic(job_id: str) -> str:
    return JOB_TOPIC_PREFIX + job_id


def is_job_topic(topic: str) -> bool:
    return topic.startswith(JOB_TOPIC_PREFIX)


def metrics_label(topic: str) -> str:
    """Every job's topic under one series: one per job would tell nothing that
    the job's own state does not."""
    return JOB_TOPICS if is_job_topic(topic) else topic


@dataclass
class Job:
    """One uploaded file's import: where it stands, as `GET /jobs/{id}` and every
    event on its topic (`job.<id>`) report it.

    `status` goes `queued`, `running`, then `done` or `failed`; `rows_done`,
    `total` and `fraction` move while it runs. Only the registry changes it, on
    the event loop (the worker thread reports progress through the loop).
    """

    id: str
    filename: str
    upload: Path
    status: str = "queued"
    rows_done: int = 0
    total: int | None = None
    fraction: float = 0.0
    started: float | None = None
    finished: float | None = None
    table: str | None = None
    error: str | None = None
    error_row: int | None = None
    last_event_id: str | None = None
    origin_id: str | None = None
    """The id just before this job's first event, or None if it could not be
    published: as a Last-Event-ID, it replays every event of the job."""
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def topic(self) -> str:
        return job_topic(self.id)

    def state(self) -> dict[str, Any]:
        elapsed = (self.finished or time.monotonic()) - self.started if self.started else 0.0
        return {
            "id": self.id,
            "filename": self.filename,
            "status": self.status,
            "rows_done": self.rows_done,
            "total": self.total,
            "percent": round(100 * self.fraction, 1),
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(self.rows_done / elapsed) if elapsed > 0 else 0,
            "table": self.table,
            "error": self.error,
            "error_row": self.error_row,
            "topic": self.topic,
            "last_event_id": self.last_event_id,
        }


class Jobs:
    """The registry of import jobs: starts them (one runs at a time, in a worker
    thread), publishes each one's progress through the broker, and remembers the
    last `KEPT_JOBS` finished ones for `GET /jobs`. `aclose()` stops running
    imports (rolled back) and waits for them."""

    def __init__(
        self,
        broker: Broker,
        directory: Path,
        is_private: Callable[[str], bool] = lambda _: False,
        xlsx_budget: int = MEMORY_BUDGET,
    ) -> None:
        """`is_private(topic)`: whether subscribing to `topic` needs a token. The
        announcement names the file only when the announcement topic itself is
        private, and says whether the job's own topic is. `xlsx_budget`: the
        bytes of memory the XLSX reader's process may use."""
        self._broker = broker
        self._xlsx_budget = xlsx_budget
        self._is_private = is_private
        self._data_dir = directory
        self._database = directory / "broadcaster.db"
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._one_at_a_time = asyncio.Semaphore(1)

    @property
    def database(self) -> Path:
        return self._database

    def upload_path(self, job_id: str) -> Path:
        """Where to store an upload; OSError when the data directory is unusable."""
        return data_dir.uploads(self._data_dir) / f"{job_id}.upload"

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(8)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        return list(self._jobs.values())

    async def start(self, job_id: str, filename: str, upload: Path) -> Job:
        """Register an uploaded file as a job, announce it, and queue the import."""
        job = Job(job_id, filename, upload)
        self._jobs[job.id] = job
        self._forget_old()
        job.origin_id = await self._publish_to(ANNOUNCE_TOPIC, "created", job, self._announced)
        await self._publish(job, "created")
        self._track(self._run(job))
        log.info("Job %s queued: %s", job.id, filename)
        return job

    async def aclose(self) -> None:
        """Stop running imports at their next batch (rolled back) and wait for them."""
        for job in self._jobs.values():
            job.cancelled.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: Job) -> None:
        async with self._one_at_a_time:
            job.status, job.started = "running", time.monotonic()
            try:
                imported = await asyncio.to_thread(self._import, job, asyncio.get_running_loop())
            except ImportFailed as failure:
                job.status, job.error, job.error_row = "failed", str(failure), failure.row
            except Exception:
                # A bug, not bad input: its traceback belongs in the log, and
                # the job must still end rather than stay "running" for ever.
                log.exception("Job %s: the import crashed", job.id)
                job.status, job.error = "failed", "internal error: see the server log"
            else:
                job.status, job.table, job.rows_done = "done", imported.table, imported.rows
                job.fraction = 1.0
            finally:
                job.finished = time.monotonic()
                self._remove_upload(job)
        level = logging.WARNING if job.status == "failed" else logging.INFO
        log.log(level, "Job %s %s: %s", job.id, job.status, job.error or f"{job.rows_done} rows")
        await self._publish(job, job.status)

    @staticmethod
    def _remove_upload(job: Job) -> None:
        try:
            job.upload.unlink(missing_ok=True)
        except OSError as error:
            log.warning("Job %s: upload not removed: %s", job.id, data_dir.reason(error))

    def _import(self, job: Job, loop: asyncio.AbstractEventLoop) -> Imported:
        """In the worker thread."""
        kind = sniff(job.upload, job.filename)
        last = 0.0

        def progress(update: Progress) -> None:
            nonlocal last
            job.rows_done, job.total, job.fraction = update.rows_done, update.total, update.fraction
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL:
                last = now
                loop.call_soon_threadsafe(self._publish_soon, job)

        return import_file(
            job.upload,
            kind,
            self._database,
            f"upload_{job.id}",
            progress,
            job.cancelled,
            self._xlsx_budget,
        )

    def _publish_soon(self, job: Job) -> None:
        self._track(self._publish(job, "progress"))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Keep a reference until done (the loop holds only weak ones); aclose waits."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, job: Job, event_type: str) -> None:
        await self._publish_to(job.topic, event_type, job)

    def _announced(self, job: Job) -> dict[str, Any]:
        state = job.state() | {"private": self._is_private(job.topic)}
        if not self._is_private(ANNOUNCE_TOPIC):
            del state["filename"]  # every visitor may read the announcements
        return state

    async def _publish_to(
        self,
        topic: str,
        event_type: str,
        job: Job,
        shown: Callable[[Job], dict[str, Any]] = Job.state,
    ) -> str | None:
        """The new event's id, or None if the backend could not take it."""
        # One publish at a time per job, so that its events keep their order.
        async with job.lock:
            try:
                event = await self._broker.publish(topic, json.dumps(shown(job)), event_type)
            except BackendUnavailable as error:
                log.warning("Job %s: %s event not published: %s", job.id, event_type, error)
                return None
            job.last_event_id = str(event.id)
            return job.last_event_id

    def _forget_old(self) -> None:
        finished = [j for j in self._jobs.values() if j.finished is not None]
        for job in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self._jobs[job.id]
