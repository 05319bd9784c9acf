"""The README's configuration table stays true to the code."""

from __future__ import annotations

import re

import pytest

from broadcaster.ops.config import OPTIONS, Option, Settings, env_name, flag
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def readme_rows() -> dict[str, list[str]]:
    rows = {}
    for line in README.splitlines():
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if line.startswith("| `--"):
            rows[cells[0]] = cells
    return rows


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_readme_documents_each_setting(option: Option) -> None:
    row = readme_rows().get(flag(option))
    assert row is not None, f"README has no row for {flag(option)}"
    default = getattr(Settings(), option.name)
    assert row[1] == env_name(option)
    assert row[2] == ("unset" if default in (None, ()) else str(default))


def test_readme_has_no_stale_settings() -> None:
    assert set(readme_rows()) == {flag(o) for o in OPTIONS}


def test_readme_shows_the_two_commands() -> None:
    assert re.search(r"^make run ", README, re.M)
    assert re.search(r"^make test ", README, re.M)


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", README, re.S))
def test_readme_python_examples_compile(block: str) -> None:
    # A snippet pasted into a file must at least run as Python (no top-level
    # `async with`, no stray syntax).
    compile(block, "README.md", "exec")
