"""docs/openapi.yaml against the running server: schemathesis generates requests
from it, and no answer may be a 5xx or fall outside the description. Publishing
is fuzzed without the token: nothing may get published."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp.test_utils import unused_port
from hypothesis import HealthCheck, given, settings

from tests.conftest import ServerProcess

TOKEN = "fuzz-proof-token"
EXAMPLES = 100


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("openapi")
    server = ServerProcess(
        ["--tick-interval", "3600", "--publish-token", TOKEN, "--data-dir", str(folder / "data"),
         "--log-level", "WARNING"],
        folder / "server.log",
        port=unused_port(),
    )  # fmt: skip
    server.start()
    yield server
    server.kill()


def operations(live_server: ServerProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.yaml")
    # Streams never end on their own: fuzzing them would only wait.
    fuzzed = (
        schema.exclude(path="/events")
        .exclude(path="/long")
        .exclude(path="/.well-known/mercure", method="GET")
    )
    return [result.ok() for result in fuzzed.get_all_operations()]  # type: ignore[union-attr]


def test_the_api_keeps_its_description(live_server: ServerProcess) -> None:
    # Driven through schemathesis's Python API: its pytest plugin does not load
    # under pytest 9.
    checked = []
    for operation in operations(live_server):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def check(case: Any) -> None:
            case.call_and_validate(timeout=10)

        check()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {
        "POST /publish",
        "POST /jobs",
        "GET /jobs/{id}",
        "GET /healthz",
        "POST /.well-known/mercure",
    } <= set(checked)
    print(f"schemathesis: {EXAMPLES} examples at most for each of {checked}")


def test_nothing_was_published_without_the_token(live_server: ServerProcess) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{live_server.url}/metrics") as response:
        metrics = response.read().decode()
    published = [
        line
        for line in metrics.splitlines()
        if line.startswith("broadcaster_events_published_total{")
    ]
    # Only the server's own announcements of uploaded jobs, never a fuzzed publish.
    assert all('topic="jobs"' in line or 'topic="job.' in line for line in published), published
    assert "Traceback" not in Path(live_server.log_path).read_text()
