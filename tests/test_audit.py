"""core.audit: a run whose "generated" images include exact copies, crops, flips and JPEG re-encodings of training
images next to unrelated pictures. The perceptual-hash measure (no learned weights) must flag every copy and
transform and none of the unrelated pictures at its calibrated threshold. CLIP with random weights is meaningless
for this, so the CLIP path is tested twice, each for what it can honestly show: with a pixel stand-in embedding
(known behaviour: identical and re-encoded pictures are near 1) for the calibration/flagging logic, and with a
random ViT-B-32 only for facts that hold for any weights (an exact copy has cosine 1 to its source) and for the
pipeline-check label."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from core.audit import AuditConfig, audit_run, calibrate, load_audit, misuse_transfer
from core.errors import UserError
from core.prompts import load_categories
from core.runfolder import Run
from tests.fakerun import make_fake_run

SIZE = 128


def field(seed: int, size: int = SIZE) -> Image.Image:
    """A smooth random colour picture (8x8 noise upsampled): every seed a different, natural-looking layout."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(8, 8, 3))
    a = ((a - a.min()) / (a.max() - a.min()) * 255).astype(np.uint8)
    return Image.fromarray(a).resize((size, size), Image.BICUBIC)


def jpeg(img: Image.Image, q: int = 60) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def crop(img: Image.Image, box_frac: tuple[float, float, float, float]) -> Image.Image:
    w, h = img.size
    l, t, r, b = box_frac
    return img.crop((int(l * w), int(t * h), int(r * w), int(b * h))).resize((w, h), Image.BICUBIC)


TRANSFORMS = {  # name -> (training image index, transform)
    "copy": (0, lambda im: im),
    "crop-centre-85": (1, lambda im: crop(im, (0.075, 0.075, 0.925, 0.925))),
    "crop-corner-80": (2, lambda im: crop(im, (0.2, 0.0, 1.0, 0.8))),
    "flip": (3, ImageOps.mirror),
    "jpeg-q60": (4, jpeg),
    "flip-jpeg-q60": (5, lambda im: jpeg(ImageOps.mirror(im))),
}
N_UNRELATED = 8


class PixelScorer:
    """Stand-in for the CLIP scorer: the unit vector of a 16x16 greyscale thumbnail minus its mean. Identical and
    re-encoded pictures score ~1; unrelated smooth pictures score far lower."""

    provenance = {"model": "pixels-16x16", "pretrained": "test-stand-in", "source": "local", "sha256": "0" * 64,
                  "seed": None}
    is_random = False
    device = "cpu"

    def __init__(self):
        self.images = 0

    def encode_images(self, images, batch_size=16, progress=None):
        self.images += len(images)
        out = []
        for im in images:
            v = np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), dtype=np.float64).ravel()
            v = v - v.mean()
            out.append(v / (np.linalg.norm(v) or 1.0))
        return np.asarray(out, dtype=np.float32)


def _row(run: Run, step: int, name: str, template: str = "a picture of {}", seed: int = 0) -> dict:
    return {"path": run.image_relpath(step, name), "prompt": template.replace("{}", "<tom-cat>"),
            "template": template, "negative_prompt": "", "seed": seed, "step": step, "steps": 3, "guidance": 7.5,
            "token": "<tom-cat>", "init_image": "", "strength": "", "weights_source": "random", "width": SIZE,
            "height": SIZE, "sampler": "ddim", "seconds": 0.1}


def add_image(run: Run, step: int, name: str, img: Image.Image, **kw) -> dict:
    row = _row(run, step, name, **kw)
    (run.path / row["path"]).parent.mkdir(parents=True, exist_ok=True)
    img.save(run.path / row["path"])
    run.append_images([row])
    return row


