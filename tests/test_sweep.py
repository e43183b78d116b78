"""`sweep`: spec validation (fast), then real sweeps on an embedded local Ray (2 CPUs) with tiny stand-in networks:
trial folders equal hand-made runs, a rerun skips everything, a killed worker's retry resumes from the checkpoint,
Ctrl-C leaves true statuses and a rerun finishes. The Ray tests start `python -m core sweep` in subprocesses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
RES = 128


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


ISSUE_SPEC = """
[base]
images = "{images}"
token = "<tom-cat>"
init = "cat"
property = "object"
weights = "kerascv"
resolution = 512
[grid]
steps = [1000, 3000]
lr = [0.002, 0.005]
"""


@pytest.mark.slow
def test_smallest_spec_from_the_issue(char_images, tmp_path):
    from core.sweep import load_spec

    spec = load_spec(write_spec(tmp_path / "tom.toml", ISSUE_SPEC.format(images=char_images)), tmp_path / "runs")
    assert spec.name == "tom" and len(spec.trials) == 4
    assert [t.params for t in spec.trials] == [{"steps": 1000, "lr": 0.002}, {"steps": 1000, "lr": 0.005},
                                               {"steps": 3000, "lr": 0.002}, {"steps": 3000, "lr": 0.005}]
    names = [t.name for t in spec.trials]
    assert names[0].startswith("tom-steps-1000_lr-0.002-") and len(set(names)) == 4
    again = load_spec(tmp_path / "tom.toml", tmp_path / "runs")
    assert [t.name for t in again.trials] == names  # deterministic
    t = spec.trials[3].plan.train
    assert (t["steps"], t["lr"], t["resolution"], t["weights"], t["init"]) == (3000, 0.005, 512, "kerascv", "cat")
    assert t["images"] == str(char_images.resolve()) and t["batch_size"] == 4  # TrainConfig's default
    assert spec.trials[0].plan.generate is None and spec.trials[0].plan.score is None


def test_random_search_is_seeded_and_in_range(char_images, tmp_path):
    from core.sweep import load_spec

    text = ISSUE_SPEC.format(images=char_images) + """
