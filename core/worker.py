"""Run one measurement in a fresh Python process and read back its JSON result (used by `doctor` and `bench`).

TensorFlow and torch must not share a process (importing TensorFlow first segfaults torch's triton), and a
process never hands freed framework memory back, so every probe or timing that imports a framework runs as
`python -m core.worker MODULE:FUNCTION SPEC_JSON`: the child calls FUNCTION(spec) and prints its dict as the last
line after a marker; the parent gets that dict (or the child's error, with the end of its output)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

MARKER = "@@core.worker.result@@ "
ROOT = Path(__file__).resolve().parent.parent


def run_in_subprocess(target: str, spec: dict[str, Any], timeout: float | None = None,
                      env: dict[str, str] | None = None, echo: bool = False) -> dict[str, Any]:
    """Run `target` ("module:function") on `spec` in a new interpreter; its result dict, or
    {"error": "...", "output_tail": "..."} when it failed (non-zero exit, timeout, no result line)."""
    cmd = [sys.executable, "-m", "core.worker", target, json.dumps(spec)]
    full_env = {**os.environ, **(env or {})}  # TensorFlow's log settings: core/__init__.py
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or "") if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        return {"error": f"timed out after {timeout:.0f} s", "output_tail": out[-2000:]}
    output = proc.stdout + proc.stderr
    if echo:
        sys.stderr.write(proc.stderr)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return {"error": f"exit status {proc.returncode} and no result", "output_tail": output[-2000:]}


def main(argv: list[str]) -> int:
    target, spec = argv[0], json.loads(argv[1])
    module_name, func_name = target.split(":")
    from core.__main__ import choose_backend

    choose_backend()
    try:
        result = getattr(importlib.import_module(module_name), func_name)(spec)
    except Exception as e:  # noqa: BLE001 - reported to the parent as data: one failed probe must not hide the others
        traceback.print_exc()
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
