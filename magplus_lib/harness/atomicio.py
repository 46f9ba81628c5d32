"""Atomic file writing: every artefact is written to a temporary file in the same folder and renamed.

A crash or a failing cell therefore never leaves a file that looks finished, and an existing file is
only replaced once its successor is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)
_TEMP = re.compile(r"^\..+\.tmp(\d+)\.[^/]+$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    `suffix` defaults to the target's own suffix so that writers that look at the extension
    (cv2.imwrite, matplotlib, safetensors) behave as for the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets a later run tell a dead run's leftovers from live writes.
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.tmp{os.getpid()}.", suffix=suffix or path.suffix
    )
    # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write only when the content differs, so that make sees an unchanged mtime otherwise."""
    path = Path(path)
    if path.exists() and path.read_text() == text:
        return False
    write_text(path, text)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(root: str | os.PathLike) -> list[Path]:
    """Delete the temporary files under `root` that a killed process left (its pid no longer runs)."""
    removed = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            m = _TEMP.match(name)
            if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
                p = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed
