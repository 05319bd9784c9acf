"""The data directory (`--data-dir`): proved usable at start-up, and the words
for a filesystem failure under it.

Start-up refuses a directory it cannot create or write to, in one line, rather
than accepting it and failing every upload later. At run time the directory
can still vanish or fill up: callers tell a full disk (`is_full`: retrying
later may help) from an unusable directory (an operator must fix it).
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

UPLOADS = "uploads"
FULL = (errno.ENOSPC, errno.EDQUOT)


def require(path: Path) -> None:
    """Create `path` and its uploads folder if needed and prove a file can be
    created there; otherwise exit with one line naming the setting and why."""
    try:
        (path / UPLOADS).mkdir(parents=True, exist_ok=True)
        # Mode bits cannot tell: root ignores them, and a read-only mount
        # only shows when a file is created.
        with tempfile.TemporaryFile(dir=path / UPLOADS):
            pass
    except OSError as error:
        blocker = _file_in_the_way(path)
        if blocker is not None:
            why = f"{str(blocker)!r} is not a directory"
        else:
            # Naming the path once is enough.
            why = reason(error).removesuffix(f": {str(path)!r}")
        raise SystemExit(f"broadcaster: unusable --data-dir {str(path)!r}: {why}") from None


def _file_in_the_way(path: Path) -> Path | None:
    """The outermost part of `path` that exists but is not a directory."""
    for part in [*reversed(path.parents), path]:
        try:
            if part.exists() and not part.is_dir():
                return part
        except OSError:  # not ours to look into: the error itself will say why
            return None
    return None


def uploads(path: Path) -> Path:
    """The uploads folder, made again if it was removed, but not its parent:
    a data directory that has gone is an operator's problem, not ours to
    recreate somewhere else (an unmounted volume's empty mount point, say)."""
    folder = path / UPLOADS
    folder.mkdir(exist_ok=True)
    return folder


def is_full(error: OSError) -> bool:
    return error.errno in FULL


def reason(error: OSError) -> str:
    """`strerror`, and the path it is about when that says more."""
    text = error.strerror or str(error)
    return f"{text}: {str(error.filename)!r}" if error.filename else text
