"""Who, where and when a run happened: the machine (CPU model: float kernels differ between models),
the UTC time and the commit, as recorded in the manifest and the cache's provenance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from magplus_lib.harness.profiles import REPO_ROOT


def machine() -> dict[str, Any]:
    """Cores, platform and CPU model: float kernels differ between CPU models, so the same seed gives
    the same numbers only on the same kind of machine."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "platform": platform.platform(), "cpu": model}


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def git_commit(root: Path = REPO_ROOT) -> str:
    """HEAD's sha, with "-dirty" when a tracked file outside results/ differs from it.

    The committed artefacts under results/ are what the pipeline itself rewrites (the manifest first of
    all), so counting them would mark every run after the first stage of a clean clone dirty.
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
