"""Tokens, topic patterns and where a token is read from: no framework, no server."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import time
import types
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.auth.carriers import token_from
from broadcaster.auth.patterns import InvalidPattern, Patterns
from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import (
    CLAIM,
    MAX_TOKEN_LENGTH,
    REASONS,
    Refusal,
    Verifier,
    challenge,
    mint,
)
from broadcaster.fanout.broker import END, Broker, Subscription
from broadcaster.fanout.stores.memory import MemoryBackend
from broadcaster.ops.config import SettingsError, parse_settings
from broadcaster.ops.logs import scrub
from broadcaster.web.stream_core import REAUTH

SECRET = "s3cret-" + "x" * 40
OTHER_SECRET = "other-" + "y" * 40


def sign(claims: dict[str, object], key: object = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)  # type: ignore[arg-type]


def later(seconds: float = 60) -> int:
    return int(time.time() + seconds)


def claims(subscribe: list[str], publish: list[str] | None = None) -> dict[str, object]:
    return {"exp": later(), CLAIM: {"subscribe": subscribe, "publish": publish or []}}


@pytest.mark.parametrize(
    ("patterns", "topic", "covered"),
    [
        (["user.42"], "user.42", True),
        (["user.42"], "user.420", False),
        (["user.42.*"], "user.42.inbox", True),
        (["user.42.*"], "user.42.", True),
        (["user.42.*"], "user.42", False),
        (["user.42.*"], "user.43.inbox", False),
        (["user.*"], "user.", True),
        (["*"], "anything", True),
        ([], "anything", False),
        (["a", "b.*"], "b.c", True),
    ],
)
def test_pattern_grammar(patterns: list[str], topic: str, covered: bool) -> None:
    assert Patterns.parse(patterns).covers(topic) is covered


@pytest.mark.parametrize("bad", ["", "a*b", "**", "user.*.x", "sp ace", "x" * 2000, 7, None])
def test_a_bad_pattern_is_refused_with_its_rule(bad: object) -> None:
    with pytest.raises(InvalidPattern, match="pattern"):
        Patterns.parse([bad])  # type: ignore[list-item]


def header_of(token: str, **changes: object) -> str:
    """`token` with its header rewritten (and the signature kept)."""
    head, body, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=="))
    header.update(changes)
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{body}.{signature}"


def unsigned(payload: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


BAD_TOKENS = {
    "garbage": ("not-a-jwt", "malformed"),
    "two parts": ("a.b", "malformed"),
    "bad base64": ("@@@.@@@.@@@", "malformed"),
    "expired": (sign({**claims(["*"]), "exp": later(-10)}), "expired"),
    "no exp": (sign({CLAIM: {"subscribe": ["*"]}}), "bad_claim"),
    "wrong secret": (sign(claims(["*"]), OTHER_SECRET), "bad_signature"),
    "alg none": (unsigned(claims(["*"])), "bad_algorithm"),
    "alg swapped": (header_of(sign(claims(["*"])), alg="HS512"), "bad_algorithm"),
    "audience not expected": (sign({**claims(["*"]), "aud": "elsewhere"}), "bad_audience"),
    "not yet valid": (sign({**claims(["*"]), "nbf": later(600)}), "not_yet_valid"),
    "oversized": ("a" * (MAX_TOKEN_LENGTH + 1), "too_large"),
    "claim not an object": (sign({"exp": later(), CLAIM: ["*"]}), "bad_claim"),
    "subscribe not a list": (sign({"exp": later(), CLAIM: {"subscribe": "*"}}), "bad_claim"),
    "bad pattern": (sign({"exp": later(), CLAIM: {"subscribe": ["a*b"]}}), "bad_claim"),
}


@pytest.mark.parametrize(("token", "reason"), BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_a_bad_token_is_refused_naming_the_problem(token: str, reason: str) -> None:
    with pytest.raises(Refusal) as caught:
        Verifier.from_secret(SECRET).verify(token)
    assert (caught.value.status, caught.value.reason) == (401, reason)
    assert reason in REASONS
    assert SECRET not in caught.value.message
    assert caught.value.message


def test_audience_and_issuer_are_checked_when_configured() -> None:
    verifier = Verifier.from_secret(SECRET, audience="app", issuer="auth.example")
    good = sign({**claims(["a"]), "aud": "app", "iss": "auth.example"})
    assert verifier.verify(good).subscribe.covers("a")
    for token, reason in [
        (sign({**claims(["a"]), "aud": "other", "iss": "auth.example"}), "bad_audience"),
        (sign({**claims(["a"]), "aud": "app", "iss": "evil"}), "bad_issuer"),
        (sign({**claims(["a"]), "iss": "auth.example"}), "bad_audience"),
        (sign({**claims(["a"]), "aud": "app"}), "bad_issuer"),
    ]:
        with pytest.raises(Refusal) as caught:
            verifier.verify(token)
        assert caught.value.reason == reason
        assert "expiry" not in caught.value.message
    with pytest.raises(Refusal, match="the token has no 'aud' claim, which is required"):
        verifier.verify(sign({**claims(["a"]), "iss": "auth.example"}))


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_public_keys_verify_their_own_algorithm_only(tmp_path: Path, kind: str) -> None:
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    algorithm = "RS256" if kind == "rsa" else "ES256"
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "key.pem").write_bytes(pem)
    verifier = Verifier.from_public_key(tmp_path / "key.pem")
    assert verifier.verify(sign(claims(["a"]), private, algorithm)).subscribe.covers("a")
    # The public key itself as an HMAC secret: the classic algorithm confusion.
    with pytest.raises(Refusal) as caught:
        verifier.verify(sign(claims(["a"]), SECRET))
    assert caught.value.reason == "bad_algorithm"


TOPIC = st.from_regex(r"[a-z0-9.]{1,12}", fullmatch=True)
PATTERN = st.builds(lambda t, star: t + "*" if star else t, TOPIC, st.booleans())


@given(st.lists(PATTERN, max_size=5), st.lists(TOPIC, min_size=1, max_size=5))
def test_no_token_grants_a_topic_its_claim_does_not_cover(
    granted: list[str], wanted: list[str]
) -> None:
    policy = Policy(["*"], Verifier.from_secret(SECRET))
    token = sign(claims(granted))
    allowed = all(
        any(t == p or (p.endswith("*") and t.startswith(p[:-1])) for p in granted) for t in wanted
    )
    if allowed:
        assert policy.subscribe(frozenset(wanted), token) is not None
    else:
        with pytest.raises(Refusal, match="does not allow subscribing") as caught:
            policy.subscribe(frozenset(wanted), token)
        assert caught.value.status == 403


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_any_token_text_is_refused_cleanly(text: str) -> None:
    with pytest.raises(Refusal) as caught:
        Policy(["*"], Verifier.from_secret(SECRET)).subscribe(frozenset({"a"}), text or "x")
    assert caught.value.status == 401


def test_public_topics_need_no_token_and_a_missing_one_is_401() -> None:
    policy = Policy(["user.*"], Verifier.from_secret(SECRET))
    assert policy.subscribe(frozenset({"ticker"}), None) is None
    with pytest.raises(Refusal) as caught:
        policy.subscribe(frozenset({"ticker", "user.1"}), None)
    assert (caught.value.status, caught.value.reason) == (401, "missing")
    assert "'user.1' is private" in caught.value.message
    expires = policy.subscribe(frozenset({"user.1"}), sign(claims(["user.1"])))
    assert expires is not None
    assert expires > time.time()


def test_publish_needs_a_covering_publish_claim() -> None:
    policy = Policy([], Verifier.from_secret(SECRET))
    policy.publish("chat.1", sign(claims([], ["chat.*"])))
    with pytest.raises(Refusal) as caught:
        policy.publish("other", sign(claims(["other"], ["chat.*"])))
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("authorization", "cookie", "query", "found"),
    [
        ("Bearer h", "broadcaster_token=c", {"access_token": "q"}, "h"),
        ("bearer  h ", None, {}, "h"),
        ("Basic h", "broadcaster_token=c", {"access_token": "q"}, "c"),
        (None, "a=1; broadcaster_token=c; b=2", {}, "c"),
        (None, "other_token=c", {"access_token": "q"}, "q"),
        (None, 'a={"x": 1}; broadcaster_token=c', {}, "c"),
        (None, "a=b c; broadcaster_token=c; other=d", {}, "c"),
        (None, 'broadcaster_token="c"', {}, "c"),
        (None, "xbroadcaster_token=c; broadcaster_token_2=d", {}, None),
        (None, "broadcaster_token=", {"access_token": "q"}, "q"),
        ("Bearer ", "", {}, None),
    ],
)
def test_where_the_token_is_read_from_in_order(
    authorization: str | None, cookie: str | None, query: dict[str, str], found: str | None
) -> None:
    assert token_from(authorization, cookie, query) == found


@pytest.mark.parametrize(
    ("path_qs", "logged"),
    [
        ("/events?access_token=abc&topic=a", "/events?access_token=***&topic=a"),
        ("/events?topic=a&access%5Ftoken=abc", "/events?topic=a&access%5Ftoken=***"),
        ("/events?topic=a&access_token", "/events?topic=a&access_token"),
        ("/events?topic=token", "/events?topic=token"),
        ("/events", "/events"),
    ],
)
def test_the_access_log_scrubs_query_tokens(path_qs: str, logged: str) -> None:
    assert scrub(path_qs) == logged


def test_minted_tokens_verify() -> None:
    token = mint(SECRET, ["user.1.*"], ["chat"], ttl=60)
    grant = Verifier.from_secret(SECRET).verify(token)
    assert grant.subscribe.covers("user.1.x")
    assert grant.publish.covers("chat")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--private-topics", "user.*"], "--private-topics needs a key"),
        (["--jwt-secret", SECRET, "--jwt-public-key", "/dev/null"], "not a PEM"),
        (["--jwt-secret", "short"], "at least 32 bytes"),
        (["--private-topics", "a*b", "--jwt-secret", SECRET], "invalid topic pattern"),
    ],
)
def test_inconsistent_settings_are_refused_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises((SettingsError, SystemExit)) as caught:
        parse_settings(argv, {})
    text = str(caught.value) + capsys.readouterr().err
    assert message in text
    assert SECRET not in text


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = parse_settings(["--jwt-secret", SECRET, "--publish-token", "pt"], {})
    assert SECRET not in repr(settings)
    assert "pt'" not in repr(settings)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = Verifier.from_secret(SECRET)
    token = sign(claims(["a"]))
    assert verifier.verify(token).subscribe.covers("a")
    expiry = float(jwt.decode(token, options={"verify_signature": False})["exp"])
    monkeypatch.setattr(time, "time", lambda: expiry + 1)
    with pytest.raises(Refusal) as caught:
        verifier.verify(token)
    assert caught.value.reason == "expired"


def held_by_a_timer(sub: Subscription) -> bool:
    """Whether a scheduled callback (the bound `_expire`) still refers to `sub`."""
    return any(isinstance(r, types.MethodType) for r in gc.get_referrers(sub))


async def test_a_stream_that_ends_before_its_token_frees_its_timer() -> None:
    broker = Broker(MemoryBackend(10), queue_size=8)
    with broker.subscribe({"user.1"}) as sub:
        sub.end_at(time.time() + 3600, REAUTH)
        assert held_by_a_timer(sub)
    # Cancelled: the loop's timer no longer holds the subscription for an hour.
    assert not held_by_a_timer(sub)


async def test_at_its_token_expiry_a_stream_gets_reauth_then_its_end() -> None:
    broker = Broker(MemoryBackend(10), queue_size=8)
    with broker.subscribe({"user.1"}) as sub:
        sub.end_at(time.time(), REAUTH)
        await asyncio.wait_for(sub.backlog_created(), 5)
        assert sub.take_all() == [REAUTH, END]
        assert sub.expired


@pytest.mark.parametrize(
    ("refusal", "header"),
    [
        (Refusal(401, "missing", "no token"), 'Bearer realm="broadcaster"'),
        (Refusal(401, "expired", "expired"), 'Bearer realm="broadcaster", error="invalid_token"'),
    ],
)
def test_a_401_challenge_is_well_formed(refusal: Refusal, header: str) -> None:
    # RFC 6750 section 3: auth-params are separated by commas.
    assert challenge(refusal) == {"WWW-Authenticate": header}
