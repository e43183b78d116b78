"""The writer lock of a run folder: one writing command at a time, held with the kernel's flock.

The lock dies with its process, so a lock left by a killed command is taken over; the lock file holds the holder's
pid and command (empty means free) so a refused writer, or a reader, can name who is writing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import UserError

_HELD_LOCKS: dict[str, list] = {}  # resolved folder path -> [fd, depth] for the writer locks this process holds


@contextlib.contextmanager
def writer_lock(folder: Path, lock_path: Path, command: str) -> Iterator[None]:
    """Hold `folder`'s writer lock (the file `lock_path`) while `command` writes to it. A second writer (another
    process) gets a one-line UserError naming the holder's pid and command. Re-entrant within one process."""
    key = str(Path(folder).resolve())
    held = _HELD_LOCKS.get(key)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    for _attempt in range(20):  # a reader's momentary shared lock (lock_holder) must not refuse a writer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.025)
    else:
        os.close(fd)
        holder = lock_holder(folder, lock_path)
        who = (f"pid {holder['pid']} ({holder.get('command', '?')})" if holder else "another process")
        raise UserError(f"{folder}: {who} is writing this run; wait for it to end (or stop it) and retry")
    try:
        info = json.dumps({"pid": os.getpid(), "command": command, "argv": sys.argv[:8],
                           "since": time.time()}).encode("utf-8")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        except OSError:  # a full disk: the kernel lock still protects the run; the holder is just unnamed
            pass
        _HELD_LOCKS[key] = [fd, 1]
        yield
    finally:
        _HELD_LOCKS.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the file stays (unlinking a flock file races); empty means free
        os.close(fd)


def lock_holder(folder: Path, lock_path: Path) -> dict[str, Any] | None:
    """{pid, command, since} of the process holding `folder`'s writer lock now, or None (read-only; a lock left
    by a dead process is None)."""
    if not Path(lock_path).exists():
        return None
    key = str(Path(folder).resolve())
    if key in _HELD_LOCKS:
        fd = _HELD_LOCKS[key][0]
    else:
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None  # nobody holds it
        except BlockingIOError:
            pass
    try:
        raw = os.pread(fd, 4096, 0)
    finally:
        if key not in _HELD_LOCKS:
            os.close(fd)
    try:
        info = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        info = {}
    return {"pid": info.get("pid", "?"), "command": info.get("command", "?"), "since": info.get("since")}
