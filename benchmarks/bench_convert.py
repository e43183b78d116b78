"""Benchmark: `python -m core convert-weights` of a ~4 GB fp16 single file (an SD v1 checkpoint with its EMA
weights, as `v1-5-pruned.safetensors` in fp16 holds them), in a fresh process: wall time and peak RSS, printed as
ratios against references measured in the same run (reading the file once: sha256; the file's size).

    .venv/bin/python benchmarks/bench_convert.py --make /tmp/bench-sd1     # build the random file, then convert
    .venv/bin/python benchmarks/bench_convert.py --file CKPT.safetensors   # a checkpoint you have

Heavy (a full-size diffusers SD v1 is built to make the file): run it under `flock /tmp/heavy.lock`."""

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
sys.path.insert(0, str(ROOT))


def make_file(folder: Path) -> Path:
    """A random SD v1 written as one fp16 safetensors with EMA copies of the UNet (`model_ema.*`): ~4 GB."""
    import torch
    from safetensors.torch import save_file

    from tests import sdv1

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sd1-fp16-with-ema.safetensors"
    if path.exists():
        return path
    models = sdv1.build(seed=0)
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sdv1.ldm_state_dict(models).items()}
    del models
    for k in [k for k in sd if k.startswith("model.diffusion_model.")]:
        sd["model_ema." + k.split(".", 1)[1].replace(".", "")] = (sd[k] * 0.999).contiguous()
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    save_file(sd, str(path), metadata={"modelspec.title": "random SD v1 (benchmark)"})
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
              "convert_s": round(wall, 1), "read_once_s": round(read_s, 1), "convert_over_read": round(wall / read_s, 2),
              "peak_rss_gb": round(rss_gb, 2), "peak_rss_over_file": round(rss_gb / size_gb, 2),
              "cpus": os.cpu_count()}
    print(json.dumps(result, indent=1))
    print(f"convert-weights: {wall:.0f} s for a {size_gb:.1f} GB file ({wall / read_s:.1f}x reading it once, "
          f"{read_s:.1f} s); peak RSS {rss_gb:.2f} GB = {rss_gb / size_gb:.2f}x the file")


if __name__ == "__main__":
    main()