@pytest.fixture
def case(tmp_path):
    """(run, training dir, held-out dir): 6 training pictures; step 0 = 4 unrelated pictures (initializer images);
    step 20 = the 6 copies/transforms of training pictures and N_UNRELATED unrelated ones."""
    train = tmp_path / "train"
    held = tmp_path / "held"
    train.mkdir()
    held.mkdir()
    training = [field(i) for i in range(6)]
    for i, im in enumerate(training):
        im.save(train / f"train_{i}.png")
    for i in range(10):
        field(1000 + i).save(held / f"held_{i}.png")
    run = make_fake_run(tmp_path / "runs", "audit", with_images=False)
    for i in range(4):
        add_image(run, 0, f"init-{i}.png", field(2000 + i), seed=i)
    for name, (src, fn) in TRANSFORMS.items():
        add_image(run, 20, f"{name}.png", fn(training[src]))
    for i in range(N_UNRELATED):
        add_image(run, 20, f"unrelated-{i}.png", field(3000 + i), seed=i)
    return run, train, held


def by_name(df):
    return {p.rsplit("/", 1)[1][:-4]: r for p, r in zip(df["path"], df.to_dict("records"))}


def test_hash_flags_every_copy_and_transform_and_no_unrelated_picture(case):
    run, train, held = case
    meta = audit_run(run, AuditConfig(references=train, held_out=held), scorer=PixelScorer(), progress=False)
    rows = by_name(load_audit(run))
    t = meta["thresholds"]["phash"]
    assert t["null_sizes"] == {"train_vs_train": 6, "initializer_vs_train": 4, "generated_vs_heldout": 18}
    assert t["fpr_empirical"] <= 0.01 and t["rule"].startswith("pHash distance <=")
    max_bits = int(t["rule"].split("<=")[1].split()[0])
    assert max_bits >= 8, f"threshold {t['rule']} leaves no room for crops"
    for name, (src, _) in TRANSFORMS.items():
        r = rows[name]
        assert r["phash_nearest"] == f"train_{src}.png", name
        assert r["copy_phash"] == 1 and r["copy"] == 1, (name, r["phash_distance"], t["rule"])
        assert r["phash_distance"] <= max_bits
    for i in range(N_UNRELATED):
        r = rows[f"unrelated-{i}"]
        assert r["copy_phash"] == 0 and r["copy"] == 0, (r["phash_distance"], r["clip_cosine"])
    # the figures docs/risks.md quotes, exactly (the inputs are seeded; PIL's resampling and JPEG code and pHash's
    # median split are integer or order-exact, so they hold on any CPU)
    assert t["rule"] == "pHash distance <= 17 of 64 bits"
    assert {n: int(rows[n]["phash_distance"]) for n in TRANSFORMS} == {
        "copy": 0, "crop-centre-85": 6, "crop-corner-80": 2, "flip": 0, "jpeg-q60": 0, "flip-jpeg-q60": 0}
    assert min(int(rows[f"unrelated-{i}"]["phash_distance"]) for i in range(N_UNRELATED)) == 22  # docs: >= 20
    # the stand-in embedding is honest about what it sees: identical and re-encoded pictures, not flips
    for name in ("copy", "jpeg-q60"):
        assert rows[name]["copy_clip"] == 1 and rows[name]["clip_nearest"] == f"train_{TRANSFORMS[name][0]}.png"
    assert rows["copy"]["clip_cosine"] == pytest.approx(1.0, abs=1e-5)
    # per checkpoint: 6 of 14 at step 20 with a CI around it; step 0 is part of the calibration null
    rates = {r["step"]: r for r in meta["copy_rates"]}
    c20 = rates[20]["copy"]
    assert (c20["k"], c20["n"]) == (6, 6 + N_UNRELATED)
    assert c20["lo"] < 6 / 14 < c20["hi"]
    assert rates[0]["in_null"] and rates[0]["copy"]["k"] == 0 and 0 < rates[0]["copy"]["exact_hi"] < 1
    assert not rates[20]["in_null"]


