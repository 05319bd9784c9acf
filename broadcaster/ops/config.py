"""Settings: one frozen value, read from CLI flags with `BROADCASTER_*` env fallbacks.

Every setting is declared once, in `OPTIONS`; the argument parser, the env var
names and the README's configuration table all follow from that one list.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broadcaster.auth.carriers import DEFAULT_COOKIE
from broadcaster.auth.patterns import InvalidPattern, Patterns
from broadcaster.auth.policy import Policy
from broadcaster.auth.tokens import UnusableKey, Verifier, check_secret, load_public_key

ENV_PREFIX = "BROADCASTER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    tick_interval: float = 5.0
    queue_size: int = 256
    coalesce_ms: float = 5.0
    heartbeat_interval: float = 15.0
    retry_ms: int = 2000
    history: int = 1000
    max_clients: int = 10_000
    max_topics: int = 32
    max_topic_length: int = 64
    max_event_bytes: int = 64 * 1024
    max_publish_bytes: int = 1024 * 1024
    max_publish_lag_ms: int = 500
    publish_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "text"
    shutdown_timeout: float = 1.0
    idle_timeout: float = 15.0
    min_body_rate: int = 500
    data_dir: Path = Path("data")
    max_upload_bytes: int = 256 * 1024 * 1024
    xlsx_memory_mib: int = 2048
    redis_url: str | None = None
    cors_origins: tuple[str, ...] = ()
    private_topics: tuple[str, ...] = ()
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: Path | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    token_cookie: str = DEFAULT_COOKIE
    mercure: str = "on"


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: how it is parsed and checked, and what `--help` says."""

    name: str
    parse: Callable[[str], Any]
    help: str


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {_shown(low)}..{_shown(high)}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _choice(options: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if options is LOG_LEVELS else text.lower()
        if value not in options:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(options)}")
        return value

    parse.__name__ = "choice"
    return parse


def _token(text: str) -> str | None:
    return text or None


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?")


def _origins(text: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in text.split(",") if o.strip())
    for origin in origins:
        if not _ORIGIN.fullmatch(origin):
            raise argparse.ArgumentTypeError(
                f"{origin!r} is not an origin such as https://app.example.com:8443"
            )
    return origins


def _redis_url(text: str) -> str | None:
    if not text:
        return None
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a redis://, rediss:// or unix:// URL")
    return text