[random]
n = 5
seed = 3
vectors = [1, 2, 4]
weight_decay = { min = 1e-4, max = 1e-1, log = true }
"""
    p = write_spec(tmp_path / "r.toml", text)
    a, b = load_spec(p, tmp_path), load_spec(p, tmp_path)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert len(a.trials) == 20  # 4 grid points x 5 draws
    for t in a.trials:
        assert t.params["vectors"] in (1, 2, 4) and 1e-4 <= t.params["weight_decay"] <= 1e-1
        assert t.plan.train["vectors"] == t.params["vectors"]
    assert len({t.params["weight_decay"] for t in a.trials}) == 5


@pytest.mark.parametrize("edit, message", [
    (("[grid]", "[grid]\nstepz = [1, 2]"), r"\[grid\] stepz: not a train option"),
    (("steps = [1000, 3000]", "steps = []"), r"\[grid\] steps: empty list"),
    (("lr = [0.002, 0.005]", "lr = [0.002, 5.0]"), r"\[grid\]: lr=5.0: must be in \(0, 1\)"),
    (("resolution = 512", "resolution = 500"), r"\[base\]: resolution=500: must be a positive multiple of 64"),
    (("[base]", "[bsae]\nx=1\n[base]"), r"bsae: unknown table or key"),
    (("[grid]", "[generate]\nsteps = 0\n[grid]"), r"\[generate\]: steps=0: must be >= 1"),
    (("[grid]", "[sweep]\nmax_retries = -1\n[grid]"), r"\[sweep\] max_retries: -1"),
    (("[grid]", "[random]\nn = 2\nwarmup = [1]\n[grid]"), r"\[random\] warmup: not a train option"),
    (("[grid]", "[random]\nn = 2\nflip_p = { min = 0.5, max = 0.1 }\n[grid]"), r"\[random\] flip_p: min=0.5, max=0.1"),
    (("[grid]", "[score]\nreferences = 'x'\n[grid]"), r"\[score\]: needs \[generate\]"),
    (("[grid]", "[generate]\n[audit]\nfpr = 0.9\n[grid]"), r"\[audit\]: fpr=0.9: must be between 0 and 0.5"),
    (("[grid]", "[generate]\n[audit]\nheldout = 'x'\n[grid]"), r"\[audit\] heldout: unknown key"),
    (('init = "cat"', 'init = "tomcat"'), r"tokenizes to 2 tokens"),
])
def test_bad_spec_is_one_clear_line(char_images, tmp_path, edit, message):
    from core.sweep import load_spec

    text = ISSUE_SPEC.format(images=char_images).replace(*edit)
    with pytest.raises(UserError, match=message) as e:
        load_spec(write_spec(tmp_path / "bad.toml", text), tmp_path / "runs")
    assert "\n" not in str(e.value) and str(tmp_path / "bad.toml") in str(e.value)


def test_bad_spec_through_the_cli_starts_nothing(char_images, tmp_path):
    text = ISSUE_SPEC.format(images=char_images).replace("lr = [0.002, 0.005]", "lr = []")
    spec = write_spec(tmp_path / "bad.toml", text)
    p = subprocess.run([sys.executable, "-m", "core", "sweep", str(spec), "--runs-dir", str(tmp_path / "runs")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"error: {spec}: [grid] lr: empty list; give at least one value or "
                                             "remove the key"]
    assert not (tmp_path / "runs").exists()  # no run folder, no sweep record, no Ray


def test_dry_run_estimate_from_measured_runs(char_images, tmp_path):
    """The estimate uses earlier runs on this machine with the same resolution/batch (their metrics.csv)."""
    from core.sweep import _this_machine, dry_run, load_spec

    runs = tmp_path / "runs"
    spec = load_spec(write_spec(tmp_path / "tom.toml", ISSUE_SPEC.format(images=char_images)), runs)
    text = dry_run(spec, runs, 1)
    assert "no earlier run on this machine" in text and "estimate: unavailable for 4 trial(s)" in text
    plat, cpus = _this_machine()
    from tests.fakerun import make_fake_run

    r = make_fake_run(runs, "old", steps=5, checkpoint_every=5)  # metrics.csv: 0.5 s per step
    r.update_meta(config=dict(spec.trials[0].plan.train), hardware={"platform": plat, "cpu_count": cpus})
    other = make_fake_run(runs, "elsewhere", steps=5, checkpoint_every=5)  # another machine: not used
    other.update_meta(config=dict(spec.trials[0].plan.train), hardware={"platform": "other", "cpu_count": cpus})
    text = dry_run(spec, runs, 2)
    assert "0.500 s/step measured from 4 step(s) of 1 earlier run(s) on this machine (old)" in text
    # (1000 + 1000 + 3000 + 3000) steps x 0.5 s = 4000 s = 66.7 min; two at once
    assert "estimate: 66.7 min" in text and "~33.3 min wall with 2 at once" in text


# ------------------------------------------------------------------------------------------ on Ray (slower)
def sweep_cli(spec: Path, runs: Path, *extra: str, **kw):
    from tests.tflog import env_without_tf_settings

    env = env_without_tf_settings(RAY_AUTH_MODE="disabled")  # the command sets TensorFlow's variables itself
    return subprocess.Popen([sys.executable, "-m", "core", "sweep", str(spec), "--runs-dir", str(runs),
                             "--num-cpus", "2", "--object-store-mb", "100", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


GRID_SPEC = """
name = "g"
[base]
images = "{images}"
weights = "random"
resolution = 128
batch_size = 1
checkpoint_every = 2
[grid]
steps = [2, 3]
lr = [0.002, 0.005]
[generate]
prompts = "{prompts}"
seeds = "0,1"
steps = 2
[score]
references = "{images}"
clip = "ViT-B-32:random"
n_boot = 50
[sweep]
components = "tests.tiny:sweep_components"
parallel = 2
"""


@pytest.fixture(scope="module")
def grid_sweep(char_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "p.txt").write_text("a picture of {}\n{} on a beach\n")
    spec = write_spec(tmp / "g.toml", GRID_SPEC.format(images=char_images, prompts=tmp / "p.txt"))
    runs = tmp / "runs"
    p = sweep_cli(spec, runs)
    out, _ = p.communicate(timeout=900)  # a hang guard: beside test_real in `make test` it once took 491 s
    assert p.returncode == 0, out
    return spec, runs, out


@pytest.mark.ray
def test_grid_sweep_trials_equal_hand_made_runs(grid_sweep, char_images, tmp_path):
    from core.clip_score import load_clip
    from core.generate import GenerateConfig, generate
    from core.runfolder import Run
    from core.score import ScoreConfig, score_run
    from core.sweeprecord import SweepRecord
    from core.train import TrainConfig, start_run, train
    from tests.tiny import tiny_components

    spec, runs, out = grid_sweep
    trials = SweepRecord(runs, "g").trials()
    assert [t["status"] for t in trials] == ["finished"] * 4, out
    assert [t["params"] for t in trials] == [{"steps": 2, "lr": 0.002}, {"steps": 2, "lr": 0.005},
                                             {"steps": 3, "lr": 0.002}, {"steps": 3, "lr": 0.005}]
    assert (runs / "sweeps" / "g" / "spec.toml").read_text() == spec.read_text()
    scorer = load_clip("ViT-B-32:random", seed=0, device="cpu")
    for t in trials:
        # by hand: the same train / generate / score calls the commands make, with the same settings
        cfg = TrainConfig.from_dict({"images": str(char_images.resolve()), "weights": "random", "resolution": RES,
                                     "batch_size": 1, "checkpoint_every": 2, **t["params"]})
        comps = tiny_components(RES, 0)
        hand = train(cfg, start_run(cfg, tmp_path, t["name"]), comps, progress=False)
        generate(hand, GenerateConfig.from_dict({"prompts": str(spec.parent / "p.txt"), "seeds": "0,1", "steps": 2}),
                 comps, progress=False)
        score_run(hand, ScoreConfig(references=char_images, clip="ViT-B-32:random", n_boot=50), scorer=scorer,
                  progress=False)
        swept = Run(runs / t["name"])
        a, b = swept.meta, hand.meta
        for k in ("status", "config", "token", "property", "weights", "final_step"):
            assert a[k] == b[k], (t["name"], k)
        ma, mb = swept.read_metrics(), hand.read_metrics()
        assert [m["step"] for m in ma] == [m["step"] for m in mb] == list(range(1, t["params"]["steps"] + 1))
        assert [m["loss"] for m in ma] == pytest.approx([m["loss"] for m in mb], rel=1e-5)
        assert [m["lr"] for m in ma] == [m["lr"] for m in mb]
        assert swept.embedding_steps() == hand.embedding_steps()
        for s in swept.embedding_steps():
            ea, eb = swept.load_embedding(s), hand.load_embedding(s)
            assert ea.keys() == eb.keys()
            for k in ea:
                np.testing.assert_allclose(ea[k], eb[k], atol=1e-6)
        ia, ib = swept.read_images(), hand.read_images()
        assert len(ia) == 2 * 2 * 2  # templates x seeds x checkpoints (0, final)
        strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "cond_gap")}  # noqa: E731
                              for r in rows]
        assert strip(ia) == strip(ib)
        # cond_gap is a float of the denoising run, whose token row agrees within 1e-6 (above)
        assert [float(r["cond_gap"]) for r in ia] == pytest.approx([float(r["cond_gap"]) for r in ib], rel=1e-4)
        for r in ia:
            pa = np.asarray(Image.open(swept.path / r["path"]), dtype=int)
            pb = np.asarray(Image.open(hand.path / r["path"]), dtype=int)
            assert np.abs(pa - pb).max() <= 1, r["path"]
        sa, sb = swept.read_scores(), hand.read_scores()
        num = ("clip_i", "clip_t")
        assert [{k: v for k, v in r.items() if k not in num} for r in sa] == \
               [{k: v for k, v in r.items() if k not in num} for r in sb]
        for ra, rb in zip(sa, sb):
            assert [float(ra[k]) for k in num] == pytest.approx([float(rb[k]) for k in num], abs=1e-4)
        assert swept.read_scores_meta()["pipeline_check"] is True


@pytest.mark.ray
def test_ray_trial_workers_print_no_tensorflow_log_line(grid_sweep):
    """Issue 23.8: each trial worker loads TensorFlow (train, generate) and Ray forwards its output to the sweep's
    terminal ("(train pid=N) ..."): not one TensorFlow C++ line may be among it."""
    from tests.tflog import cpp_log_lines

    _, _, out = grid_sweep
    assert "pid=" in out  # the workers' output does reach this terminal (what the check reads)
    assert cpp_log_lines(out) == [], out


@pytest.mark.ray
def test_second_sweep_skips_everything(grid_sweep):
    from core.sweeprecord import SweepRecord

    spec, runs, _ = grid_sweep
    names = [t["name"] for t in SweepRecord(runs, "g").trials()]
    before = {n: (runs / n / "run.json").stat().st_mtime_ns for n in names}
    before_scores = {n: (runs / n / "scores.csv").stat().st_mtime_ns for n in names}
    p = sweep_cli(spec, runs)
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out
    assert "4 trial(s) already finished: skipped" in out and "start " not in out
    assert {n: (runs / n / "run.json").stat().st_mtime_ns for n in names} == before
    assert {n: (runs / n / "scores.csv").stat().st_mtime_ns for n in names} == before_scores


KILL_SPEC = """
name = "k"
[base]
images = "{images}"
weights = "random"
resolution = 128
batch_size = 1
checkpoint_every = 50
steps = 3000
[sweep]
components = "tests.tiny:sweep_components"
max_retries = 2
"""


def _steps(run) -> list[int]:
    try:
        return [m["step"] for m in run.read_metrics()]
    except (KeyError, ValueError):
        return []


def _wait_for(cond, proc, timeout=300):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def _worker_pids(title: str) -> list[int]:
    """Ray workers show the running task's name as their process title (`ray::train TRIAL`)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(title):
                pids.append(int(d.name))
    return pids