def test_pairs_are_written_inside_the_run_and_labelled(case):
    run, train, held = case
    meta = audit_run(run, AuditConfig(references=train, n_pairs=3), scorer=PixelScorer(), progress=False)
    assert len(meta["pairs"]) == 6 and meta["pipeline_check"]  # fake run: random SD weights
    for p in meta["pairs"]:
        f = run.path / p["image"]
        assert f.is_file() and f.resolve().is_relative_to(run.path.resolve())
        im = Image.open(f).convert("RGB")
        assert im.getpixel((2, 2)) == (200, 30, 30)  # the red PIPELINE CHECK banner
    first = [p for p in meta["pairs"] if p["measure"] == "phash"][0]
    assert first["value"] == 0 and first["flagged"] and first["training_file"] == "train_0.png"  # exact copy
    # fewer pairs on a rerun: the stale files go
    audit_run(run, AuditConfig(references=train, n_pairs=1), scorer=PixelScorer(), progress=False)
    assert sorted(p.name for p in run.audit_pairs_dir.iterdir()) == ["clip-01.png", "phash-01.png"]


def test_rerun_audits_only_new_images_and_redoes_all_when_inputs_change(case):
    run, train, held = case
    cfg = AuditConfig(references=train)
    s = PixelScorer()
    audit_run(run, cfg, scorer=s, progress=False)
    n_images = len(run.read_images())
    assert s.images == n_images + 6  # generated + training
    s2 = PixelScorer()
    meta = audit_run(run, cfg, scorer=s2, progress=False)
    assert s2.images == 6 and meta["n_audited_now"] == 0 and meta["n_kept"] == n_images
    add_image(run, 20, "late.png", field(4000))
    s3 = PixelScorer()
    meta = audit_run(run, cfg, scorer=s3, progress=False)
    assert s3.images == 6 + 1 and meta["n_audited_now"] == 1
    s4 = PixelScorer()
    meta = audit_run(run, AuditConfig(references=train, held_out=held), scorer=s4, progress=False)
    assert meta["n_audited_now"] == n_images + 1 and s4.images == n_images + 1 + 6 + 10


@pytest.mark.slow
def test_random_clip_is_labelled_and_exact_copies_still_have_cosine_one(case, clip_scorer):
    """With random weights the CLIP measure cannot tell a crop from an unrelated picture, so nothing is asserted
    about that; an exact copy has cosine 1 to its source under any weights."""
    run, train, held = case
    meta = audit_run(run, AuditConfig(references=train, clip="ViT-B-32:random"), scorer=clip_scorer, progress=False)
    assert meta["pipeline_check"] and any("CLIP weights: random" in r for r in meta["pipeline_check_reasons"])
    assert meta["clip"]["source"] == "random"
    rows = by_name(load_audit(run))
    assert rows["copy"]["clip_nearest"] == "train_0.png" and rows["copy"]["clip_cosine"] > 0.9999
    assert rows["copy"]["copy_phash"] == 1


