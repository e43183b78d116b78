"""The fault suite (issue 10): hostile run folders, torn logs, two writers, kills and resumes, a full disk,
bad CLI values. Each test names the probe it covers; tiny stand-ins replace the real networks."""

from __future__ import annotations

import json
import os
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
