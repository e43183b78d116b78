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

import numpy as np
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


def _hold_lock(path: Path, command: str) -> subprocess.Popen:
    """A child process holding `path`'s writer lock as `command` until killed."""
    holder = _py(f"""
        import time
        from core.runfolder import Run
        with Run({str(path)!r}).writer({command!r}):
            print("held", flush=True)
            time.sleep(600)
    """)
    assert holder.stdout.readline().strip() == "held", holder.stderr.read()
    return holder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
            and p.name != ".writer.lock"}


def test_every_writer_command_is_refused_while_another_process_writes_the_run(tmp_path, char_images, capsys,
                                                                             monkeypatch):
    """Issue 23.4: `train --resume`, `generate`, `score`, `audit` and `import` each go through main() while another
    process holds the run's writer lock: exit 2, one line naming the holder's pid and command, nothing written."""
    import core.components
    from core.__main__ import main
    from tests.fakerun import make_fake_run
    from tests.tiny import tiny_components

    # if a command ever stops taking the lock, it must not build the real architecture before the asserts fail
    monkeypatch.setattr(core.components, "Components", lambda spec, res, **kw: tiny_components(res, spec.seed))
    run = make_fake_run(tmp_path / "runs", "r", status="interrupted")
    commands = {
        "train": ["train", "--resume", run.path, "--no-progress"],
        "generate": ["generate", run.path, "--seeds", "7", "--steps", "1", "--no-progress"],
        "score": ["score", run.path, "--references", char_images, "--clip", "ViT-B-32:random", "--no-progress"],
        "audit": ["audit", run.path, "--references", char_images, "--clip", "ViT-B-32:random", "--no-progress"],
    }
    holder = _hold_lock(run.path, "generate")
    try:
        before = _files(run.path)
        for name, argv in commands.items():
            assert main([str(a) for a in argv]) == 2, name
            errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1 and f"pid {holder.pid} (generate) is writing this run" in errors[0], (name, errors)
        assert _files(run.path) == before
    finally:
        holder.kill()
        holder.wait()
    # import: its run is built in RUNS/.importing/NAME; a second import of the same name waits for the first
    from safetensors.numpy import save_file

    save_file({"<tomcat>": np.ones((1, 768), np.float32)}, str(tmp_path / "e.safetensors"))
    staging = tmp_path / "runs" / ".importing" / "imp"
    staging.mkdir(parents=True)
    holder = _hold_lock(staging, "import")
    try:
        argv = ["import", str(tmp_path / "e.safetensors"), "--runs-dir", str(tmp_path / "runs"), "--name", "imp",
                "--weights", "random", "--resolution", "128"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {holder.pid} (import) is importing into this name" in err, err
        assert not (tmp_path / "runs" / "imp").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0  # the holder died: its half-made folder is cleared and the import goes through


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


@pytest.mark.slow
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


def test_jsonl_appends_whole_lines_cut_a_torn_one_and_refuse_a_damaged_one(tmp_path):
    """The locked JSONL helper (RUN/review/*.jsonl) keeps the CSV logs' rule: a line torn by a killed writer is
    dropped by readers and cut before the next append, never merged; a damaged complete line is one line."""
    from core.runfolder import append_jsonl, read_jsonl

    path = tmp_path / "review" / "notes.jsonl"
    append_jsonl(path, [{"image": "a.png", "verdict": "ok"}, {"image": "b.png", "note": "ünïcode"}])
    with open(path, "ab") as f:
        f.write(b'{"image": "c.png", "verd')  # killed mid-append
    assert [r["image"] for r in read_jsonl(path)] == ["a.png", "b.png"]
    append_jsonl(path, [{"image": "d.png"}])
    assert [r["image"] for r in read_jsonl(path)] == ["a.png", "b.png", "d.png"]
    assert path.read_text(encoding="utf-8").count("\n") == 3 and "c.png" not in path.read_text(encoding="utf-8")
    assert read_jsonl(tmp_path / "absent.jsonl") == []
    with pytest.raises(TypeError):
        append_jsonl(path, [["not", "a", "mapping"]])
    with open(path, "ab") as f:
        f.write(b"[1, 2]\n")
    with pytest.raises(UserError, match=r"notes.jsonl: line 4 is not a JSON object"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(UserError, match=r"notes.jsonl: line 2 is not JSON"):
        read_jsonl(path)


def test_two_processes_appending_jsonl_never_interleave(tmp_path):
    code = """
        import sys
        from core.runfolder import append_jsonl
        path, who = sys.argv[1], sys.argv[2]
        for i in range(30):
            append_jsonl(path, [{"who": who, "i": i, "pad": "x" * 5000}])
    """
    from core.runfolder import read_jsonl

    path = tmp_path / "log.jsonl"
    procs = [subprocess.Popen([PY, "-c", textwrap.dedent(code), str(path), who], cwd=ROOT) for who in ("a", "b")]
    assert all(p.wait() == 0 for p in procs)
    assert sorted((r["who"], r["i"]) for r in read_jsonl(path)) == sorted((w, i) for w in "ab" for i in range(30))


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
    assert run.reload().record.final_step is None  # a failed run records no final step (null in run.json)
    log = run.log_path("train").read_text()
    assert "Traceback" in log and "IsADirectoryError" in log
    assert run.lock_holder() is None and run.stale_reason() is None
    monkeypatch.setattr(TrainingData, "batch", real)
    train(cfg, run, tiny, resume=True, progress=False)
    assert run.meta["status"] == "finished" and run.meta.get("message", "absent") is None  # cleared, not left
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4, 5, 6]


def test_a_full_disk_while_writing_run_json_is_reported_and_the_run_reads_as_stale(tiny, char_images, tmp_path,
                                                                                   monkeypatch):
    """Issue 10.1: on a full disk the status stayed `running` forever; now the next reader says stale."""
    import errno

    import core.runfolder.fileio as rf  # where atomic_write_json finds atomic_write_bytes
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
    assert run.reload().meta["status"] == "running"
    assert run.stale_reason().startswith("stale: run.json says running")


def _train_argv(images, runs_dir, name, steps, every):
    return ["train", "--images", str(images), "--weights", "random", "--resolution", "128", "--steps", str(steps),
            "--checkpoint-every", str(every), "--runs-dir", str(runs_dir), "--name", name, "--no-progress"]


@pytest.mark.slow
def test_ctrl_c_and_sigterm_to_a_train_process_leave_interrupted_and_resume_finishes(char_images, tmp_path,
                                                                                    tf_server):
    """Issue 23.6: a real SIGINT (Ctrl-C), then after `--resume` a real SIGTERM, to a `train` process (tiny
    networks) mid-training: each time exit 130, run.json `interrupted` with the resume command, the lock free,
    steps 1..n once. Then a real SIGKILL at a progress line (23.3): the run reads as stale. A last `train --resume`
    finishes with every step once."""
    import signal
    import time

    run = Run(tmp_path / "runs" / "s")
    argv = _train_argv(char_images, tmp_path / "runs", "s", 150, 50)
    def steps_done() -> int:
        return len(run.read_metrics()) if run.metrics_path.exists() else 0

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        done = steps_done()
        tf_server.start(argv)
        deadline = time.time() + 300
        while steps_done() < done + 3:  # mid-training: three new steps in
            assert time.time() < deadline, "no training steps in 300 s"
            time.sleep(0.01)
        os.kill(tf_server.child_pid(), sig)
        rc, _, log = tf_server.finish()
        record = run.reload().record
        steps = [m["step"] for m in run.read_metrics()]
        assert steps == list(range(1, len(steps) + 1)) and done + 3 <= len(steps) < 150, (sig, steps)
        assert run.lock_holder() is None
        if sig == signal.SIGKILL:  # nothing could record it: every reader says stale, with the resume command
            assert rc == -signal.SIGKILL and record.status == "running", (rc, log)
            assert f"--resume {run.path}" in run.stale_reason()
        else:
            assert rc == 130, (sig, log)
            assert record.status == "interrupted" and f"--resume {run.path}" in record.message, (sig, record, log)
            assert run.stale_reason() is None
        argv = ["train", "--resume", run.path, "--no-progress"]
    rc, _, log = tf_server.run(argv)
    assert rc == 0 and run.reload().record.status == "finished", log
    assert [m["step"] for m in run.read_metrics()] == list(range(1, 151))


@pytest.mark.slow
def test_resume_refuses_changed_training_images_and_changes_nothing(char_images, tmp_path, monkeypatch, capsys):
    """Issue 23.6 (docs/validation.md: the images must be unchanged on resume, sha256 against the manifest):
    an edited picture, a removed one and an added one are each refused in one line naming a file; the run is
    left as it was."""
    import shutil

    import core.components
    from core.__main__ import main
    from core.train import TrainConfig, start_run, train
    from tests.tiny import tiny_components

    images = tmp_path / "imgs"
    shutil.copytree(char_images, images)
    monkeypatch.setattr(core.components, "Components", lambda spec, res, **kw: tiny_components(res, spec.seed))
    cfg = TrainConfig.from_dict({"images": str(images), "weights": "random", "resolution": 128, "steps": 4,
                                 "checkpoint_every": 2})
    run = train(cfg, start_run(cfg, tmp_path / "runs", "r"), tiny_components(128), progress=False, stop_after=2)
    before = _files(run.path)
    names = sorted(p.name for p in images.glob("*.png"))
    edited = images / names[0]
    from PIL import Image

    def edit():
        with Image.open(edited) as im:
            im = im.convert("RGB")
        im.putpixel((0, 0), (1, 2, 3))
        im.save(edited)

    def remove():  # the picture and its licenses.csv line
        (images / names[1]).rename(tmp_path / names[1])
        lic = images / "licenses.csv"
        lic.write_text("".join(line for line in lic.read_text().splitlines(True) if names[1] not in line))

    def add():
        shutil.copy(images / names[2], images / "extra.png")

    for change, named in ((edit, names[0]), (remove, names[1]), (add, "extra.png")):
        saved = tmp_path / "saved"
        shutil.copytree(images, saved)
        change()
        assert main(["train", "--resume", str(run.path), "--no-progress"]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
        assert len(err) == 1 and "the images changed since the run started" in err[0] and named in err[0], err
        assert {k: v for k, v in _files(run.path).items() if "logs" not in k} == before
        assert run.reload().record.status == "interrupted"
        shutil.rmtree(images)
        saved.rename(images)
        (tmp_path / names[1]).unlink(missing_ok=True)


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


@pytest.mark.slow
def test_doctor_keras_probe_prints_no_tensorflow_log_line_and_the_check_sees_one_when_there_is():
    """Issue 10.12/23.8: `doctor --skip-unet` runs its Keras probe as `python -m core.worker core.doctor:probe_keras`
    (TensorFlow loaded for real, XLA compiled); that process prints no TensorFlow C++ line. The same probe with
    TF_ENABLE_ONEDNN_OPTS=1 prints "oneDNN custom operations are on" (through absl, at every TF_CPP_MIN_LOG_LEVEL,
    on any x86-64 CPU), and the pattern (tests/tflog.py; also applied to `train` in test_real and to Ray trial
    workers in test_sweep) must see it."""
    from tests.tflog import cpp_log_lines, env_without_tf_settings

    spec = json.dumps({"resolution": 128, "unet_seconds": 1, "skip_unet": True})
    for onednn, want in ((None, []), ("1", ["port.cc", "oneDNN custom operations are on"])):
        env = env_without_tf_settings(**({"TF_ENABLE_ONEDNN_OPTS": onednn} if onednn else {}))
        p = subprocess.run([PY, "-m", "core.worker", "core.doctor:probe_keras", spec], cwd=ROOT, capture_output=True,
                           text=True, timeout=600, env=env)
        assert p.returncode == 0 and '"xla": {"ok": true' in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
        found = " ".join(cpp_log_lines(p.stdout + p.stderr))
        assert all(w in found for w in want) and bool(found) == bool(want), (onednn, p.stderr[-3000:])


def _licensed_folder(tmp_path, char_images, lines: bytes) -> Path:
    """A copy of the character images with licenses.csv = `lines` (F0/F1 stand for the first two file names)."""
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(char_images, folder)
    names = sorted(p.name for p in folder.glob("*.png"))
    (folder / "licenses.csv").write_bytes(lines.replace(b"F0", names[0].encode()).replace(b"F1", names[1].encode()))
    return folder


HEAD = b"file,license,source,author\n"


@pytest.mark.parametrize("lines,want", [
    (HEAD + b"F0,CC0-1.0,caf\xe9,me\n", "not UTF-8 text"),
    (HEAD + b"F0,CC0-1.0,a,me\nF0,CC-BY-4.0,b,you\n", "is listed again (first on line 2)"),
    (HEAD + b'F0,CC0-1.0,"=cmd|\' /C calc\'!A0",me\n', "which spreadsheets run as a formula"),
    (HEAD + b"F0,CC0-1.0,a,@SUM(1+1)\n", "which spreadsheets run as a formula"),
    (HEAD + b"F0,CC0-1.0,+cmd|' /C calc'!A0,me\n", "starts with '+', which spreadsheets run as a formula"),
    (HEAD + b"F0,CC0-1.0,a,-2+3\n", "starts with '-', which spreadsheets run as a formula"),
    (b"file,license,author\nF0,CC0-1.0,me\n", "missing column(s) source"),
])
def test_licence_file_problems_are_one_line(tmp_path, char_images, lines, want):
    """Issue 10.11: non-UTF-8 licenses.csv (traceback), duplicate rows (later silently won), formulas stored."""
    from core.images import read_licenses, scan_folder

    folder = _licensed_folder(tmp_path, char_images, lines)
    with pytest.raises(UserError, match=re.escape(want)) as e:
        read_licenses(folder, scan_folder(folder)[0])
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------- kill -9 and resume
# Every durable write of a command is a crash point (core/crashpoint.py: TOMCAT_CRASH_AT_WRITE=k ends the process
# at its k-th write with os._exit(137), half of that write's bytes on disk, as kill -9 would). Each command runs
# once uninterrupted to count its writes, then once per k crashing at write k; the user's re-run (`train
# --resume`, or the same command again) must then give the uninterrupted result: every step, image and score row
# exactly once, same values. Children are forks of one server process per side (tests/crashjob.py), so a crash
# costs a fork, not a TensorFlow import.
def _visible_files(run: Path) -> set[str]:
    """The run's files a reader sees: temp files a killed write left (`.*.tmp`) and logs are not the result."""
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")
            and "logs" not in p.relative_to(run).parts}


@pytest.fixture(scope="module")
def tf_server():
    from tests.crashjob import Server

    server = Server("tf", ROOT)
    yield server
    server.close()


def _crash_at_every_write(server, argv_at, recover, progress, check) -> list[tuple[int, int]]:
    """Run `argv_at(place)` uninterrupted in place "ref", then for each of its writes k in a fresh place: crash at
    k, note `progress(place)`, `recover(place)` and `check(place, "ref")`. Returns [(k, progress at crash)]."""
    rc, writes, log = server.run(argv_at("ref"))
    assert rc == 0 and writes, log
    seen = []
    for k in range(1, writes + 1):
        place = f"k{k}"
        rc, _, log = server.run(argv_at(place), crash_at=k)
        assert rc == 137, (k, log)  # it died at write k, not before or after
        seen.append((k, progress(place)))
        recover(place)
        check(place, "ref")
    return seen


def _same_rows(got: list[dict], want: list[dict], approx: tuple[str, ...], place: str, rtol: float = 1e-5) -> None:
    """The same rows in the same order, each field equal, the `approx` ones (floats a re-run recomputes in
    another process) within 1e-5 relative: the uninterrupted and the resumed run both ran on this CPU, but
    nothing promises that threaded float sums come out bit-identical from one process to the next."""
    assert [{k: v for k, v in r.items() if k not in approx} for r in got] == \
        [{k: v for k, v in r.items() if k not in approx} for r in want], place
    for k in approx:
        np.testing.assert_allclose([float(r[k]) for r in got], [float(r[k]) for r in want], rtol=rtol, atol=1e-7,
                                   err_msg=f"{place}: {k}")


def _assert_progress_spread(seen, total) -> None:
    """The crashes landed before, during and after the job's work, not only at its edges."""
    mid = [k for k, p in seen if 0 < p < total]
    assert len(mid) >= max(2, len(seen) // 3), seen
    assert {p for _, p in seen} >= {0, total}, seen


@pytest.mark.real  # ~20 forked commands each (tests/crashjob.py): its own pytest process in `make test`
def test_kill_9_at_every_write_of_train_then_resume_equals_uninterrupted(char_images, tmp_path, tf_server):
    """Issue 10/23.3: train killed at each of its durable writes, then `train --resume` (or the same command
    when run.json never landed): every metric step once with the uninterrupted losses, the same embeddings,
    neighbour rows and files, finished, no stale lock."""
    import numpy as np

    from core.runfolder import Run

    steps = 4
    def argv(place):
        return ["train", "--images", char_images, "--weights", "random", "--resolution", 128, "--steps", steps,
                "--checkpoint-every", 2, "--batch-size", 1, "--lr", "5e-3", "--runs-dir", tmp_path / place,
                "--name", "t", "--no-progress"]

    def run_of(place):
        return Run(tmp_path / place / "t")

    def progress(place):
        return len(run_of(place).read_metrics()) if run_of(place).exists else 0

    def recover(place):
        again = ["train", "--resume", run_of(place).path, "--no-progress"] if run_of(place).exists else argv(place)
        rc, _, log = tf_server.run(again)
        assert rc == 0, (place, log)

    def check(place, ref_place):
        run, ref = run_of(place).reload(), run_of(ref_place)
        keep = ("step", "loss")  # each step once, the same loss
        _same_rows([{k: m[k] for k in keep} for m in run.read_metrics()],
                   [{k: m[k] for k in keep} for m in ref.read_metrics()], ("loss",), place)
        assert run.embedding_steps() == ref.embedding_steps() == [0, 2, 4]
        for s in ref.embedding_steps():
            np.testing.assert_allclose(run.load_embedding(s)["<tom-cat>"], ref.load_embedding(s)["<tom-cat>"],
                                       rtol=1e-5, atol=1e-7)
        _same_rows(run.read_neighbors(), ref.read_neighbors(), ("cosine", "distance_from_init"), place)
        assert _visible_files(run.path) == _visible_files(ref.path), place
        assert run.record.status == "finished" and run.stale_reason() is None and run.lock_holder() is None

    seen = _crash_at_every_write(tf_server, argv, recover, progress, check)
    _assert_progress_spread(seen, steps)
    print(f"train: {len(seen)} crash points, progress at each: {seen}")


@pytest.fixture(scope="module")
def trained_run(tf_server, char_images, tmp_path_factory):
    """A finished 4-step tiny run (checkpoints 0, 2, 4) made by the `train` command."""
    where = tmp_path_factory.mktemp("trained")
    rc, _, log = tf_server.run(["train", "--images", char_images, "--weights", "random", "--resolution", 128,
                                "--steps", 4, "--checkpoint-every", 2, "--runs-dir", where, "--name", "t",
                                "--no-progress"])
    assert rc == 0, log
    return where / "t"


@pytest.mark.real  # ~20 forked commands each (tests/crashjob.py): its own pytest process in `make test`
def test_kill_9_at_every_write_of_generate_then_rerun_equals_uninterrupted(trained_run, tmp_path, tf_server):
    """Issue 10/23.3: generate killed at each of its durable writes (PNGs, images.csv appends, grids), then run
    again: every image indexed once with the uninterrupted row, the same pixels, the same grids."""
    import shutil

    import numpy as np
    from PIL import Image

    from core.runfolder import Run

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of {}\n")
    total = 2 * 2  # seeds x checkpoints, in batches of 2: a crash can fall between the two PNGs of a batch

    def argv(place):
        if not (tmp_path / place).exists():
            shutil.copytree(trained_run, tmp_path / place / "g")  # the run's name is on its grids
        return ["generate", tmp_path / place / "g", "--prompts", prompts, "--seeds", "0,1", "--checkpoints", "0,final",
                "--steps", 2, "--batch-size", 2, "--no-progress"]

    def progress(place):
        return len(Run(tmp_path / place / "g").read_images())

    def recover(place):
        rc, _, log = tf_server.run(argv(place))
        assert rc == 0, (place, log)

    def pixels(path):
        return np.asarray(Image.open(path))

    def check(place, ref_place):
        run, ref = Run(tmp_path / place / "g"), Run(tmp_path / ref_place / "g")
        rows, want = run.read_images(), ref.read_images()
        assert len(want) == total and len({r["path"] for r in rows}) == len(rows)  # each image indexed once
        def strip(rs):
            return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in rs), key=lambda r: r["path"])

        # cond_gap (the memorisation screen) is a difference of two noise predictions, recomputed in another
        # process and batch: within 1e-4 relative, as the pictures are within 2 levels
        _same_rows(strip(rows), strip(want), ("cond_gap",), place, rtol=1e-4)
        assert _visible_files(run.path) == _visible_files(ref.path), place
        for rel in _visible_files(ref.path):  # images and grids: the same pictures (a float rounding apart)
            if rel.endswith(".png"):
                diff = np.abs(pixels(run.path / rel).astype(int) - pixels(ref.path / rel).astype(int))
                assert diff.max() <= 2 and diff.mean() < 0.01, (place, rel, diff.max(), diff.mean())

    seen = _crash_at_every_write(tf_server, argv, recover, progress, check)
    _assert_progress_spread(seen, total)
    print(f"generate: {len(seen)} crash points, progress at each: {seen}")


