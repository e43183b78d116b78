"""The fault suite (issue 10): hostile run folders, torn logs, two writers, kills and resumes, a full disk,
bad CLI values. Each test names the probe it covers; tiny stand-ins replace the real networks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import UserError
from core.runfolder import IMAGE_COLUMNS, METRIC_COLUMNS, Run, append_csv, read_csv_rows

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _py(code: str, **kw) -> subprocess.Popen:
    """A python child in the repo root running `code` (no torch/TF unless the code imports them)."""
    return subprocess.Popen([PY, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


# ------------------------------------------------------------------------------------------- containment
def test_resolve_inside_refuses_paths_and_symlinks_leaving_the_run(tmp_path):
    from tests.fakerun import make_fake_run

    run = make_fake_run(tmp_path / "runs", "r", with_images=True, with_scores=False)
    rel = run.read_images()[0]["path"]
    assert run.resolve_inside(rel) == (run.path / rel).resolve()
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (run.grids_dir).mkdir(exist_ok=True)
    (run.grids_dir / "evil.png").symlink_to(outside)
    (run.images_dir / "link").symlink_to(tmp_path)
    for bad in ("../secret.txt", str(outside), "grids/evil.png", "images/link/secret.txt", "/etc/passwd"):
        with pytest.raises(UserError, match="outside the run folder") as e:
            run.resolve_inside(bad)
        assert "\n" not in str(e.value)
    # a declared references folder is allowed explicitly
    assert run.resolve_inside(str(outside), also=[tmp_path]) == outside.resolve()
    # a symlink loop is one line too
    (run.path / "loop").symlink_to(run.path / "loop")
    with pytest.raises(UserError):
        run.resolve_inside("loop")


# ---------------------------------------------------------------------------------------------- one writer
def test_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    run = Run.create(tmp_path, "r", {"kind": "train"})
    holder = _py(f"""
        import sys, time
        from core.runfolder import Run
        with Run({str(run.path)!r}).writer("generate"):
            print("held", flush=True)
            time.sleep(60)
    """)
    assert holder.stdout.readline().strip() == "held"
    try:
        info = run.lock_holder()
        assert info["pid"] == holder.pid and info["command"] == "generate"
        with pytest.raises(UserError, match=rf"pid {holder.pid} \(generate\) is writing this run"):
            with run.writer("score"):
                pass
    finally:
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    assert run.lock_holder() is None
    with run.writer("score"):
        assert run.lock_holder()["pid"] == os.getpid()
        with run.writer("score"):  # re-entrant in one process
            pass
        assert run.lock_holder()["command"] == "score"
    assert run.lock_holder() is None


def test_running_status_without_a_lock_holder_is_stale(tmp_path):
    run = Run.create(tmp_path, "r", {"kind": "train", "status": "running", "pid": 999999})
    assert "stale" in run.stale_reason() and f"--resume {run.path}" in run.stale_reason()
    with run.writer("train"):
        assert run.stale_reason() is None
    run.update_meta(status="failed")
    assert run.stale_reason() is None


# ------------------------------------------------------------------------------------------------ CSV logs
def test_torn_last_line_is_cut_not_merged_with_the_next_append(tmp_path):
    path = tmp_path / "metrics.csv"
    append_csv(path, METRIC_COLUMNS, [{"step": 1, "loss": 0.5, "lr": 0.1, "seconds": 1}])
    with open(path, "a") as f:
        f.write("2,0.4")  # killed mid-append
    assert [r["step"] for r in read_csv_rows(path, METRIC_COLUMNS)] == ["1"]
    append_csv(path, METRIC_COLUMNS, [{"step": 2, "loss": 0.3, "lr": 0.1, "seconds": 2}])
    rows = read_csv_rows(path, METRIC_COLUMNS)
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "0.5"), ("2", "0.3")]


def test_a_column_shifted_row_is_refused_on_read(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("step,loss,lr,seconds\n1,0.5,0.1,1\n2,0.42,0.1,0.3,0.1,2\n")
    with pytest.raises(UserError, match="row 3 has 6 fields, expected 4"):
        read_csv_rows(path, METRIC_COLUMNS)
    path.write_bytes(b"step,loss,lr,seconds\n1,\xff\xfe,0.1,1\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_csv_rows(path, METRIC_COLUMNS)


def test_two_processes_appending_to_a_new_csv_write_one_header(tmp_path):
    """Issue probe: two processes appending to a new images.csv wrote a second header in 53 of 60 trials."""
    code = """
        import sys
        from core.runfolder import IMAGE_COLUMNS, append_csv
        path, who = sys.argv[1], sys.argv[2]
        for i in range(30):
            append_csv(path, IMAGE_COLUMNS, [{"path": f"{who}-{i}.png", "prompt": "x" * 2000}])
    """
    for trial in range(10):
        path = tmp_path / f"images-{trial}.csv"
        procs = [subprocess.Popen([PY, "-c", textwrap.dedent(code), str(path), who], cwd=ROOT)
                 for who in ("a", "b")]
        assert all(p.wait() == 0 for p in procs)
        rows = read_csv_rows(path, IMAGE_COLUMNS)
        assert sorted(r["path"] for r in rows) == sorted(f"{w}-{i}.png" for w in "ab" for i in range(30))
        assert path.read_text().count("path,prompt") == 1


# ------------------------------------------------------------------------------------------ true status
RES = 128


@pytest.fixture(scope="module")
def tiny():
    from tests.tiny import tiny_components

    return tiny_components(RES)


def _cfg(images, **kw):
    from core.train import TrainConfig

    base = dict(images=str(images), weights="random", resolution=128, steps=6, checkpoint_every=2, batch_size=1,
                lr=5e-3)
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_an_exception_mid_run_marks_it_failed_with_the_reason_and_resume_continues(tiny, char_images, tmp_path,
                                                                                  monkeypatch):
    """Issue 10.1: an IsADirectoryError at step 3 used to leave `finished`."""
    from core.errors import JobFailed
    from core.train import TrainingData, start_run, train

    cfg = _cfg(char_images)
    run = start_run(cfg, tmp_path, "r")
    real = TrainingData.batch

    def boom(self, step):
        if step == 3:
            raise IsADirectoryError(21, "Is a directory", "/tmp/x")
        return real(self, step)

    monkeypatch.setattr(TrainingData, "batch", boom)
    with pytest.raises(JobFailed, match="train failed: IsADirectoryError") as e:
        train(cfg, run, tiny, progress=False)
    assert "\n" not in str(e.value) and f"--resume {run.path}" in str(e.value)
    meta = run.meta
    assert meta["status"] == "failed" and "failed at step 2: IsADirectoryError" in meta["message"]
    assert "final_step" not in meta
    log = run.log_path("train").read_text()
    assert "Traceback" in log and "IsADirectoryError" in log
    assert run.lock_holder() is None and run.stale_reason() is None
    monkeypatch.setattr(TrainingData, "batch", real)
    train(cfg, run, tiny, resume=True, progress=False)
    assert run.meta["status"] == "finished" and run.meta["message"] is None
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_while_writing_run_json_is_reported_and_the_run_reads_as_stale(tiny, char_images, tmp_path,
                                                                                   monkeypatch):
    """Issue 10.1: on a full disk the status stayed `running` forever; now the next reader says stale."""
    import errno

    import core.runfolder as rf
    from core.errors import JobFailed
    from core.train import start_run, train

    cfg = _cfg(char_images, steps=2)
    run = start_run(cfg, tmp_path, "r")
    real = rf.atomic_write_bytes

    disk = {"full": False}

    def full(path, data):  # the disk fills as the run finishes, and stays full
        disk["full"] = disk["full"] or (Path(path).name == "run.json" and b'"finished"' in data)
        if disk["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(rf, "atomic_write_bytes", full)
    with pytest.raises(JobFailed, match="No space left on device.*run.json could not record") as e:
        train(cfg, run, tiny, progress=False)
    assert "\n" not in str(e.value)
    monkeypatch.setattr(rf, "atomic_write_bytes", real)
    assert run.meta["status"] == "running"
    assert run.stale_reason().startswith("stale: run.json says running")


def test_bad_values_are_refused_before_tensorflow_loads(tmp_path, char_images):
    """Issue 10.11/10.12: --seed -1, --batch-size 100000, --weights-seed -1, --name '' or 300 chars, a runs-dir
    that is a file, --prompts DIR, a 300-character token: one line, exit 2, no folder, TensorFlow not loaded."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    base = ["train", "--images", str(char_images), "--weights", "random", "--resolution", "128",
            "--runs-dir", str(tmp_path / "runs")]
    cases = {
        "seed=-1": ["--seed", "-1"],
        "batch_size=100000": ["--batch-size", "100000"],
        "weights_seed=-1": ["--weights-seed", "-1"],
        "--name ''": ["--name", ""],
        "300 characters": ["--name", "x" * 300],
        "is a file": ["--runs-dir", str(afile)],
        "is a folder, not a prompt file": ["--prompts", str(tmp_path)],
        "token=": ["--token", "<" + "a" * 300 + ">"],
    }
    code = ("import sys\nfrom core.__main__ import main\nrc = main(sys.argv[1:])\n"
            "print('TF' if 'tensorflow' in sys.modules else 'noTF', rc)")
    for want, extra in cases.items():
        p = subprocess.run([PY, "-c", code, *base, *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.stdout.split() == ["noTF", "2"], (want, p.stdout, p.stderr)
        err = p.stderr.strip()
        assert err.count("\n") == 0 and err.startswith("error: ") and want in err, (want, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _licensed_folder(tmp_path, char_images, lines: bytes) -> Path:
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(char_images, folder)
    names = sorted(p.name for p in folder.glob("*.png"))
    (folder / "licenses.csv").write_bytes(b"file,license,source,author\n" + lines.replace(b"F0", names[0].encode())
                                          .replace(b"F1", names[1].encode()))
    return folder


@pytest.mark.parametrize("lines,want", [
    (b"F0,CC0-1.0,caf\xe9,me\n", "not UTF-8 text"),
    (b"F0,CC0-1.0,a,me\nF0,CC-BY-4.0,b,you\n", "is listed again (first on line 2)"),
    (b'F0,CC0-1.0,"=cmd|\' /C calc\'!A0",me\n', "which spreadsheets run as a formula"),
    (b"F0,CC0-1.0,a,@SUM(1+1)\n", "which spreadsheets run as a formula"),
])
def test_licence_file_problems_are_one_line(tmp_path, char_images, lines, want):
    """Issue 10.11: non-UTF-8 licenses.csv (traceback), duplicate rows (later silently won), formulas stored."""
    from core.images import read_licenses, scan_folder

    folder = _licensed_folder(tmp_path, char_images, lines)
    with pytest.raises(UserError, match=re.escape(want)) as e:
        read_licenses(folder, scan_folder(folder)[0])
    assert "\n" not in str(e.value)
