"""JWT verification and minting, with PyJWT.

The claim this server reads (the shape follows Mercure's `mercure` claim):

    {"exp": 1767225600,
     "broadcaster": {"subscribe": ["user.42.*", "jobs"], "publish": ["user.42.chat"]}}

Mercure's grants are read too, into the same `Grant`: the
`authorization_details` claim (RFC 9396, entries of type
`https://mercure.rocks/authorization-detail` with `actions` and `topics`
matchers; entries of other types are someone else's and ignored) and the older
`mercure: {"publish": [...], "subscribe": [...]}` claim, whose entries are exact
topics or `*`. A malformed Mercure entry refuses the whole token.

`exp` is required; `aud` and `iss` are checked when `--jwt-audience` and
`--jwt-issuer` are set (a token naming an audience is refused by a server that
names none). Both lists are optional and hold topic patterns (`patterns.py`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from broadcaster.auth.patterns import InvalidPattern, Patterns
from broadcaster.wire.matchers import EXACT, InvalidMatcher, Matcher

CLAIM = "broadcaster"
MERCURE_CLAIM = "mercure"
DETAILS_CLAIM = "authorization_details"
MERCURE_DETAIL = "https://mercure.rocks/authorization-detail"
ACTIONS = ("subscribe", "publish")
MAX_DETAILS = 64
MAX_DETAIL_TOPICS = 256
MAX_TOKEN_LENGTH = 4096  # what browsers keep in one cookie
MIN_SECRET_BYTES = 32  # RFC 7518 section 3.2, for HS256
CACHED_TOKENS = 4096
"""Verified tokens remembered, so that a user's tabs and reconnects skip PyJWT
(tens of µs each); bounded, so memory is too (a few MB at most)."""

REASONS = (
    "missing", "too_large", "malformed", "bad_algorithm", "bad_signature", "expired",
    "not_yet_valid", "bad_audience", "bad_issuer", "bad_claim", "not_covered",
)  # fmt: skip
"""Every refusal's label: a closed set, so metrics stay bounded."""


class Refusal(Exception):
    """A request the token does not allow: the status to answer, a label from
    `REASONS`, and a message naming the problem (never the key)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def challenge(refusal: Refusal, on_403: bool = False) -> dict[str, str]:
    """The headers a refusal's answer carries: `WWW-Authenticate` on a 401, and
    on a 403 too when `on_403` (Mercure's endpoint: RFC 6750's insufficient_scope)."""
    if on_403 and refusal.status == 403:
        return {"WWW-Authenticate": 'Bearer realm="broadcaster", error="insufficient_scope"'}
    if refusal.status != 401:
        return {}
    # RFC 6750 section 3: a missing token gets no error code.
    code = "" if refusal.reason == "missing" else ', error="invalid_token"'
    return {"WWW-Authenticate": f'Bearer realm="broadcaster"{code}'}


def invalid(reason: str, message: str) -> Refusal:
    return Refusal(401, reason, message)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows, and until when (epoch seconds)."""

    subscribe: Patterns
    publish: Patterns
    expires: float


class UnusableKey(ValueError):
    """The configured key cannot be used; the message says why."""


# PyJWT's exceptions, most specific first, and what each becomes.
_FAILURES: tuple[tuple[type[Exception], str, str], ...] = (
    (jwt.ExpiredSignatureError, "expired", "the token has expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid", "the token is not valid yet (nbf)"),
    (jwt.InvalidAudienceError, "bad_audience", "the token's audience (aud) is not accepted"),
    (jwt.InvalidIssuerError, "bad_issuer", "the token's issuer (iss) is not accepted"),
    (jwt.InvalidAlgorithmError, "bad_algorithm", "the token's algorithm (alg) is not accepted"),
    (jwt.InvalidSignatureError, "bad_signature", "the token's signature does not verify"),
    (jwt.InvalidKeyError, "bad_algorithm", "the token's algorithm does not fit the key"),
    (jwt.InvalidTokenError, "malformed", "the token is not a well-formed JWT"),
)


