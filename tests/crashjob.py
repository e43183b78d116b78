"""A fork server for the kill -9 tests: one process imports TensorFlow (or torch) once, then runs each
`python -m core` command the test sends in a forked child, with the crash point (core/crashpoint.py) armed at a
chosen write. A child that reaches that write leaves with os._exit(137), as if killed with kill -9.

`python -m tests.crashjob run tf train ...` runs one command the same way in this process (no server, no fork).

Protocol (one JSON object a line): the test writes {"argv": [...], "crash_at": k or null, "log": FILE}; the
server answers {"exit": status, "writes": n}, where n is the number of durable writes the child made (known only
when it ended normally). The child's stdout and stderr go to FILE. `train` and `generate` get the tiny stand-in
networks (tests/tiny.py) in place of the real architecture; everything else is the real command.

The parent never runs a TensorFlow or torch op, so every fork starts from a clean runtime (TensorFlow's and
torch's thread pools start lazily, in the child).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

SIDES = {
    "tf": ("tensorflow", "keras", "keras_cv", "core.train", "core.generate", "core.components", "tests.tiny"),
    "torch": ("torch", "open_clip", "core.score", "core.clip_score"),
    "plain": ("core.export",),
}


def _tiny_components(spec, resolution, **_):
    from tests.tiny import tiny_components

    return tiny_components(resolution, spec.seed)


def _child(req: dict) -> None:
    """Run one command in this forked child and leave without returning (exit status: the command's, or 137)."""
    from core import crashpoint
    from core.__main__ import main

    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    crashpoint.writes = 0
    if req.get("crash_at"):
        os.environ[crashpoint.ENV] = str(req["crash_at"])
    rc = 1
    try:
        rc = main(req["argv"])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    except Exception:  # noqa: BLE001  (any failure: its traceback goes to the log the test shows)
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(req["log"] + ".writes", "w") as f:
            f.write(str(crashpoint.writes))
        os._exit(rc)


def _load(side: str) -> None:
    import importlib

    import core  # (first: it sets TensorFlow's logging and oneDNN variables before TensorFlow loads)

    for name in SIDES[side]:
        importlib.import_module(name)
    if side == "tf":
        import core.components

        core.components.Components = _tiny_components  # the commands build `Components(spec, resolution)`


def serve(side: str) -> None:
    _load(side)
    print("ready", flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(req)
        _, status = os.waitpid(pid, 0)
        writes = None
        if os.path.exists(req["log"] + ".writes"):
            with open(req["log"] + ".writes") as f:
                writes = int(f.read())
            os.unlink(req["log"] + ".writes")
        print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "writes": writes}), flush=True)


class Server:
    """The test's side of the protocol: `Server("tf")`, then `.run(argv, crash_at=k)` -> (exit, writes, log)."""

    def __init__(self, side: str, root):
        import subprocess

        self.logdir = tempfile.mkdtemp(prefix=f"crashjob-{side}-")
        self.n = 0
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.crashjob", side], cwd=root, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, argv: list[str], crash_at: int | None = None) -> tuple[int, int | None, str]:
        self.start(argv, crash_at)
        return self.finish()

    def start(self, argv: list[str], crash_at: int | None = None) -> None:
        """Send one command without waiting (`child_pid()` then names its process; `finish()` waits)."""
        self.n += 1
        self.log = os.path.join(self.logdir, f"{self.n}.log")
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "crash_at": crash_at, "log": self.log})
                              + "\n")
        self.proc.stdin.flush()

    def child_pid(self) -> int | None:
        """The forked child running the current command (None before the fork or after it ended)."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            pids = f.read().split()
        return int(pids[0]) if pids else None

    def finish(self) -> tuple[int, int | None, str]:
        reply = json.loads(self.proc.stdout.readline())
        with open(self.log) as f:
            return reply["exit"], reply["writes"], f.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


if __name__ == "__main__":
    if sys.argv[1] == "run":  # `python -m tests.crashjob run SIDE COMMAND...`: one command, this process, no fork
        _load(sys.argv[2])
        from core.__main__ import main

        sys.exit(main(sys.argv[3:]))
    serve(sys.argv[1])
