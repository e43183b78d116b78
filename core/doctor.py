"""`doctor`: what this machine offers the project: Keras backend and devices, torch devices, GPU name and memory,
usable precisions, whether XLA compiles, the weights cache, and a ~10-second timing of one UNet call.

Torch and Keras are probed in separate processes (core.worker): TensorFlow before torch in one process crashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import StrictConfig, add_options, check, check_resolution, from_args, option


@dataclass
class DoctorConfig(StrictConfig):
    resolution: int = option(0, "UNet timing size in px; 0 = 512 when a GPU is seen, else 128 (a CPU is ~100x "
                                "slower)")
    unet_seconds: float = option(10.0, "seconds of repeated UNet calls to time (after one warm-up call)")
    skip_unet: bool = option(False, "do not build or time the UNet (its build takes ~1 min and ~4 GB on a CPU)")
    json: str | None = option(None, "also write the report as JSON to this file", metavar="FILE")

    def validate(self) -> None:
        check_resolution(self.resolution, unset=0)  # 0: auto
        check(self.unet_seconds > 0, "unet_seconds", self.unet_seconds, "must be > 0")


# ------------------------------------------------------------------------------------------- probes
def nvidia_smi() -> list[dict[str, Any]]:
    """GPUs as the driver reports them (no framework needed); [] without a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.used,compute_cap,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5:
            gpus.append({"name": parts[0], "memory_total_gb": round(float(parts[1]) / 1024, 2),
                         "memory_used_gb": round(float(parts[2]) / 1024, 2), "compute_capability": parts[3],
                         "driver": parts[4]})
    return gpus


def cpu_has_bf16() -> bool:
    """x86 CPUs run bf16 matmuls natively only with AVX512_BF16 or AMX; elsewhere bf16 is emulated (slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def weights_cache() -> dict[str, Any]:
    """Where `--weights kerascv` caches its files and which of them are there (size only; the sha256 is checked
    when a run loads them)."""
    from core.weights import WEIGHT_FILES

    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    folder = home / "datasets"
    files = {}
    for component, (fname, _, _) in WEIGHT_FILES.items():
        p = folder / fname
        files[component] = {"file": fname, "present": p.exists(),
                            "gb": round(p.stat().st_size / 1e9, 3) if p.exists() else None}
    return {"folder": str(folder), "files": files, "complete": all(f["present"] for f in files.values())}


def probe_torch(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process (core.worker)."""
    import torch

    out: dict[str, Any] = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
                           "cuda": torch.version.cuda, "devices": ["cpu"]}
    if torch.cuda.is_available():
        out["devices"] = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
        props = torch.cuda.get_device_properties(0)
        out["memory_gb"] = round(props.total_memory / 1e9, 2)
        out["bf16"] = bool(torch.cuda.is_bf16_supported())
        out["sdpa_flash"] = bool(torch.backends.cuda.flash_sdp_enabled())
    try:
        import diffusers

        out["diffusers"] = diffusers.__version__
    except Exception as e:  # noqa: BLE001 - optional: only the benchmark's reference uses it
        out["diffusers"] = f"not importable ({type(e).__name__})"
    return out


def _xla_works(backend: str) -> dict[str, Any]:
    import numpy as np

    x = np.arange(12, dtype="float32").reshape(3, 4)
    want = np.tanh(x @ x.T) + 1.0
    t0 = time.perf_counter()
    if backend == "tensorflow":
        import tensorflow as tf

        got = tf.function(lambda a: tf.tanh(a @ tf.transpose(a)) + 1.0, jit_compile=True)(x).numpy()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        got = np.asarray(jax.jit(lambda a: jnp.tanh(a @ a.T) + 1.0)(x))
    else:
        return {"ok": False, "why": f"no XLA on backend {backend}"}
    return {"ok": bool(np.allclose(got, want, atol=1e-5)), "compile_and_run_s": round(time.perf_counter() - t0, 3)}