class Verifier:
    """Checks tokens against one key: an HS256 secret or an RS256/ES256 public key."""

    def __init__(
        self,
        key: bytes | RSAPublicKey | EllipticCurvePublicKey,
        algorithm: str,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._key = key
        self._algorithms = [algorithm]
        self._audience = audience
        self._issuer = issuer
        self._jwt = jwt.PyJWT({"require": ["exp"]})
        # Refusals are not cached (lru_cache keeps no exceptions); expiry is
        # checked on every use, since a cached grant outlives nothing else.
        self._verified = lru_cache(maxsize=CACHED_TOKENS)(self._decode)

    @classmethod
    def from_secret(
        cls, secret: str, audience: str | None = None, issuer: str | None = None
    ) -> Verifier:
        return cls(check_secret(secret), "HS256", audience, issuer)

    @classmethod
    def from_public_key(
        cls, path: Path, audience: str | None = None, issuer: str | None = None
    ) -> Verifier:
        key, algorithm = load_public_key(path)
        return cls(key, algorithm, audience, issuer)

    def verify(self, token: str) -> Grant:
        """The grant `token` carries, or a `Refusal` (401) saying what is wrong."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise invalid("too_large", f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        grant = self._verified(token)
        if grant.expires <= time.time():
            raise _refusal(jwt.ExpiredSignatureError())
        return grant

    def _decode(self, token: str) -> Grant:
        try:
            claims = self._jwt.decode(
                token, self._key, algorithms=self._algorithms,
                audience=self._audience, issuer=self._issuer,
            )  # fmt: skip
        except jwt.PyJWTError as error:
            raise _refusal(error) from None
        return grant(claims)


def _refusal(error: Exception) -> Refusal:
    if isinstance(error, jwt.MissingRequiredClaimError):
        reason = {"aud": "bad_audience", "iss": "bad_issuer"}.get(error.claim, "bad_claim")
        return invalid(reason, f"the token has no {error.claim!r} claim, which is required")
    for kind, reason, message in _FAILURES:
        if isinstance(error, kind):
            return invalid(reason, message)
    return invalid("malformed", "the token is not a well-formed JWT")


def grant(claims: Mapping[str, Any]) -> Grant:
    """The patterns in a verified token's claim."""
    claim = claims.get(CLAIM, {})
    if not isinstance(claim, Mapping):
        raise invalid("bad_claim", f"the token's {CLAIM!r} claim is not an object")
    try:
        subscribe, publish = _patterns(claim, "subscribe"), _patterns(claim, "publish")
        expires = float(claims["exp"])
    except (InvalidPattern, TypeError, ValueError) as error:
        raise invalid("bad_claim", f"the token's {CLAIM!r} claim: {error}") from None
    mercure = mercure_grants(claims)
    return Grant(subscribe | mercure["subscribe"], publish | mercure["publish"], expires)


def mercure_grants(claims: Mapping[str, Any]) -> dict[str, Patterns]:
    """What a token's Mercure claims allow, by action; a `Refusal` when malformed."""
    found: dict[str, list[Matcher]] = {action: [] for action in ACTIONS}
    try:
        _legacy(claims.get(MERCURE_CLAIM), found)
        _details(claims.get(DETAILS_CLAIM), found)
    except (InvalidMatcher, TypeError, ValueError) as error:
        raise invalid("bad_claim", f"the token's Mercure grants: {error}") from None
    return {action: _matched(tuple(matchers)) for action, matchers in found.items()}


def _legacy(claim: object, found: dict[str, list[Matcher]]) -> None:
    if claim is None:
        return
    if not isinstance(claim, Mapping):
        raise ValueError(f"the {MERCURE_CLAIM!r} claim is not an object")
    for action in ACTIONS:
        listed = claim.get(action, [])
        if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
            raise ValueError(f"{MERCURE_CLAIM}.{action} is not a list of topics")
        found[action] += [Matcher.parse(EXACT, topic) for topic in listed]


def _details(claim: object, found: dict[str, list[Matcher]]) -> None:
    if claim is None:
        return
    if not isinstance(claim, list) or len(claim) > MAX_DETAILS:
        raise ValueError(f"{DETAILS_CLAIM!r} is not a list of at most {MAX_DETAILS} objects")
    for detail in claim:
        if not isinstance(detail, Mapping):
            raise ValueError(f"an entry of {DETAILS_CLAIM!r} is not an object")
        if detail.get("type") != MERCURE_DETAIL:
            continue  # RFC 9396: another API's grant
        actions, topics = detail.get("actions"), detail.get("topics")
        if not (isinstance(actions, list) and actions and all(isinstance(a, str) for a in actions)):
            raise ValueError("a Mercure detail's 'actions' is not a non-empty list of strings")
        if not (isinstance(topics, list) and 0 < len(topics) <= MAX_DETAIL_TOPICS):
            raise ValueError(
                f"a Mercure detail's 'topics' is not a list of 1 to {MAX_DETAIL_TOPICS} matchers"
            )
        matchers = [_matcher(topic) for topic in topics]
        for action in ACTIONS:
            if action in actions:  # unknown actions grant nothing (the spec)
                found[action] += matchers


def _matcher(entry: object) -> Matcher:
    if not isinstance(entry, Mapping):
        raise ValueError("a topic matcher is not an object")
    match, kind = entry.get("match"), entry.get("match_type", EXACT)
    if not isinstance(match, str) or not isinstance(kind, str):
        raise ValueError("a topic matcher's 'match' and 'match_type' are not strings")
    return Matcher.parse(kind, match)


@lru_cache(maxsize=1024)
def _matched(matchers: tuple[Matcher, ...]) -> Patterns:
    return Patterns.of_matchers(matchers)


def _patterns(claim: Mapping[str, Any], name: str) -> Patterns:
    listed = claim.get(name, [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise InvalidPattern(f"{name!r} is not a list of topic patterns")
    return _parsed(tuple(listed))


@lru_cache(maxsize=1024)
def _parsed(patterns: tuple[str, ...]) -> Patterns:
    """Many tokens carry the same lists (every token of one user, or one role)."""
    return Patterns.parse(patterns)


def check_secret(secret: str) -> bytes:
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise UnusableKey(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes long")
    return key


def load_public_key(path: Path) -> tuple[RSAPublicKey | EllipticCurvePublicKey, str]:
    """The key in a PEM file, and the one algorithm it verifies (RS256 or ES256)."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as error:
        raise UnusableKey(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise UnusableKey(f"{path} is not a PEM public key") from None
    if isinstance(key, RSAPublicKey):
        return key, "RS256"
    if isinstance(key, EllipticCurvePublicKey):
        return key, "ES256"
    raise UnusableKey(f"{path} holds neither an RSA nor an EC public key")


def mint(
    secret: str,
    subscribe: Sequence[str] = (),
    publish: Sequence[str] = (),
    ttl: float = 3600,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 token for development (`broadcaster token`)."""
    Patterns.parse([*subscribe, *publish])  # refuse a bad pattern here, not at use
    claims: dict[str, Any] = {
        "exp": int(time.time() + ttl),
        CLAIM: {"subscribe": list(subscribe), "publish": list(publish)},
    }
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, check_secret(secret), algorithm="HS256")
