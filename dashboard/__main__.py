"""`python -m dashboard [--runs-dir DIR] [--review] [--port N] [--address A]`: serve the dashboard, on 127.0.0.1 by
default, read-only unless --review."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboard", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", help="runs folder (default: $TOMCAT_RUNS_DIR, else runs/)")
    p.add_argument("--address", default="127.0.0.1", help="address to serve on (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.add_argument("--review", action="store_true",
                   help="review mode: flag buttons, notes and the findings editor write RUN/review/ "
                        "(default: read-only)")
    args = p.parse_args(argv)
    cmd = [sys.executable, "-m", "streamlit", "run", str(Path(__file__).resolve().parent / "app.py"),
           "--server.address", args.address, "--server.port", str(args.port),
           "--browser.gatherUsageStats", "false"]
    if args.headless:
        cmd += ["--server.headless", "true"]
    extra = (["--runs-dir", args.runs_dir] if args.runs_dir else []) + (["--review"] if args.review else [])
    if extra:
        cmd += ["--", *extra]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