@pytest.mark.ray
def test_killed_worker_resumes_and_ctrl_c_leaves_true_status(char_images, tmp_path):
    from core.runfolder import Run
    from core.sweep import load_spec
    from core.sweeprecord import SweepRecord
    from core.train import TrainConfig, start_run, train
    from tests.tiny import tiny_components

    spec = write_spec(tmp_path / "k.toml", KILL_SPEC.format(images=char_images))
    runs = tmp_path / "runs"
    name = load_spec(spec, runs).trials[0].name
    run = Run(runs / name)
    p = sweep_cli(spec, runs)
    try:
        _wait_for(lambda: len(_steps(run)) >= 60, p)  # past the step-50 checkpoint
        pids = _worker_pids(f"ray::train {name}")  # this sweep's worker only
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGSTOP)  # frozen: no checkpoint can land between reading `kept` and the kill
        kept = run.checkpoint_steps()[-1]
        killed_at = time.time()
        os.kill(pids[0], signal.SIGKILL)  # the worker dies mid-training (like an OOM kill)
        # Ray retries the task in a fresh worker, which resumes from that checkpoint and carries on
        # (a tiny step takes ~8 ms on an idle machine: with 200 steps the trial finished before the Ctrl-C landed)
        _wait_for(lambda: _steps(run) and _steps(run)[-1] >= kept + 60 and _worker_pids(f"ray::train {name}"), p)
        p.send_signal(signal.SIGINT)  # Ctrl-C on the sweep
        out, _ = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, out
    assert run.reload().record.status == "interrupted", out
    assert run.lock_holder() is None  # no worker trains on after the sweep exited
    trial = SweepRecord(runs, "k").trials()[0]
    assert trial["status"] == "interrupted", trial
    steps = _steps(run)
    assert steps == list(range(1, len(steps) + 1)) and kept + 60 <= len(steps) < 3000
    # the retry resumed from the last checkpoint before the kill (kept as it was) instead of starting over
    assert kept >= 50 and run.checkpoint_path(kept).stat().st_mtime < killed_at
    assert run.checkpoint_path(kept + 50).stat().st_mtime > killed_at
    last_ckpt = run.checkpoint_steps()[-1]

    first_out = out
    p = sweep_cli(spec, runs)  # the rerun resumes from the last checkpoint and finishes
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out
    trial = SweepRecord(runs, "k").trials()[0]
    run.reload()
    assert run.record.status == "finished" and trial["status"] == "finished", (first_out, out, run.meta)
    assert trial["resumed_from"] == last_ckpt >= kept + 50
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, 3001))  # every step exactly once
    cfg = TrainConfig.from_dict(run.meta["config"])  # uninterrupted, by hand: the same losses
    hand = train(cfg, start_run(cfg, tmp_path / "hand", "h"), tiny_components(RES, 0), progress=False)
    assert [m["loss"] for m in metrics] == pytest.approx([m["loss"] for m in hand.read_metrics()], rel=1e-5)