@pytest.mark.real  # ~20 forked commands each (tests/crashjob.py): its own pytest process in `make test`
def test_kill_9_at_every_write_of_score_then_rerun_equals_uninterrupted(char_images, tmp_path):
    """Issue 10/23.3: score (random CLIP) killed at each of its durable writes, then run again: every image
    scored once, the same CLIP-I/CLIP-T values, scores.json complete with the same summaries."""
    import shutil

    import pandas as pd

    from core.runfolder import Run
    from tests.crashjob import Server
    from tests.fakerun import make_fake_run

    refs = tmp_path / "refs"  # two references: each run encodes them again
    refs.mkdir()
    for p in sorted(char_images.glob("*.png"))[:2]:
        shutil.copy(p, refs)

    def argv(place):  # a small random CLIP (ViT-S-32): the bookkeeping under test is the same for any model
        if not (tmp_path / place).exists():
            make_fake_run(tmp_path / place, "s", prompts=["a photo of {}"], seeds=(0, 1, 2), with_scores=False)
        return ["score", tmp_path / place / "s", "--references", refs, "--clip", "ViT-S-32:random",
                "--batch-size", 2, "--n-boot", 20, "--no-progress"]

    def progress(place):
        return len(Run(tmp_path / place / "s").read_scores())

    def recover(place):
        rc, _, log = server.run(argv(place))
        assert rc == 0, (place, log)

    def check(place, ref_place):
        run, ref = Run(tmp_path / place / "s"), Run(tmp_path / ref_place / "s")
        _same_rows(run.read_scores(), ref.read_scores(), ("clip_i", "clip_t"), place)  # every image once, in order
        a, b = run.scores_record(), ref.scores_record()
        assert a.complete and b.complete
        pd.testing.assert_frame_equal(a.by_step_frame(), b.by_step_frame(), check_exact=False, rtol=1e-5)
        assert _visible_files(run.path) == _visible_files(ref.path), place

    server = Server("torch", ROOT)
    try:
        seen = _crash_at_every_write(server, argv, recover, progress, check)
    finally:
        server.close()
    total = len(Run(tmp_path / "ref" / "s").read_images())
    _assert_progress_spread(seen, total)
    print(f"score: {len(seen)} crash points, progress at each: {seen}")