def _patterns(text: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    try:
        Patterns.parse(patterns)
    except InvalidPattern as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return patterns


def _secret(text: str) -> str | None:
    try:
        return check_secret(text).decode() if text else None
    except UnusableKey as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _public_key(text: str) -> Path | None:
    if not text:
        return None
    try:
        load_public_key(Path(text))
    except UnusableKey as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return Path(text)


_COOKIE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _shown(bound: float) -> str:
    """A bound as typed: 1048576, not 1.04858e+06; 0.01 as it is."""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def _cookie_name(text: str) -> str:
    if not _COOKIE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a cookie name (A-Z a-z 0-9 _ . -)")
    return text


OPTIONS: tuple[Option, ...] = (
    Option("host", str, "interface to bind; 0.0.0.0 exposes the server to the network"),
    Option("port", _bounded(int, 0, 65535), "TCP port (0 picks a free one)"),
    Option("tick_interval", _bounded(float, 0.01, 86400), "seconds between ticker messages"),
    Option("queue_size", _bounded(int, 1, 1_000_000), "frames queued per client before eviction"),
    Option(
        "coalesce_ms",
        _bounded(float, 0, 5),
        "milliseconds events may be held, when the fan-out cannot keep up, to go out"
        " together; 0: never held",
    ),
    Option("heartbeat_interval", _bounded(float, 0.01, 3600), "seconds between heartbeat comments"),
    Option("retry_ms", _bounded(int, 0, 3_600_000), "reconnect delay sent to clients as retry:"),
    Option("history", _bounded(int, 0, 10_000_000), "events kept for replay by Last-Event-ID"),
    Option("max_clients", _bounded(int, 1, 1_000_000), "streams served at once; past it: 503"),
    Option("max_topics", _bounded(int, 1, 1000), "topics one stream may follow; past it: 400"),
    Option("max_topic_length", _bounded(int, 20, 1024), "longest topic name; past it: 400"),
    Option("max_event_bytes", _bounded(int, 1, 16 * 1024 * 1024), "largest event published"),
    Option(
        "max_publish_bytes",
        _bounded(int, 1, 256 * 1024 * 1024),
        "largest POST /publish body: one event, or a batch",
    ),
    Option(
        "max_publish_lag_ms",
        _bounded(int, 0, 60_000),
        "publishing answers 503 with Retry-After once a publish waited longer than this, behind"
        " pipelined requests or a late event loop; 0: never",
    ),
    Option("publish_token", _token, "bearer token for POST /publish; unset: loopback only"),
    Option("log_level", _choice(LOG_LEVELS), "DEBUG, INFO, WARNING or ERROR"),
    Option("log_format", _choice(LOG_FORMATS), "text, or json for one object per line"),
    Option("shutdown_timeout", _bounded(float, 0, 600), "backstop seconds to wait on shutdown"),
    Option(
        "idle_timeout",
        _bounded(float, 0.1, 3600),
        "seconds a connection may take to send a request's head, or sit idle between requests",
    ),
    Option(
        "min_body_rate",
        _bounded(int, 1, 2**30),
        "bytes per second a request body must average over each --idle-timeout; slower: 408",
    ),
    Option("data_dir", Path, "directory for the SQLite database and uploads"),
    Option("max_upload_bytes", _bounded(int, 1, 2**40), "largest POST /jobs upload"),
    Option(
        "xlsx_memory_mib",
        _bounded(int, 128, 1024 * 1024),
        "address space the XLSX reader's process may use, in MiB, at least 128 (its Python"
        " takes ~60 of it, a sheet ~100 bytes a cell);"
        " a sheet that needs more fails its import",
    ),
    Option("redis_url", _redis_url, "redis://host:port/db: share events across instances"),
    Option("cors_origins", _origins, "comma-separated origins allowed by CORS; unset: none"),
    Option(
        "private_topics",
        _patterns,
        "comma-separated topic patterns (job.*,user.*) that need a token to subscribe",
    ),
    Option("jwt_secret", _secret, "HS256 secret (32+ bytes) that signs tokens; prefer the env var"),
    Option("jwt_public_key", _public_key, "PEM file of the RS256 or ES256 key that signs tokens"),
    Option("jwt_audience", _token, "when set, tokens must carry this aud"),
    Option("jwt_issuer", _token, "when set, tokens must carry this iss"),
    Option("token_cookie", _cookie_name, "cookie a browser sends its token in"),
    Option("mercure", _choice(("on", "off")), "the Mercure hub at /.well-known/mercure: on or off"),
)


def env_name(option: Option) -> str:
    return ENV_PREFIX + option.name.upper()


def flag(option: Option) -> str:
    return "--" + option.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    for option in OPTIONS:
        default = getattr(defaults, option.name)
        parser.add_argument(
            flag(option),
            dest=option.name,
            type=option.parse,
            default=None,
            metavar=option.name.upper(),
            help=f"{option.help} (env {env_name(option)}; default {shown_default(default)})",
        )


def shown_default(value: Any) -> str:
    """A default as --help and the README show it: no Python `None` or `()`."""
    return "unset" if value in (None, ()) else str(value)


def from_namespace(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Flags win over env vars, which win over defaults."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(args, option.name, None)
        if given is not None:
            values[option.name] = given
        elif env_name(option) in environ:
            values[option.name] = _from_env(option, environ[env_name(option)])
    return check_consistent(Settings(**values))


def checked(settings: Settings) -> Settings:
    """`settings` made in code (the library's `setup`) held to the rules the
    flags are: each value read as its flag's text would be, then the settings
    that only make sense together. Raises `SettingsError` naming the setting."""
    defaults = Settings()
    for option in OPTIONS:
        value = getattr(settings, option.name)
        if value is None:
            continue
        try:
            option.parse(_as_text(value, getattr(defaults, option.name)))
        except argparse.ArgumentTypeError as error:
            raise SettingsError(f"Settings({option.name}={value!r}): {error}") from None
    return check_consistent(settings)


def _as_text(value: Any, default: Any) -> str:
    """`value` as its flag would be written, once it has the default's type."""
    if isinstance(default, tuple):
        if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
            raise argparse.ArgumentTypeError("must be a tuple of strings, such as ('a', 'b')")
        return ",".join(value)
    if isinstance(default, bool) or isinstance(value, bool):
        raise argparse.ArgumentTypeError("is not a setting that takes True or False")
    kinds = {int: (int,), float: (int, float), str: (str,), Path: (Path, str)}
    for kind, accepted in kinds.items():
        if isinstance(default, kind) and not isinstance(value, accepted):
            raise argparse.ArgumentTypeError(f"must be {kind.__name__}")
    return str(value)


def check_consistent(settings: Settings) -> Settings:
    """Settings that only make sense together."""
    if settings.jwt_secret is not None and settings.jwt_public_key is not None:
        raise SettingsError("--jwt-secret and --jwt-public-key: set one, not both")
    if settings.private_topics and settings.jwt_secret is None and settings.jwt_public_key is None:
        raise SettingsError(
            "--private-topics needs a key to verify tokens: set --jwt-secret or --jwt-public-key"
        )
    return settings


def _from_env(option: Option, text: str) -> Any:
    try:
        return option.parse(text)
    except argparse.ArgumentTypeError as error:
        raise SettingsError(f"{env_name(option)}: {error}") from None


class SettingsError(ValueError):
    """A setting's value is malformed; the message names the setting."""


def parse_settings(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="broadcaster")
    add_arguments(parser)
    return from_namespace(parser.parse_args(argv), os.environ if environ is None else environ)


def policy_for(settings: Settings) -> Policy:
    verifier = None
    if settings.jwt_secret is not None:
        verifier = Verifier.from_secret(
            settings.jwt_secret, settings.jwt_audience, settings.jwt_issuer
        )
    elif settings.jwt_public_key is not None:
        verifier = Verifier.from_public_key(
            settings.jwt_public_key, settings.jwt_audience, settings.jwt_issuer
        )
    return Policy(settings.private_topics, verifier, settings.token_cookie)
