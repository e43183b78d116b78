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


def test_tensorflow_prints_no_cpp_log_lines_under_our_commands():
    """Issue 10.12: every `train` printed four lines of TensorFlow C++ logging before anything else."""
    code = ("import sys\nfrom core.__main__ import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "import keras_cv, tensorflow as tf\nprint(int(tf.constant(1) + 1))")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    p = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and p.stdout.split()[-1] == "2", p.stderr
    assert not re.search(r"^(I|W)\d{4} |cpu_feature_guard|absl::InitializeLog", p.stderr, re.M), p.stderr


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


# ---------------------------------------------------------------------------------- kill -9 and resume
KILLS = {"train": 8, "generate": 6, "score": 6}  # at least 20 SIGKILLs at random moments, then resume

_TRAIN_CHILD = """
import json, sys
from core.runfolder import Run
from core.train import TrainConfig, train
from tests.tiny import tiny_components
cfg, run = TrainConfig.from_dict(json.loads(sys.argv[1])), Run(sys.argv[2])
comps = tiny_components(cfg.resolution)
print("ready", flush=True)
train(cfg, run, comps, resume=True, progress=False)
"""

_GENERATE_CHILD = """
import json, sys
from core.generate import GenerateConfig, generate
from core.runfolder import Run
from tests.tiny import tiny_components
cfg, run = GenerateConfig.from_dict(json.loads(sys.argv[1])), Run(sys.argv[2])
comps = tiny_components(int(run.meta["config"]["resolution"]))
print("ready", flush=True)
generate(run, cfg, comps, progress=False)
"""


def _kill_cycles(argv: list[str], done, kills_wanted: int, rng, est_seconds: float) -> int:
    """Start `argv` again and again, SIGKILL it at a random moment of its work, until `done()`; then let it
    finish. Returns how many kills landed while the job was still working."""
    import signal
    import time

    kills = 0
    while not done():
        child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = child.stdout.readline()  # the import/build time is not the job's: kill during the work
        if kills < kills_wanted and line.strip() == "ready":
            time.sleep(float(rng.uniform(0.0, est_seconds)))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
        out, err = child.communicate(timeout=300)
        assert child.returncode in (0, -signal.SIGKILL), (line, out, err)
    return kills


@pytest.mark.real  # ~30 child processes (each imports TensorFlow or torch): its own process in `make test`
@pytest.mark.timeout(3000)  # ~30 child processes; the default 1500 s ran out under a load of ~6 on 2 cores
def test_kill_9_and_resume_train_generate_score_lose_or_duplicate_nothing(tiny, char_images, tmp_path):
    """Issue 10: >= 20 kill -9 / resume cycles across train, generate and score; every metric step, image and
    score row exactly once and equal to an uninterrupted run's."""
    import shutil
    import time

    import numpy as np
    from PIL import Image

    from core.generate import GenerateConfig, generate
    from core.train import start_run, train
    from tests.fakerun import make_fake_run

    rng = np.random.default_rng(10)
    kills = {}
    # ---- train: uninterrupted reference in this process, then a killed-and-resumed twin in children
    cfg = _cfg(char_images, steps=24, checkpoint_every=3)
    t0 = time.time()
    ref = train(cfg, start_run(cfg, tmp_path / "ref", "t"), tiny, progress=False)
    est = time.time() - t0
    ref_losses = [(m["step"], m["loss"]) for m in ref.read_metrics()]
    kills["train"] = 0
    twins = 0
    while kills["train"] < KILLS["train"]:
        run = start_run(cfg, tmp_path / "killed", f"t{twins}")
        twins += 1
        kills["train"] += _kill_cycles([PY, "-c", _TRAIN_CHILD, json.dumps(cfg.to_dict()), str(run.path)],
                                       lambda: run.reload().meta["status"] == "finished", KILLS["train"] - kills["train"],
                                       rng, est)
        got = [(m["step"], m["loss"]) for m in run.read_metrics()]
        assert [s for s, _ in got] == list(range(1, 25))  # every step exactly once
        np.testing.assert_allclose([v for _, v in got], [v for _, v in ref_losses], rtol=1e-5)
        assert run.embedding_steps() == ref.embedding_steps()
        for s in ref.embedding_steps():
            np.testing.assert_allclose(run.load_embedding(s)[cfg.token], ref.load_embedding(s)[cfg.token], rtol=1e-5)
        assert sorted({(r["step"], r["rank"]) for r in run.read_neighbors()}) == \
            sorted((r["step"], r["rank"]) for r in run.read_neighbors())  # no neighbour row twice
        assert len(run.read_neighbors()) == len(ref.read_neighbors())
        assert run.stale_reason() is None and run.lock_holder() is None

    # ---- generate: the reference run's checkpoints, uninterrupted vs killed-and-resumed
    gcfg = GenerateConfig.from_dict({"seeds": "0,1,2,3", "checkpoints": "all", "steps": 3, "batch_size": 2})
    shutil.copytree(ref.path, tmp_path / "gen" / "a")
    ga = Run(tmp_path / "gen" / "a")
    t0 = time.time()
    generate(ga, gcfg, tiny, progress=False)
    est = time.time() - t0
    want = {r["path"]: r for r in ga.read_images()}
    kills["generate"] = 0
    for copy in range(30):  # fresh copies until enough kills landed mid-work (a fast job may finish first)
        if kills["generate"] >= KILLS["generate"]:
            break
        shutil.copytree(ref.path, tmp_path / "gen" / f"b{copy}")
        gb = Run(tmp_path / "gen" / f"b{copy}")
        kills["generate"] += _kill_cycles(
            [PY, "-c", _GENERATE_CHILD, json.dumps(gcfg.to_dict()), str(gb.path)],
            lambda: len({r["path"] for r in gb.read_images()}) == len(want) and
            (gb.grids_dir.exists() and len(list(gb.grids_dir.iterdir())) == len(list(ga.grids_dir.iterdir()))),
            KILLS["generate"] - kills["generate"], rng, est)
        rows = read_csv_rows(gb.images_index_path, IMAGE_COLUMNS)
        assert sorted(r["path"] for r in rows) == sorted(want)  # every image indexed exactly once
        for r in rows:
            a = np.asarray(Image.open(ga.path / r["path"]), dtype=int)
            b = np.asarray(Image.open(gb.path / r["path"]), dtype=int)
            assert np.abs(a - b).max() <= 2, r["path"]
            assert {k: v for k, v in r.items() if k != "seconds"} == \
                {k: v for k, v in want[r["path"]].items() if k != "seconds"}

    # ---- score (the CLI, random CLIP): uninterrupted vs killed-and-resumed, on a fake run with many images
    prompts = [f"a picture of {{}} number {i}" for i in range(6)]
    sa = make_fake_run(tmp_path / "score", "a", prompts=prompts, seeds=(0, 1, 2), with_scores=False)
    refs = tmp_path / "refs"
    shutil.copytree(char_images, refs)
    argv = [PY, "-c", "import sys, torch, open_clip; print('ready', flush=True); from core.__main__ import main; "
            "sys.exit(main())",
            "score", None, "--references", str(refs), "--clip", "ViT-B-32:random", "--batch-size", "2",
            "--n-boot", "50", "--no-progress"]
    t0 = time.time()
    p = subprocess.run([a if a else str(sa.path) for a in argv], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    est = time.time() - t0
    kills["score"] = 0
    a_rows = sa.read_scores()
    for copy in range(30):
        if kills["score"] >= KILLS["score"]:
            break
        shutil.copytree(sa.path, tmp_path / "score" / f"b{copy}", ignore=shutil.ignore_patterns("scores.*"))
        sb = Run(tmp_path / "score" / f"b{copy}")
        kills["score"] += _kill_cycles([a if a else str(sb.path) for a in argv],
                                       lambda: bool((sb.read_scores_meta() or {}).get("complete")),
                                       KILLS["score"] - kills["score"], rng, est)
        b_rows = sb.read_scores()
        assert [r["path"] for r in b_rows] == [r["path"] for r in a_rows]  # every image once, same order
        for x, y in zip(a_rows, b_rows):
            assert abs(float(x["clip_i"]) - float(y["clip_i"])) < 1e-4
            assert abs(float(x["clip_t"]) - float(y["clip_t"])) < 1e-4
    print(f"kills: {kills}")
    assert sum(kills.values()) >= 20, kills


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
            # 2 prompts x 2 seeds before/after minus the symlinked one, + fine.png; the 4 partnerless rows: notes
            assert len(at.image) <= 8  # + the grid preview


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
    with pytest.raises(Exception, match=re.escape(want)) as e:  # the Token explorer's download buttons
        data.export_downloads(str(run.path))
    assert isinstance(e.value, (UserError, data.DataError)) and "\n" not in str(e.value)
    after = {p: p.read_bytes() for p in run.path.rglob("*") if p.is_file() and p.suffix != ".lock"}
    assert {k for k in after if "logs" not in k.parts} == set(before) and all(
        after[k] == v for k, v in before.items()), "a refused read changed the run"
