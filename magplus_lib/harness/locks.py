"""One lock per stage and results folder, so that two runs on one results folder run each stage once.

`make paper` started twice (or `make pretrain` beside `make paper`) would otherwise run every stage
twice, side by side, writing the same files. The second run waits for the stage's lock, naming the
process that holds it; once it has the lock, the runner skips the stage if the holder has just
finished it with the same parameters (runner.run_notebook).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def stage_lock(results: Path, stage: str, announce: Callable[[str], None] | None = None) -> Iterator[bool]:
    """Hold `results/.locks/<stage>.lock` (fcntl.flock); yield whether another process held it first.

    The lock dies with its process (a killed run never leaves a stale lock); the file records who
    holds it, for the message of a run that has to wait.
    """
    announce = announce or (lambda text: print(text, file=sys.stderr, flush=True))
    folder = Path(results) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{stage}.lock", "a+") as fh:
        waited = False
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            announce(f"stage {stage} in {results} is being run by {holder}; waiting for it to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
            waited = True
        fh.seek(0)
        fh.truncate()
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        fh.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}) since {now}\n")
        fh.flush()
        yield waited
