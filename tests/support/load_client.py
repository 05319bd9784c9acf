"""The C load client (bench/loadclient.c), built and driven over its stdin/stdout.

The benchmark and the tests both drive it, so it lives here: bench/ imports
it, and no test imports bench/.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).resolve().parents[2] / "bench"
BUILD = SOURCES / "build"
PATH = "/events?topic=bench"
SERVER_CORE, CLIENT_CORE = 0, 1


def build() -> None:
    """Compile the load client and the trivial C server, if their sources changed."""
    BUILD.mkdir(exist_ok=True)
    for name in ("loadclient", "blaster", "publisher"):
        source, binary = SOURCES / f"{name}.c", BUILD / name
        if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
            subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)


def pin(core: int) -> Callable[[], None]:
    """A `preexec_fn` that keeps a child on one core, with its file limit raised."""

    def setup() -> None:
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {core})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


class LoadClient:
    """`clients` connections to `PATH`; `ask` sends a command and reads its JSON answer."""

    def __init__(self, port: int, clients: int) -> None:
        self.proc = subprocess.Popen(
            [str(BUILD / "loadclient"), "127.0.0.1", str(port), PATH, str(clients)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=pin(CLIENT_CORE),
        )  # fmt: skip
        self.ready = self._line()

    def _line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("load client exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdout, self.proc.stdin):
            if pipe is not None:
                pipe.close()
