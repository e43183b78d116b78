"""The GPU install path cannot rot silently: the Makefile picks requirements-gpu.txt with GPU=1 (and the CPU set
otherwise), and the installer (uv) can resolve the GPU requirement set from the package index (nothing installed)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("gpu, reqs", [("1", "requirements-gpu.txt"), ("0", "requirements.txt")])
def test_makefile_installs_the_gpu_builds_only_with_a_gpu(tmp_path, gpu, reqs):
    out = subprocess.run(["make", "-n", "install", f"GPU={gpu}", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"-r {reqs}" in out.stdout and "uv pip install" in out.stdout
    assert f".installed-{'gpu' if gpu == '1' else 'cpu'}" in out.stdout


def test_gpu_requirements_extend_the_cpu_set_with_exact_pins():
    lines = [l.split("#")[0].strip() for l in (ROOT / "requirements-gpu.txt").read_text().splitlines()]
    lines = [l for l in lines if l]
    assert lines[0] == "-r requirements.txt"
    assert all("==" in l for l in lines[1:]), lines


@pytest.mark.network
@pytest.mark.timeout(600)
def test_gpu_requirement_set_resolves():
    """`uv pip compile` of requirements-gpu.txt for Linux x86-64, Python 3.11, with the package sources `make install`
    hands uv: one consistent set must hold the CUDA plugin for JAX next to the CPU set's pins (needs PyPI)."""
    index = subprocess.run(["make", "-s", "print-uv-index"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert index.returncode == 0, index.stderr
    uv = Path(sys.executable).parent / "uv"
    proc = subprocess.run([str(uv), "pip", "compile", "-q", "--no-header", "--no-annotate", "--python-version", "3.11",
                           "--python-platform", "x86_64-manylinux_2_28", *index.stdout.split(),
                           "requirements-gpu.txt"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(line.split("==", 1) for line in proc.stdout.split() if "==" in line)
    for name, version in [("jax", "0.10.2"), ("jax-cuda12-plugin", "0.10.2"), ("keras", "3.15.1"),
                          ("keras-cv", "0.9.0"), ("torch", "2.14.1"), ("tensorflow-cpu", "2.21.0")]:
        assert got.get(name) == version, (name, got.get(name))
    assert any(n.startswith("nvidia-cudnn-cu12") for n in got)  # the CUDA 12 libraries come with it
