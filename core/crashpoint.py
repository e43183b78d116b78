"""A deterministic crash point for the kill -9 tests: `TOMCAT_CRASH_AT_WRITE=k` ends the process at its k-th
durable write, as kill -9 would.

Every durable write of a run folder (an atomic file write, a CSV/JSONL append) calls `hit(fd, data)` once, just
before its bytes go to disk. At the k-th call the process writes the first half of `data` to `fd` (a torn write,
as when a kill lands mid-write) and leaves with `os._exit(137)`: no cleanup, no `finally`, no atexit, the same
exit status a shell reports for kill -9. Unset (the normal case) a call costs one increment and one dict lookup.

`writes` counts the calls made so far in this process; a test reads it after an uninterrupted job to know how
many crash points the job has (tests/test_faults.py crashes at each of them in turn and resumes).
"""

from __future__ import annotations

import os

ENV = "TOMCAT_CRASH_AT_WRITE"
EXIT_STATUS = 137  # 128 + SIGKILL, what a shell shows for a process killed with kill -9

writes = 0  # durable writes so far in this process


def hit(fd: int | None = None, data: bytes = b"") -> None:
    """Count one durable write; at the k-th (k from $TOMCAT_CRASH_AT_WRITE), write half of `data` to `fd`
    and exit at once."""
    global writes
    writes += 1
    at = os.environ.get(ENV)
    if at and writes == int(at):
        if fd is not None and data:
            os.write(fd, data[: len(data) // 2])
        os._exit(EXIT_STATUS)