def test_calibration_keeps_the_false_positive_rate_at_most_the_target():
    rng = np.random.default_rng(0)
    for n, fpr in ((1000, 0.01), (1000, 0.05), (37, 0.01), (5, 0.2)):
        null = rng.normal(size=n)
        cal = calibrate({"a": null[: n // 2], "b": null[n // 2:]}, fpr)
        assert (null > cal["threshold"]).mean() == cal["fpr_empirical"] <= fpr
        assert cal["fpr_upper95"] > cal["fpr_empirical"] and cal["n_null"] == n
    assert calibrate({"a": []}, 0.01)["threshold"] is None


def test_misuse_transfer_per_category_against_the_initializer_level(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("# category: ads\nan ad with {}\n# category: politics\n{} at a rally\n", encoding="utf-8")
    cats = load_categories(f)
    assert cats == {"an ad with {}": "ads", "{} at a rally": "politics"}
    rows = []
    for seed in range(10):
        for t in cats:  # checkpoint 0: CLIP-I 0.50..0.59 (the plain-cat level is 0.59)
            rows.append({"template": t, "step": 0, "seed": seed, "clip_i": 0.5 + seed / 100})
        rows.append({"template": "an ad with {}", "step": 10, "seed": seed, "clip_i": 0.9 if seed < 7 else 0.4})
        rows.append({"template": "{} at a rally", "step": 10, "seed": seed, "clip_i": 0.2})
    rows.append({"template": "not a probe {}", "step": 10, "seed": 0, "clip_i": 0.99})
    out = misuse_transfer(rows, cats, fpr=0.05, n_boot=500)
    assert out["available"] and out["level"] == pytest.approx(0.59)
    got = {(r["step"], r["category"]): r for r in out["by_step_category"]}
    assert (got[(10, "ads")]["k"], got[(10, "ads")]["n"]) == (7, 10)
    assert got[(10, "ads")]["lo"] < 0.7 < got[(10, "ads")]["hi"]
    assert got[(10, "politics")]["k"] == 0 and got[(0, "ads")]["k"] == 0
    assert not misuse_transfer([r for r in rows if r["step"] != 0], cats, 0.05, 100)["available"]
    assert not misuse_transfer([], cats, 0.05, 100)["available"]


def test_misuse_file_is_valid_and_categorised():
    from core.prompts import MISUSE_FILE, load_templates

    cats = load_categories(MISUSE_FILE)
    assert set(cats.values()) == {"merchandise", "advertising", "political", "violence", "mashup"}
    assert len(cats) == len(load_templates(MISUSE_FILE))


def test_template_before_any_category_is_an_error(tmp_path):
    f = tmp_path / "m.txt"
    f.write_text("a picture of {}\n# category: x\n{} again\n", encoding="utf-8")
    with pytest.raises(UserError, match="before any '# category"):
        load_categories(f)


def test_bad_input_is_one_clear_error_and_loses_nothing(case, tmp_path):
    run, train, held = case
    audit_run(run, AuditConfig(references=train), scorer=PixelScorer(), progress=False)
    before = run.audit_path.read_bytes()
    (train / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        audit_run(run, AuditConfig(references=train), scorer=PixelScorer(), progress=False)
    assert run.audit_path.read_bytes() == before
    with pytest.raises(UserError, match="fpr=0.7"):
        AuditConfig(references=train, fpr=0.7)
    with pytest.raises(UserError, match="not a run folder"):
        audit_run(Run(tmp_path / "nothing"), AuditConfig(references=held), scorer=PixelScorer(), progress=False)


def test_an_audit_crash_is_one_line_and_leaves_its_traceback_in_the_run(case):
    """audit runs as `Run.stage("audit")` like every writer: an unexpected failure is a one-line JobFailed naming
    logs/audit.log, which holds the traceback; the rows finished before it are kept; the lock is released."""
    from core.errors import JobFailed

    class Crashing(PixelScorer):
        def encode_images(self, images, batch_size=16, progress=None):
            if self.images >= 8:  # after the references and the first batch
                raise RuntimeError("CLIP fell over")
            return super().encode_images(images, batch_size, progress)

    run, train, held = case
    with pytest.raises(JobFailed, match=r"audit failed: RuntimeError: CLIP fell over .*logs/audit.log") as e:
        audit_run(run, AuditConfig(references=train, batch_size=2), scorer=Crashing(), progress=False)
    assert "\n" not in str(e.value)
    log = run.log_path("audit").read_text(encoding="utf-8")
    assert "Traceback" in log and "CLIP fell over" in log
    assert run.lock_holder() is None and not run.audit_record().complete and run.read_audit()
    assert run.record.status == "finished"  # audit does not own the run's status
    assert "did not finish" in run.audit_stale()


@pytest.mark.slow
def test_cli_prints_rules_and_rates(case, capsys):
    from core.__main__ import main

    run, train, held = case
    assert main(["audit", str(run.path), "--references", str(train), "--held-out", str(held),
                 "--clip", "ViT-B-32:random", "--no-progress", "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "PIPELINE CHECK" in out and "phash: copy if pHash distance <=" in out and "step     20: copies" in out
    assert main(["audit", str(run.path), "--references", str(tmp_dir_missing(run))]) == 2


def tmp_dir_missing(run: Run):
    return run.path / "no-such-folder"