@pytest.mark.real  # ~20 forked commands each (tests/crashjob.py): its own pytest process in `make test`
def test_kill_9_at_every_write_of_import_leaves_no_run_and_rerun_completes(tmp_path):
    """Issue 23.3: import killed at each of its writes leaves no run (it is built in runs/.importing/ and moved
    into place finished); the same command again gives the one finished run, equal to an uninterrupted import."""
    import numpy as np
    from safetensors.numpy import save_file

    from core.runfolder import Run, list_runs
    from tests.crashjob import Server

    vec = np.random.default_rng(3).normal(size=(1, 768)).astype(np.float32)
    src = tmp_path / "learned_embeds.safetensors"
    save_file({"<tomcat>": vec}, str(src))

    def argv(place):
        return ["import", src, "--runs-dir", tmp_path / place, "--name", "imp", "--weights", "random",
                "--resolution", 128]

    def progress(place):  # an import is all or nothing: no run may show before it is whole
        assert list_runs(tmp_path / place) == [], place
        return 0

    def recover(place):
        rc, _, log = server.run(argv(place))
        assert rc == 0, (place, log)

    def check(place, ref_place):
        runs, ref = list_runs(tmp_path / place), Run(tmp_path / ref_place / "imp")
        assert [r.name for r in runs] == ["imp"] and runs[0].record.status == "finished", place
        np.testing.assert_array_equal(runs[0].load_embedding(1)["<tomcat>"], vec)
        assert _visible_files(runs[0].path) == _visible_files(ref.path), place
        assert not (tmp_path / place / ".importing" / "imp").exists()

    server = Server("plain", ROOT)
    try:
        seen = _crash_at_every_write(server, argv, recover, progress, check)
    finally:
        server.close()
    assert [k for k, _ in seen] == [1, 2, 3], seen  # run.json, the embedding, run.json finished


