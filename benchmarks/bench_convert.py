"""Benchmark: `python -m core convert-weights` of a ~4 GB fp16 single file (an SD v1 checkpoint with its EMA
weights, as `v1-5-pruned.safetensors` in fp16 holds them), in a fresh process: wall time and peak RSS, printed as
ratios against references measured in the same run (reading the file once: sha256; the file's size).

    .venv/bin/python benchmarks/bench_convert.py --make /tmp/bench-sd1     # build the random file, then convert
    .venv/bin/python benchmarks/bench_convert.py --file CKPT.safetensors   # a checkpoint you have

The conversion holds one tensor at a time (no network is built, TensorFlow is not imported), but it reads 4 GB
and writes 4.3 GB: on a shared machine run it under `flock /tmp/heavy.lock`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_file(folder: Path) -> Path:
    """A ~4 GB fp16 SD v1 single file with EMA copies of the UNet (`model_ema.*`), every tensor with SD v1's
    LDM name and shape (core.weightmap), random values, written one tensor at a time (timing and memory do not
    depend on the values; nothing heavy is built)."""
    import numpy as np

    from core.ckptfile import write_safetensors
    from core.weightmap import LAYERS, LDM_PREFIX, torch_shape

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sd1-fp16-with-ema.safetensors"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    items = []
    for component, layers in LAYERS.items():
        for layer in layers():
            for w in layer.weights:
                key, shape = LDM_PREFIX[component] + w.ldm, torch_shape(w)
                items.append((key, shape, lambda s=shape: rng.standard_normal(s, np.float32) * 0.02))
                if component == "diffusion_model":
                    ema = "model_ema." + key.split(".", 1)[1].replace(".", "")
                    items.append((ema, shape, lambda s=shape: rng.standard_normal(s, np.float32) * 0.02))
    write_safetensors(path, items, {"modelspec.title": "random SD v1 (benchmark)"}, dtype="F16")
    return path


def read_once(path: Path) -> float:
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, help="an SD 1.x single file to convert")
    ap.add_argument("--make", type=Path, help="folder to build the random ~4 GB fp16 file in (kept for reruns)")
    args = ap.parse_args()
    path = args.file or make_file(args.make or Path(tempfile.gettempdir()) / "bench-convert")
    size_gb = path.stat().st_size / 1e9
    read_s = read_once(path)  # also leaves the file in the page cache, as the conversion will find it
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TOMCAT_WEIGHTS_CACHE=str(Path(tmp) / "cache"))  # the source is hashed afresh
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "core", "convert-weights", str(path), "--out", str(Path(tmp) / "out"),
                            "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            sys.exit(f"convert-weights failed: {p.stderr.strip()[-2000:]}")
        out_gb = sum(f.stat().st_size for f in (Path(tmp) / "out").glob("*.h5")) / 1e9
    rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # Linux: KiB
    result = {"file": str(path), "file_gb": round(size_gb, 2), "h5_written_gb": round(out_gb, 2),
              "convert_s": round(wall, 1), "read_once_s": round(read_s, 1),
              "convert_over_read": round(wall / read_s, 2),
              "peak_rss_gb": round(rss_gb, 2), "peak_rss_over_file": round(rss_gb / size_gb, 2),
              "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    print(json.dumps(result, indent=1))
    print(f"convert-weights: {wall:.0f} s for a {size_gb:.1f} GB file ({wall / read_s:.1f}x reading it once, "
          f"{read_s:.1f} s); peak RSS {rss_gb:.2f} GB = {rss_gb / size_gb:.2f}x the file")


if __name__ == "__main__":
    main()
