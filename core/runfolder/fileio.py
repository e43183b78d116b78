"""File IO of the run folder: atomic writes, locked append-only CSV and JSONL logs, torn-last-line repair.

Every file of a run (and of a sweep) is written through these: a reader sees the old file or the new one, never a
half-written one; an append-only log gains whole lines only, and a last line torn by a writer killed mid-append is
cut off before the next append (and skipped by readers), never merged with new lines.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core import crashpoint
from core.errors import UserError


def _umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status), so other threads (the dashboard
    is threaded) never see a flipped umask. Without /proc it is read once, setting and restoring it under a lock."""
    global _UMASK_FALLBACK
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        if _UMASK_FALLBACK is None:
            _UMASK_FALLBACK = os.umask(0o022)
            os.umask(_UMASK_FALLBACK)
        return _UMASK_FALLBACK


_UMASK_LOCK = threading.Lock()
_UMASK_FALLBACK: int | None = None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            crashpoint.hit(f.fileno(), data)  # kill -9 tests: a deterministic crash at this write
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would have
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_temp_file(path: Path) -> bool:
    """A temp file `atomic_write_bytes` left behind when its process was killed mid-write (never read)."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Atomically (re)write a whole CSV with a header."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    atomic_write_text(path, buf.getvalue())


def append_csv(path: Path, columns: list[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows under an exclusive lock on the file: the header is written only by the process that finds
    the file empty, and a torn last line (a writer killed mid-append) is cut off first, never merged with the
    new rows. Each call ends with a flushed, complete line."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="raise", lineterminator="\n")
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    _locked_append(Path(path), buf.getvalue(), header=",".join(columns) + "\n")


def append_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append one JSON object per line (JSON Lines) under the same lock and torn-last-line rule as `append_csv`:
    concurrent appenders never interleave, and a line torn by a killed writer is cut off before the new ones."""
    lines = []
    for rec in records:
        if not isinstance(rec, Mapping):
            raise TypeError(f"a JSONL record must be a mapping, got {type(rec).__name__}")
        lines.append(json.dumps(dict(rec), default=_json_default, ensure_ascii=False, separators=(",", ":")) + "\n")
    _locked_append(Path(path), "".join(lines))


def _locked_append(path: Path, body: str, *, header: str = "") -> None:
    """Append `body` (whole lines) to `path` under an exclusive flock, first cutting a torn last line; `header`
    is written only when the file is empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size:
            end = _complete_length(fd, size)
            if end != size:
                print(f"{path}: cut a torn last line ({size - end} bytes, a writer was killed mid-append)",
                      file=sys.stderr)
                os.ftruncate(fd, end)
                size = end
        os.lseek(fd, 0, os.SEEK_END)
        data = ((header if not size else "") + body).encode("utf-8")
        crashpoint.hit(fd, data)  # kill -9 tests: a deterministic crash at this write
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def _complete_length(fd: int, size: int) -> int:
    """Length of the file up to and including its last newline (0 if it has none)."""
    pos = size
    while pos > 0:
        step = min(1 << 16, pos)
        pos -= step
        chunk = os.pread(fd, step, pos)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return pos + i + 1
    return 0


def read_csv_rows(path: Path, columns: list[str] | None = None) -> list[dict[str, str]]:
    """Rows of a CSV written by this module. A torn last line (killed mid-write) is dropped; with `columns`,
    a header or a row that does not fit them is refused with a UserError naming the file and line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); the file is damaged") from e
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    if columns is not None and rows:
        if reader.fieldnames != columns:
            raise UserError(f"{path}: header is {','.join(reader.fieldnames or [])!r}, expected "
                            f"{','.join(columns)!r}; the file is damaged or from another version")
        for i, r in enumerate(rows):
            if None in r or any(v is None for v in r.values()):
                raise UserError(f"{path}: row {i + 2} has {len(r) - (None in r) + len(r.get(None) or [])} "
                                f"fields, expected {len(columns)}; the file is damaged (repair or delete that line)")
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file written by `append_jsonl`, in order ([] when it does not exist). A torn last
    line (killed mid-write) is dropped; a complete line that is not a JSON object is a UserError naming the file
    and line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); the file is damaged") from e
    out = []
    for n, line in enumerate(text[: text.rfind("\n") + 1].splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {n} is not JSON ({e.msg}); the file is damaged (repair or delete that "
                            "line)") from e
        if not isinstance(obj, dict):
            raise UserError(f"{path}: line {n} is not a JSON object; the file is damaged (repair or delete that line)")
        out.append(obj)
    return out


def read_json(path: Path, fix: str) -> Any | None:
    """A JSON file written by this package, or None when it does not exist; damaged (not JSON, not UTF-8) is a
    one-line UserError naming the file and saying `fix` (how to remake it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: damaged ({e}); {fix}") from e


def read_document(path: Path, *, schema: int, what: str, missing: str, fix: str) -> dict[str, Any]:
    """A versioned JSON object file (run.json, sweep.json): absent is the UserError `missing`; damaged says `fix`;
    not an object of `schema` is named as not a schema-N `what`."""
    data = read_json(path, fix)
    if data is None:
        raise UserError(missing)
    if not isinstance(data, dict) or data.get("schema_version") != schema:
        raise UserError(f"{path}: not a schema-{schema} {what}")
    return data


def one_line(text: str, limit: int = 300) -> str:
    """`text` as one short line: terminal colour codes dropped, whitespace collapsed, cut at `limit`."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