# --------------------------------------------------------------------------------- a hostile run folder
TRACKER = "![t](http://127.0.0.1:9/track.png)"


def _png_header_bomb(path: Path, side: int = 60000) -> None:
    """A few-hundred-byte PNG that claims side x side pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def make_hostile_run(runs_dir: Path) -> tuple[Run, Path]:
    """A run whose files point out of it every way we know (symlinks in grids/ and images/, absolute and `..`
    paths in images.csv), plus a Markdown-tracker prompt, a header-only 60000x60000 PNG, a non-image PNG and an
    image at the last checkpoint with no step-0 partner. Returns (run, the outside secret picture)."""
    from tests.fakerun import draw_image, make_fake_run

    secret = runs_dir.parent / "outside-secret.png"
    runs_dir.mkdir(parents=True, exist_ok=True)
    draw_image(4242, size=64).save(secret)
    run = make_fake_run(runs_dir, "hostile", prompts=["a photo of {}", TRACKER.replace("track", "{}-track")],
                        with_scores=True)
    rows = run.read_images()
    last = max(int(r["step"]) for r in rows)
    run.grids_dir.mkdir(exist_ok=True)
    (run.grids_dir / "evil.png").symlink_to(secret)
    draw_image(7, size=96).save(run.grids_dir / "fine.png")
    # an existing image becomes a symlink out of the run
    victim = run.path / rows[-1]["path"]
    victim.unlink()
    victim.symlink_to(secret)
    extra = []
    for seed, path in ((90, str(secret)), (91, f"../../{secret.name}"), (92, run.image_relpath(last, "bomb.png")),
                       (93, run.image_relpath(last, "text.png"))):
        extra.append({**rows[-1], "seed": seed, "path": path, "prompt": TRACKER, "template": TRACKER})
    _png_header_bomb(run.path / run.image_relpath(last, "bomb.png"))
    (run.path / run.image_relpath(last, "text.png")).write_text("not a picture")
    run.append_images(extra)  # seeds 90-93 exist only at the last checkpoint: no step-0 partner
    scores = run.read_scores()
    run.write_scores(scores + [{**scores[-1], "path": str(secret), "seed": 90, "clip_i": 0.99, "clip_t": 0.99}])
    return run, secret


@pytest.mark.slow
def test_hostile_run_folder_in_the_dashboard(tmp_path):
    """Issue 10.2/10.4/10.5/10.10: symlinks and absolute/`..` paths are never shown or offered; a missing step-0
    partner does not lose the page; a Markdown prompt is text; a bomb and a non-image are notes, not crashes."""
    from streamlit.testing.v1 import AppTest

    run, secret = make_hostile_run(tmp_path / "runs")
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180)
    at.session_state["runs_dir"] = str(run.path.parent)
    at.run()
    for page in ("views/prompt_grids.py", "views/character_vs_style.py", "views/token_explorer.py",
                 "views/clip_scores.py", "views/experiments.py", "views/model_card.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown = [str(m.value) for m in at.markdown] + [str(c.value) for c in at.caption]
        assert not any("](http" in m for m in shown), (page, [m for m in shown if "](http" in m])
        if page == "views/prompt_grids.py":
            notes = " ".join(str(w.value) for w in at.warning)
            assert "leads outside the run folder" in notes and "too many pixels" in notes
            assert "not an image" in notes or "damaged" in notes
            assert any("\\!\\[t\\]" in m for m in shown)  # the tracker prompt, escaped: shown as text
            grids = at.selectbox(key="grid_png_hostile").options
            assert "fine.png" in grids and "evil.png" not in grids
            # 2 prompts x 2 seeds x (before, after) = 8, minus the symlinked one (a note), + the grid preview
            # (fine.png); the 4 partnerless rows are notes too
            assert len(at.image) == 8 - 1 + 1


def test_hostile_run_folder_through_score_card_and_data_layer(tmp_path):
    """Issue 10.2/10.3: absolute, `..` and symlinked images.csv paths are refused by score, the data layer and
    the card's best/worst grids."""
    from core.card.examples import pick_examples
    from dashboard import data

    run, secret = make_hostile_run(tmp_path / "runs")
    rows = run.read_images()
    for r in rows[-5:-2]:  # the symlinked file, the absolute path, the `..` path
        with pytest.raises(data.DataError, match="outside the run folder"):
            data.image_file(str(run.path), r["path"])
    with pytest.raises(data.DataError, match="outside the run folder"):
        data.grid_file(str(run.path), "evil.png")
    assert "evil.png" not in data.grids(str(run.path))
    ex = pick_examples(run, run.read_scores())
    assert any("refused: outside the run folder" in m for m in ex.missing)
    assert all(str(secret) != it["path"] for s in ex.sets for it in s["items"])
    from core.images import run_image_rows

    with pytest.raises(UserError, match="outside the run folder"):
        run_image_rows(run)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root and mount rights; skipped otherwise, with the reason)."""
    where = tmp_path / "disk"
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({p.stderr.strip() or p.returncode}); the full-disk probe "
                    "runs where the machine allows it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk_fails_in_one_line_never_finished_and_resume_completes(tiny, char_images, small_disk):
    """Issue 10.1: on a full disk the status stayed `running` forever. Now: one line on the terminal, the run is
    `failed` (or reads as stale when even run.json could not be written), and after space is freed --resume
    finishes with every step once."""
    import shutil

    from core.errors import JobFailed
    from core.train import start_run, train

    cfg = _cfg(char_images, steps=60, checkpoint_every=1)
    run = start_run(cfg, small_disk / "runs", "r")
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * max(0, free - 96 * 1024))  # leave ~96 KiB: a few checkpoints' worth
    with pytest.raises(JobFailed, match="No space left on device") as e:
        train(cfg, run, tiny, progress=False)
    assert "\n" not in str(e.value)
    status = run.reload().meta["status"]
    assert status != "finished"
    assert status == "failed" or run.stale_reason() is not None
    filler.unlink()
    train(cfg, run, tiny, resume=True, progress=False)
    assert run.meta["status"] == "finished"
    assert [m["step"] for m in run.read_metrics()] == list(range(1, 61))


# ------------------------------------------------------------------------------- damaged embedding files
DAMAGED_EMBEDDINGS = {
    "empty": (lambda p, tok: p.write_bytes(b""), "empty embedding file"),
    "not safetensors": (lambda p, tok: p.write_bytes(b"\x00garbage, not a safetensors header" * 4),
                        "not a safetensors embedding"),
    "NaN vector": (lambda p, tok: _st(p, {tok: [[float("nan")] * 8]}), "NaN or infinite"),
    "wrong shape": (lambda p, tok: _st(p, {tok: [1.0, 2.0, 3.0]}), "expected [n_vectors, dim]"),
}


def _st(path: Path, tensors: dict) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({k: np.asarray(v, np.float32) for k, v in tensors.items()}, str(path))


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGED_EMBEDDINGS))
def test_damaged_embedding_files_are_one_line_in_generate_export_card_and_dashboard(tiny, char_images, tmp_path,
                                                                                 damage):
    """Issue 10.6: an empty or non-safetensors step file gave a SafetensorError traceback in generate, export and
    the card; a wrong shape or NaN vector was exported silently."""
    from core.card import build_card
    from core.generate import GenerateConfig, generate
    from core.train import start_run, train
    from dashboard import data

    cfg = _cfg(char_images, steps=2, checkpoint_every=2)
    run = start_run(cfg, tmp_path / "runs", "r")
    train(cfg, run, tiny, progress=False)
    final = run.reload().embedding_steps()[-1]
    write, want = DAMAGED_EMBEDDINGS[damage]
    write(run.embedding_path(final), cfg.token)
    before = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.suffix != ".lock"}

    with pytest.raises(UserError, match=re.escape(want)) as e:
        generate(run, GenerateConfig.from_dict({"seeds": "0", "checkpoints": "final", "steps": 1}), tiny,
                 progress=False)
    assert "\n" not in str(e.value)
    p = subprocess.run([PY, "-m", "core", "export", str(run.path), "--format", "diffusers", "--out",
                        str(tmp_path / "out.safetensors")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode != 0 and want in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "out.safetensors").exists()
    with pytest.raises(UserError, match=re.escape(want)):
        build_card(run)
    with pytest.raises((UserError, data.DataError), match=re.escape(want)) as e:  # the Token explorer's downloads
        data.export_downloads(str(run.path))
    assert "\n" not in str(e.value)
    after = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert {k for k in after if "logs" not in k.parts} == set(before) and all(
        after[k] == v for k, v in before.items()), "a refused read changed the run"
