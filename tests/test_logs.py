from __future__ import annotations

import json

from tests.conftest import ServerFactory


def test_json_log_format_is_one_object_per_line(server_process: ServerFactory) -> None:
    server = server_process("--log-format", "json", "--tick-interval", "0.05")
    server.terminate()
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    messages = [line["message"] for line in lines]
    assert any(m.startswith("Running on http://127.0.0.1:") for m in messages)
    assert "No publish token set: only loopback clients may publish" in messages