def _precisions(keras_module) -> dict[str, Any]:
    """Which Keras dtype policies run a small Dense layer on the default device, with finite output."""
    import numpy as np

    out = {}
    x = np.random.default_rng(0).standard_normal((4, 64)).astype("float32")
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        try:
            layer = keras_module.layers.Dense(64, dtype=policy)
            y = keras_module.ops.convert_to_numpy(keras_module.ops.cast(layer(x), "float32"))
            out[policy] = bool(np.isfinite(y).all())
        except Exception as e:  # noqa: BLE001 - report, don't crash: this is what the probe is for
            out[policy] = f"fails ({type(e).__name__})"
    return out


def probe_keras(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process (core.worker): backend, devices, precisions, XLA, and the UNet timing."""
    import keras

    from core.train import environment

    backend = keras.backend.backend()
    env = environment()
    out: dict[str, Any] = {"backend": backend, "versions": env["versions"], "devices": env["hardware"]["devices"]}
    gpu = any(d.startswith(("GPU", "CUDA")) for d in out["devices"])
    out["gpu_seen"] = gpu
    out["precisions"] = _precisions(keras)
    try:
        out["xla"] = _xla_works(backend)
    except Exception as e:  # noqa: BLE001 - a broken XLA is a finding to report, not a crash
        out["xla"] = {"ok": False, "why": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    if not spec.get("skip_unet"):
        out["unet"] = time_unet(spec.get("resolution") or (512 if gpu else 128), spec.get("unet_seconds", 10.0),
                                "mixed_bfloat16" if gpu else "float32")
    return out


def time_unet(resolution: int, seconds: float, policy: str) -> dict[str, Any]:
    """One UNet call at batch 1 (random weights), compiled: warm-up, then repeated calls for `seconds`."""
    import keras
    import numpy as np

    from core.components import Components
    from core.sampler import _compile
    from core.weights import WeightSpec

    keras.mixed_precision.set_global_policy(policy)
    t0 = time.perf_counter()
    unet = Components(WeightSpec.parse("random"), resolution).diffusion_model  # fused attention on JAX
    build_s = time.perf_counter() - t0
    h = resolution // 8
    rng = np.random.default_rng(0)
    inputs = {"latent": rng.standard_normal((1, h, h, 4)).astype("float32"),
              "timestep_embedding": rng.standard_normal((1, 320)).astype("float32"),
              "context": rng.standard_normal((1, 77, 768)).astype("float32")}
    jit = keras.backend.backend() == "jax"
    if jit:
        tv = [v.value for v in unet.trainable_variables]
        ntv = [v.value for v in unet.non_trainable_variables]
        fn = _compile(lambda a, b, x: unet.stateless_call(a, b, x, training=False)[0], True)
        call = lambda: fn(tv, ntv, inputs)  # noqa: E731
    else:
        fn = _compile(lambda x: unet(x, training=False), False)
        call = lambda: fn(inputs)  # noqa: E731
    t = time.perf_counter()
    keras.ops.convert_to_numpy(call())
    first_s = time.perf_counter() - t
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 2:
        t = time.perf_counter()
        keras.ops.convert_to_numpy(call())  # waits for the device
        times.append(time.perf_counter() - t)
    times.sort()
    return {"resolution": resolution, "batch": 1, "policy": policy, "build_s": round(build_s, 2),
            "first_call_s": round(first_s, 2), "calls": len(times), "median_s": round(times[len(times) // 2], 4),
            "weights": "random (timing only)"}


# --------------------------------------------------------------------------------------------- report
def diagnose(cfg: DoctorConfig, echo=print) -> dict[str, Any]:
    from core.worker import run_in_subprocess

    report: dict[str, Any] = {"nvidia_smi": nvidia_smi(), "cpu": {"cores": os.cpu_count(), "bf16": cpu_has_bf16()},
                              "keras_backend_env": os.environ.get("KERAS_BACKEND"),
                              "weights_cache": weights_cache()}
    echo("probing torch (own process) ...")
    report["torch"] = run_in_subprocess("core.doctor:probe_torch", {}, timeout=600)
    echo("probing Keras (own process)" + ("" if cfg.skip_unet else " and timing one UNet call") + " ...")
    report["keras"] = run_in_subprocess("core.doctor:probe_keras", {
        "resolution": cfg.resolution, "unet_seconds": cfg.unet_seconds, "skip_unet": cfg.skip_unet},
        timeout=1800)
    report["advice"] = advice(report)
    return report


def advice(r: dict[str, Any]) -> list[str]:
    out = []
    k, t = r.get("keras", {}), r.get("torch", {})
    if r["nvidia_smi"] and not k.get("gpu_seen"):
        out.append("an NVIDIA GPU is present but Keras does not see it: install the GPU builds "
                   "(make install GPU=1) so Keras runs on JAX with CUDA; see README 'GPU'")
    if r["nvidia_smi"] and not t.get("cuda_available"):
        out.append("an NVIDIA GPU is present but torch does not see it (CLIP scoring and the diffusers "
                   "reference will run on the CPU)")
    if k.get("gpu_seen"):
        pol = k.get("precisions", {})
        out.append("train with --mixed-precision bf16" if pol.get("mixed_bfloat16") is True
                   else "bf16 does not run here; try --mixed-precision fp16")
    elif "error" not in k:
        out.append("CPU only: keep --mixed-precision no (this CPU has no native bf16)" if not r["cpu"]["bf16"]
                   else "CPU with native bf16: --mixed-precision bf16 may help")
    if not r["weights_cache"]["complete"]:
        out.append("pretrained weights are not cached: the first `train --weights kerascv` downloads ~4 GB "
                   "(or pass --weights DIR)")
    for side in ("torch", "keras"):
        if "error" in r.get(side, {}):
            out.append(f"the {side} probe failed: {r[side]['error']}")
    return out


def render(r: dict[str, Any]) -> str:
    k, t = r.get("keras", {}), r.get("torch", {})
    lines = [f"Keras backend:   {k.get('backend', '?')} (keras {k.get('versions', {}).get('keras', '?')}; "
             f"KERAS_BACKEND={r.get('keras_backend_env') or 'unset'})",
             f"Keras devices:   {', '.join(k.get('devices', [])) or '?'}",
             f"torch devices:   {', '.join(t.get('devices', [])) or '?'} (torch {t.get('torch', '?')}, "
             f"diffusers {t.get('diffusers', '?')})"]
    for g in r["nvidia_smi"]:
        lines.append(f"GPU:             {g['name']}, {g['memory_total_gb']} GB ({g['memory_used_gb']} GB used), "
                     f"compute capability {g['compute_capability']}, driver {g['driver']}")
    if not r["nvidia_smi"]:
        lines.append(f"GPU:             none (nvidia-smi not found); CPU {r['cpu']['cores']} cores, "
                     f"native bf16: {r['cpu']['bf16']}")
    if "precisions" in k:
        lines.append("precision:       "
                     + ", ".join(f"{p}: {'ok' if v is True else v}" for p, v in k["precisions"].items()))
    if "xla" in k:
        lines.append(f"XLA:             {'works' if k['xla'].get('ok') else 'FAILS'} {k['xla']}")
    wc = r["weights_cache"]
    lines.append(f"weights cache:   {wc['folder']}: " + ", ".join(
        f"{f['file']} {'present' if f['present'] else 'missing'}" for f in wc["files"].values()))
    if "unet" in k:
        u = k["unet"]
        lines.append(f"UNet call:       {u['median_s']} s median of {u['calls']} calls ({u['resolution']} px, batch 1, "
                     f"{u['policy']}, random weights; build {u['build_s']} s, first call {u['first_call_s']} s)")
    for side, d in (("torch", t), ("keras", k)):
        if "error" in d:
            lines.append(f"{side} probe:     FAILED: {d['error']}\n{d.get('output_tail', '')[-800:]}")
    lines += [f"advice:          {a}" for a in r["advice"]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(p, command: str) -> None:
    add_options(p, DoctorConfig)


def run(args) -> int:
    cfg = from_args(DoctorConfig, args)
    report = diagnose(cfg)
    print(render(report))
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(report, indent=2))
    failed = any("error" in report.get(s, {}) for s in ("torch", "keras"))
    return 1 if failed else 0
