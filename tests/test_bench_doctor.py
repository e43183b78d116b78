"""`doctor` and `bench` logic without the real architecture: the subprocess worker, the interleaved plan, the
ratios, config errors, and doctor's probes (torch and Keras in their own processes, UNet timing skipped).
The benchmark itself is run by hand or CI-free (`python -m core bench --resolution 128 --quick`), never timed here."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def echo_spec(spec):  # a worker target for the round-trip test
    if spec.get("fail"):
        raise ValueError("asked to fail")
    return {"got": spec, "sys_modules_has_tensorflow": "tensorflow" in sys.modules}


def test_worker_round_trip_and_failure_is_data():
    from core.worker import run_in_subprocess

    assert run_in_subprocess("tests.test_bench_doctor:echo_spec", {"a": 1}) == {
        "got": {"a": 1}, "sys_modules_has_tensorflow": False}
    bad = run_in_subprocess("tests.test_bench_doctor:echo_spec", {"fail": True})
    assert bad["error"] == "ValueError: asked to fail"


def diffusers_both(spec):  # a worker target: the train and the generate reference in one child process
    from core import bench

    return {work: getattr(bench, f"measure_diffusers_{work}")(spec) for work in ("train", "generate")}


@pytest.fixture(scope="module")
def diffusers_reference():
    """Both diffusers reference sides run once, in one child (torch, diffusers and transformers load once)."""
    from core.worker import run_in_subprocess

    spec = {"resolution": 128, "batch": 1, "iters": 1, "steps": 2, "guidance": 7.5, "diffusers_precision": "fp32",
            "tiny": True}
    return run_in_subprocess("tests.test_bench_doctor:diffusers_both", spec, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("work", ["train", "generate"])
def test_diffusers_reference_runs_on_the_installed_diffusers_and_transformers(work, diffusers_reference):
    """The reference side's code against the installed libraries (transformers 5 dropped CLIPTextModel's
    .text_model, which broke the training reference unnoticed): same code path, networks a few channels wide."""
    assert "error" not in diffusers_reference, diffusers_reference
    out = diffusers_reference[work]
    assert "error" not in out, out
    assert len(out["times"]) == 1 and out["times"][0] > 0 and out["backend"] == "torch-cpu"
    assert out.get("finite", True) is True


def test_plan_interleaves_sides_and_alternates_who_goes_first():
    from core.bench import BenchConfig, plan

    r = BenchConfig(quick=True).resolved(gpu=False)
    assert (r["train_batches"], r["gen_batches"], r["gen_steps"], r["rounds"]) == ([2], [2], 5, 2)
    assert r["mixed_precision"] == "no" and r["jit_compile"] is False
    steps = plan(r)
    assert steps == [(0, "train", 2, "ours"), (0, "train", 2, "diffusers"),
                     (0, "generate", 2, "ours"), (0, "generate", 2, "kerascv"), (0, "generate", 2, "diffusers"),
                     (1, "train", 2, "diffusers"), (1, "train", 2, "ours"),
                     (1, "generate", 2, "diffusers"), (1, "generate", 2, "kerascv"), (1, "generate", 2, "ours")]
    full = BenchConfig(references="diffusers", work="generate").resolved(gpu=True)
    assert full["gen_batches"] == [1, 8] and full["gen_steps"] == 50 and full["mixed_precision"] == "bf16"
    assert full["diffusers_precision"] == "fp16" and full["jit_compile"] is True
    assert {s for *_, s in plan(full)} == {"ours", "diffusers"}


def test_summary_ratios_say_what_they_compare():
    from core.bench import render_table, summarize

    raw = [{"work": "generate", "batch": 2, "side": "ours", "times": [1.0, 1.2, 0.8], "peak_gb": 5.0,
            "warmup_s": 3, "build_s": 9},
           {"work": "generate", "batch": 2, "side": "kerascv", "times": [2.0, 2.0], "peak_gb": 6.0, "warmup_s": 3,
            "build_s": 9},
           {"work": "generate", "batch": 2, "side": "diffusers", "times": [1.5], "peak_gb": 4.0, "warmup_s": 1,
            "build_s": 2},
           {"work": "generate", "batch": 2, "side": "diffusers", "times": [1.5], "peak_gb": 4.5, "warmup_s": 1,
            "build_s": 2},
           {"work": "train", "batch": 2, "side": "ours", "error": "boom"}]
    s = summarize({}, raw)
    g = s["generate@2"]
    assert g["ours"]["images_per_s"] == pytest.approx(2.0)  # batch 2 / median 1.0 s
    assert g["ratio_vs_kerascv"] == pytest.approx(2.0)
    assert g["ratio_vs_diffusers"] == pytest.approx(1.5)
    assert g["memory_ratio_vs_diffusers"] == pytest.approx(5.0 / 4.5)  # peak = max over rounds
    assert s["train@2"]["ours"]["errors"] == ["boom"] and "ratio_vs_diffusers" not in s["train@2"]
    table = render_table(s, "hdr")
    assert "| generate | 2 | 2.000 | 1.000 | 1.333 | 2.00x | 1.50x | 5.00 / 6.00 / 4.50 |" in table
    assert "ours failed: boom" in table


def test_bench_config_errors_name_the_key():
    from core.bench import BenchConfig

    with pytest.raises(UserError, match="train_batches='1,x'"):
        BenchConfig.from_dict({"train_batches": "1,x"})
    with pytest.raises(UserError, match="references='torch'"):
        BenchConfig.from_dict({"references": "torch"})
    with pytest.raises(UserError, match="resolution=100"):
        BenchConfig.from_dict({"resolution": 100})


def test_cli_help_is_light():
    for cmd in ("bench", "doctor"):
        out = subprocess.run([sys.executable, "-m", "core", cmd, "--help"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and "--resolution" in out.stdout


@pytest.mark.slow
def test_doctor_reports_both_frameworks_from_their_own_processes(tmp_path):
    """No GPU here: doctor must say so, see the CPU through Keras and torch, check XLA, and list the cache."""
    out_json = tmp_path / "doctor.json"
    proc = subprocess.run([sys.executable, "-m", "core", "doctor", "--skip-unet", "--json", str(out_json)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    r = json.loads(out_json.read_text())
    assert r["keras"]["backend"] in ("tensorflow", "jax")
    assert r["keras"]["devices"] and r["torch"]["devices"]
    assert r["keras"]["xla"]["ok"] is True
    assert r["keras"]["precisions"]["float32"] is True
    assert set(r["weights_cache"]["files"]) == {"text_encoder", "diffusion_model", "image_encoder", "decoder"}
    if not r["nvidia_smi"]:
        assert "GPU:             none" in proc.stdout and r["keras"]["gpu_seen"] is False
    assert "XLA:             works" in proc.stdout and "advice:" in proc.stdout

