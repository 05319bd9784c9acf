"""Private topics on the wire, against `python -m broadcaster`: through the front
door (a fresh connection) and through aiohttp (a kept-alive connection's second
request), the same answers."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.auth.tokens import CLAIM
from tests.conftest import ServerFactory, ServerProcess, read_until

SECRET = "wire-secret-" + "z" * 40
OPENED = b": connected\n\n\r\n"
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
DOORS = ["front door", "aiohttp"]


def token(subscribe: list[str], publish: list[str] | None = None, ttl: float = 600) -> str:
    claims = {
        "exp": int(time.time() + ttl),
        CLAIM: {"subscribe": subscribe, "publish": publish or []},
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def server(server_process: ServerFactory) -> ServerProcess:
    return server_process(
        "--tick-interval", "3600", "--private-topics", "user.*,job.*",
        env={"BROADCASTER_JWT_SECRET": SECRET},
    )  # fmt: skip


def request(query: str, headers: str = "") -> bytes:
    return f"GET /events?{query} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


def status_and_body(data: bytes) -> tuple[int, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def opened(server: ServerProcess, door: str, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        if door == "aiohttp":
            sock.sendall(HEALTH)
            read_until(sock, b"}")
        sock.sendall(raw)
        return read_until(sock, OPENED, timeout=5)


def refused(server: ServerProcess, door: str, raw: bytes) -> tuple[int, dict[str, object], bytes]:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        if door == "aiohttp":
            sock.sendall(HEALTH)
            read_until(sock, b"}")
        sock.sendall(raw)
        data = read_until(sock, b"}", timeout=5)
    status, body = status_and_body(data)
    return status, json.loads(body), data


@pytest.mark.parametrize("door", DOORS)
def test_private_topics_need_a_covering_token(server: ServerProcess, door: str) -> None:
    mine = token(["user.42.*"])
    cases = [
        (request("topic=user.42.inbox"), 401, "'user.42.inbox' is private"),
        (request("topic=user.43.inbox", f"Authorization: Bearer {mine}\r\n"), 403, "user.43"),
        (request("topic=ticker&topic=user.43.x", f"Cookie: broadcaster_token={mine}\r\n"), 403, ""),
        (request(f"topic=user.42.x&access_token={token(['user.*'], ttl=-5)}"), 401, "expired"),
        (request("topic=job.1", "Authorization: Bearer x.y.z\r\n"), 401, "well-formed"),
    ]
    for raw, status, words in cases:
        got, body, data = refused(server, door, raw)
        assert (got, body["status"]) == (status, status), data
        assert words in str(body["error"])
        assert (b"WWW-Authenticate: Bearer" in data) == (status == 401)
        assert SECRET.encode() not in data
    for raw in [
        request("topic=ticker"),
        request("topic=user.42.inbox", f"Authorization: Bearer {mine}\r\n"),
        request("topic=user.42.inbox", f"Cookie: a=b; broadcaster_token={mine}\r\n"),
        request(f"topic=user.42.inbox&topic=ticker&access_token={mine}"),
    ]:
        assert opened(server, door, raw).startswith(b"HTTP/1.1 200 OK\r\n")
    log = server.log()
    assert mine not in log
    assert "access_token=***" in log
    assert "Traceback" not in log


def test_refusals_are_counted_once_by_reason(server: ServerProcess) -> None:
    for door in DOORS:
        refused(server, door, request("topic=user.1"))
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = read_until(sock, None).decode()
    assert 'broadcaster_auth_refusals_total{reason="missing"} 2.0' in metrics
    assert 'broadcaster_auth_refusals_total{reason="expired"} 0.0' in metrics


def test_a_private_topic_gets_only_what_is_published_to_it(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            request("topic=user.42.inbox", f"Authorization: Bearer {token(['user.42.*'])}\r\n")
        )
        read_until(sock, OPENED, timeout=5)
        for topic in ("user.43.inbox", "user.42.inbox"):
            body = json.dumps({"topic": topic, "data": f"for {topic}"}).encode()
            with socket.create_connection(("127.0.0.1", server.port)) as pub:
                pub.sendall(
                    b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                )
                read_until(pub, b"}")
        got = read_until(sock, b"for user.42.inbox", timeout=5)
        assert b"user.43" not in got
        # Open endpoints count private topics without naming them.
        for path in ("/healthz", "/metrics"):
            with socket.create_connection(("127.0.0.1", server.port)) as probe:
                probe.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                )
                answer = read_until(probe, None).decode()
            assert "user.4" not in answer, path
            assert "(private)" in answer, path


def post_publish(server: ServerProcess, topic: str, authorization: str | None) -> int:
    body = json.dumps({"topic": topic, "data": "x"}).encode()
    header = b"" if authorization is None else f"Authorization: {authorization}\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%b"
            b"Content-Length: %d\r\n\r\n%b" % (header, len(body), body)
        )
        return status_and_body(read_until(sock, b"}"))[0]


def test_a_publish_claim_allows_publishing_to_what_it_covers(
    server_process: ServerFactory,
) -> None:
    server = server_process(
        "--tick-interval", "3600", "--publish-token", "the-old-token",
        env={"BROADCASTER_JWT_SECRET": SECRET},
    )  # fmt: skip
    writer = token([], ["chat.*"])
    assert post_publish(server, "chat.1", f"Bearer {writer}") == 200
    assert post_publish(server, "news", f"Bearer {writer}") == 403
    assert post_publish(server, "chat.1", f"Bearer {token(['chat.*'])}") == 403
    assert post_publish(server, "chat.1", f"Bearer {token([], ['chat.*'], ttl=-5)}") == 401
    assert post_publish(server, "news", "Bearer the-old-token") == 200
    assert post_publish(server, "news", "Bearer the-wrong-token") == 403
    assert post_publish(server, "news", None) == 401
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = read_until(sock, None).decode()
    assert 'broadcaster_events_published_total{topic="chat.1"} 1.0' in metrics
    assert 'broadcaster_events_published_total{topic="news"} 1.0' in metrics
    assert 'broadcaster_auth_refusals_total{reason="not_covered"} 2.0' in metrics


TOKEN_TEXT = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF), min_size=1, max_size=200
) | st.builds(lambda t: t[: len(t) // 2], st.just(token(["user.*"])))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=TOKEN_TEXT, door=st.sampled_from(DOORS), where=st.sampled_from(["query", "header"]))
def test_fuzzed_tokens_are_refused_with_401(
    server: ServerProcess, value: str, door: str, where: str
) -> None:
    if where == "query":
        raw = request(f"topic=user.1&access_token={quote(value, safe='')}")
    else:
        raw = request("topic=user.1", f"Authorization: Bearer {value}\r\n")
    status, body, _ = refused(server, door, raw)
    assert status in (400, 401), body
    assert body["status"] == status


@pytest.mark.parametrize("door", DOORS)
def test_a_stream_ends_with_reauth_when_its_token_expires(server: ServerProcess, door: str) -> None:
    short = token(["user.7"], ttl=2)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        if door == "aiohttp":
            sock.sendall(HEALTH)
            read_until(sock, b"}")
        sock.sendall(request("topic=user.7&topic=ticker", f"Authorization: Bearer {short}\r\n"))
        data = read_until(sock, None, timeout=10)  # until the server closes
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b'event: reauth\ndata: {"reason": "token expired"}\n\n' in data
    assert data.endswith(b"0\r\n\r\n")
    assert "stream ended: token expired" in server.log()
