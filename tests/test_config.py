from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from broadcaster.ops.config import OPTIONS, Settings, SettingsError, env_name, flag, parse_settings


def test_every_setting_has_one_option() -> None:
    assert [o.name for o in OPTIONS] == [f.name for f in fields(Settings)]


def test_defaults() -> None:
    settings = parse_settings([], environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.tick_interval) == ("127.0.0.1", 8000, 5.0)


def test_env_then_flag_precedence() -> None:
    env = {
        "BROADCASTER_PORT": "9000",
        "BROADCASTER_TICK_INTERVAL": "0.01",
        "BROADCASTER_LOG_LEVEL": "debug",
    }
    settings = parse_settings(["--port", "9001"], environ=env)
    assert (settings.port, settings.tick_interval, settings.log_level) == (9001, 0.01, "DEBUG")


def test_tokens() -> None:
    assert parse_settings(["--publish-token", "s3cret"], environ={}).publish_token == "s3cret"
    assert parse_settings([], environ={"BROADCASTER_PUBLISH_TOKEN": ""}).publish_token is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TICK_INTERVAL", "0.001", "outside"),
        ("PORT", "eighty", "not a valid int"),
        ("LOG_FORMAT", "xml", "not one of"),
        ("QUEUE_SIZE", "0", "outside"),
        ("XLSX_MEMORY_MIB", "64", r"64 is outside 128\.\.1048576$"),
        ("TICK_INTERVAL", "0", r"(?<![.\d])0 is outside 0\.01\.\.86400$"),
    ],
)
def test_bad_env_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"BROADCASTER_{name}: .*{message}"):
        parse_settings([], environ={f"BROADCASTER_{name}": value})


def test_help_lists_every_setting_and_its_env_var() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in OPTIONS:
        assert flag(option) in out
        assert env_name(option) in out


def test_bad_flag_is_a_clear_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "broadcaster", "--tick-interval", "0"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--tick-interval" in result.stderr
    assert "outside" in result.stderr
    assert "Traceback" not in result.stderr
