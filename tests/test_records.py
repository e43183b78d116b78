"""Typed records at the boundary: run.json, scores.json and comparison folders are validated once where they are
read (core.runfolder, core.compare.read_comparison); damaged keys are one-line errors naming file and key."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.runfolder import Run, RunRecord, comparison_dir, reports_dir
from tests.fakerun import make_fake_run

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-runs-v0.1" / "runs"


def test_legacy_run_json_reads_as_a_record():
    rec = Run(LEGACY / "tom-object").record
    assert (rec.kind, rec.status, rec.property) == ("train", "finished", "object")
    assert rec.token.placeholder == "<tom-cat>" and rec.token.initializer == "cat" and rec.token.vectors == 1
    assert rec.token.tokens == ("<tom-cat>",)
    assert rec.weights.source == "random" and rec.weights.is_pipeline_check and rec.is_pipeline_check
    assert rec.weights.describe() == "random (PIPELINE CHECK)"
    assert (rec.resolution, rec.steps, rec.final_step, rec.last_checkpoint) == (128, 4, 4, 4)
    assert rec.weights_arg == "random" and rec.weights_seed == 0 and rec.mixed_precision == "no"
    assert rec.timings.steps_done == 4 and rec.timings.seconds_total > 0
    assert rec.versions["core"] == "0.1.0" and rec.hardware["cpu_count"] >= 1
    assert rec.config["lr"] == 0.002 and rec.message is None


def test_legacy_scores_json_reads_as_a_record():
    run = Run(LEGACY / "tom-style")
    sc = run.scores_record()
    assert sc.n_boot == 500 and sc.complete and sc.is_pipeline_check
    assert sc.clip["model"] == "ViT-B-32" and sc.clip["source"] == "random"
    by_step = sc.by_step_frame()
    assert list(by_step["step"]) == [0, 4] and list(by_step["n"]) == [4, 4]
    assert len(sc.by_prompt_frame()) == 4
    assert 0 < sc.reference_ceiling_clip_i < 1
    assert sc.inputs is None and run.scores_stale() is None  # written before inputs were recorded


def test_legacy_comparison_reads_as_a_record():
    from core.compare import read_comparison

    cmp = read_comparison(LEGACY / "reports" / "tom-object-vs-tom-style")
    assert (cmp.a.name, cmp.b.name) == ("tom-object", "tom-style")
    assert (cmp.a.property, cmp.b.property) == ("object", "style")
    assert cmp.a.weights.is_pipeline_check and cmp.is_pipeline_check and cmp.n_boot == 500
    assert len(cmp.table) == 10 and set(cmp.plane["run"]) == {"tom-object", "tom-style"}
    assert cmp.html is None and cmp.png is not None and cmp.inputs is None and cmp.stale_reason() is None


def _edit(run: Run, edit) -> None:
    data = json.loads(run.meta_path.read_text())
    edit(data)
    run.meta_path.write_text(json.dumps(data))
    run.reload()


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("property"), "'property' is missing"),
    (lambda d: d.update(property="face"), "'property' is 'face', expected one of object, style"),
    (lambda d: d["token"].pop("placeholder"), "'token.placeholder' is missing"),
    (lambda d: d["token"].update(vectors="two"), "'token.vectors' must be int, found str 'two'"),
    (lambda d: d["config"].pop("resolution"), "'config.resolution' is missing"),
    (lambda d: d["weights"].pop("source"), "'weights.source' is missing"),
    (lambda d: d.update(status="done"), "'status' is 'done'"),
    (lambda d: d.update(final_step=True), "'final_step' must be int, found bool"),
])
def test_damaged_key_is_one_line_naming_file_and_key(tmp_path, edit, key):
    run = make_fake_run(tmp_path, with_images=False)
    _edit(run, edit)
    with pytest.raises(UserError) as e:
        run.record
    msg = str(e.value)
    assert "\n" not in msg and str(run.meta_path) in msg and key in msg, msg


def test_run_json_is_read_once_per_instance_until_reload(tmp_path):
    run = make_fake_run(tmp_path, with_images=False)
    assert run.record.status == "finished"
    data = json.loads(run.meta_path.read_text())
    data["status"] = "failed"
    run.meta_path.write_text(json.dumps(data))
    assert run.record.status == "finished"  # cached
    assert run.reload().record.status == "failed"
    run.update_meta(status="interrupted", message="stopped")
    assert run.record.status == "interrupted" and run.record.message == "stopped"
    assert Run(run.path).record.status == "interrupted"  # written in the same JSON format


def test_import_run_values_not_written_are_stated_once(tmp_path):
    run = Run.create(tmp_path, "imp", {
        "kind": "import", "status": "finished", "property": "style",
        "config": {"weights": "random", "weights_seed": 3, "resolution": 512, "token": "<x>", "vectors": 2,
                   "property": "style"},
        "token": {"placeholder": "<x>", "initializer": None, "vectors": 2, "tokens": ["<x>", "<x>_1"]},
        "weights": {"source": "random", "seed": 3}, "final_step": 1})
    rec = run.record
    assert rec.steps is None and rec.mixed_precision == "no" and rec.allow_unverified is False
    assert rec.token.initializer is None and rec.versions == {} and rec.timings.seconds_total == 0.0


def test_scores_stale_names_the_command(tmp_path):
    run = make_fake_run(tmp_path)
    meta = json.loads(run.scores_meta_path.read_text())
    meta.update(complete=True, inputs=run.scores_inputs(), config={"n_boot": 100},
                summaries={"by_step": [], "by_prompt": []})
    run.write_scores_meta(meta)
    assert run.scores_stale() is None
    run.append_images([{"path": "images/x.png", "prompt": "p", "seed": 0, "step": 0}])
    reason = run.scores_stale()
    assert reason.startswith("stale: images.csv changed") and f"python -m core score {run.path}" in reason


def test_damaged_scores_json_names_file_and_key(tmp_path):
    run = make_fake_run(tmp_path)
    run.write_scores_meta({"clip": {"model": "ViT-B-32", "source": "random"}, "complete": True,
                           "summaries": {"by_step": [{"step": 0}], "by_prompt": []}})
    with pytest.raises(UserError, match=r"scores.json: key 'summaries.by_step\[0\]' lacks n, clip_i_mean"):
        run.scores_record()
    run.scores_meta_path.write_text("{not json")
    with pytest.raises(UserError, match="scores.json: damaged"):
        run.scores_record()


@pytest.mark.slow
def test_comparison_records_its_inputs_and_goes_stale(fake_runs):
    from core.compare import compare_runs, read_comparison

    a, b = Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")
    out = comparison_dir(a, b)
    assert out == reports_dir(fake_runs) / "fake-object-vs-fake-style"
    written = compare_runs(a, b, n_boot=50).write(out)
    cmp = read_comparison(out)
    assert cmp.n_boot == 50 and cmp.stale_reason() is None
    # the record writes what it reads: compare.json is `ComparisonRecord.to_json`
    assert cmp.to_json() == written == json.loads((out / "compare.json").read_text())
    assert cmp.matched_on and cmp.checkpoints["after"]["step_a"] == max(cmp.a.scored_steps)
    # the plane holds the per-checkpoint summaries score wrote to scores.json (read, not recomputed)
    plane = cmp.plane[cmp.plane.run == a.name].reset_index(drop=True)
    mine = a.scores_record().by_step_frame()
    assert plane["clip_i_lo"].tolist() == pytest.approx(mine["clip_i_lo"].tolist())
    rows = b.read_scores()
    b.write_scores(rows[:-1])
    assert "python -m core compare" in cmp.stale_reason()
    shutil.rmtree(out / "compare.csv", ignore_errors=True)
    (out / "compare.csv").unlink()
    with pytest.raises(UserError, match="compare.csv: missing"):
        read_comparison(out)


def test_record_type_is_frozen():
    rec = Run(LEGACY / "tom-object").record
    assert isinstance(rec, RunRecord)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = "running"


def test_file_modes_follow_the_umask_without_flipping_it(tmp_path, monkeypatch):
    """The umask is read from /proc/self/status, never set: os.umask(0) at import (or per write) would change it for
    every thread of the process for a moment (the dashboard is threaded)."""
    import os

    from core import runfolder

    real = os.umask(0o027)
    os.umask(real)
    try:
        os.umask(0o027)
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("os.umask called"))
        runfolder.atomic_write_bytes(tmp_path / "f", b"x")
        assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640
    finally:
        monkeypatch.undo()
        os.umask(real)



def test_records_write_what_they_read(tmp_path):
    """Records own both directions: `parse(to_json())` gives the record back (run.json, scores.json, a sweep)."""
    from core.runfolder import RunRecord, ScoresRecord
    from core.sweeprecord import SweepRecord, SweepState, TrialEntry

    run = Run(LEGACY / "tom-style")
    rec = run.record
    assert RunRecord.parse(run.meta_path, rec.to_json()) == rec
    scores = run.scores_record()
    again = ScoresRecord.parse(run.scores_meta_path, scores.to_json())
    assert again == scores and again.n_boot == 500 and again.by_step == scores.by_step
    state = SweepState(name="s", spec="/x/s.toml", created=1.0, engine={"ray": "2"}, varied=("lr",),
                       trials=(TrialEntry("t1", {"lr": 0.1}, "f", "finished", "done", 2, 4, "ok"),))
    SweepRecord(tmp_path, "s").write_state(state)
    read = SweepRecord(tmp_path, "s").state()
    assert read.trials == state.trials and read.varied == ("lr",) and read.updated is not None


def test_a_new_run_record_is_written_through_the_record(tmp_path):
    """train and import create run.json from `RunRecord.new` and change it through `Run.update` (typed)."""
    from core.runfolder import RunRecord, Timings, TokenInfo, WeightsProvenance

    rec = RunRecord.new(name="n", kind="train", property="object", config={"resolution": 128, "weights": "random",
                                                                          "weights_seed": 0, "steps": 4},
                        token=TokenInfo("<t>", "cat", 1, ("<t>",)), weights=WeightsProvenance("random", seed=0),
                        timings=Timings(started=5.0), now=7.0)
    run = Run.create(tmp_path, "n", rec)
    assert run.record == rec and run.record.timings.started == 5.0 and run.record.weights.seed == 0
    assert run.final_step() is None
    run.save_embedding(3, {"<t>": np.zeros((1, 8), np.float32)})
    assert run.final_step() == 3  # a run still training: its last checkpoint on disk
    new = run.update(status="finished", final_step=4, message="done", timings=Timings(seconds_total=2.0, steps_done=4))
    assert Run(run.path).record == new and new.final_step == 4 and run.final_step() == 4
    assert run.update(message=None).message is None
    with pytest.raises(ValueError, match="status 'odd'"):
        run.update(status="odd")
    with pytest.raises(UserError, match=r"key 'token.vectors' must be >= 1"):
        RunRecord.new(name="m", kind="train", property="object", config={"resolution": 128, "weights": "random",
                                                                        "weights_seed": 0, "steps": 4},
                      token=TokenInfo("<t>", "cat", 0, ()), weights=WeightsProvenance("random"))


def test_audit_record_reads_and_writes_audit_json(tmp_path):
    from core.runfolder import AuditRecord

    run = make_fake_run(tmp_path, "a", "object")
    data = {"schema_version": 1, "clip": {"model": "ViT-B-32", "source": "random"}, "complete": True,
            "references": {"files": [{"file": "a.png"}, {"file": "b.png"}]}, "held_out": {"files": []},
            "thresholds": {"phash": {"threshold": -10, "rule": "distance <= 10"}},
            "copy_rates": [{"step": 0, "n": 4, "in_null": True, "copy": {"k": 1, "n": 4, "rate": 0.25}}],
            "inputs": run.scores_inputs()}
    run.write_audit_meta(data)
    rec = run.audit_record()
    assert isinstance(rec, AuditRecord) and rec.n_references == 2 and rec.n_held_out == 0
    assert rec.final_copy["copy"]["k"] == 1
    assert rec.is_pipeline_check and run.audit_stale() is None
    run.write_record(rec)
    assert run.audit_record() == rec
    run.write_audit_meta({**data, "copy_rates": [{"step": 0}]})
    with pytest.raises(UserError, match=r"audit.json: key 'copy_rates\[0\]' lacks n, copy"):
        run.audit_record()
