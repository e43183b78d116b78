"""core.score / core.clip_score: CLIP-I and CLIP-T equal a direct open_clip computation; reruns score only new
images; bad references and offline tags give clear errors. CLIP is a random ViT-B-32 (no network here)."""

import functools
import json
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.errors import UserError
from core.runfolder import Run
from core.score import ScoreConfig, reference_ceiling, score_run, summarize_by_prompt, summarize_by_step
from tests.fakerun import draw_image, make_fake_run

# the CLIP-T texts written out by hand (not with core.prompts.strip_token), so a change there is caught
EXPECTED_TEXT = {"a 3D animation frame of {}, photorealistic": "a 3D animation frame of, photorealistic",
                 "a horror movie poster with {}": "a horror movie poster with"}


@pytest.fixture
def scorer(clip_scorer):
    return clip_scorer  # tests/conftest.py: one random ViT-B-32 per test process


@pytest.fixture(scope="module")
def direct():
    """The same model built independently of core.clip_score, the way the provenance says anyone can."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    tok = open_clip.get_tokenizer("ViT-B-32")

    def image(path):
        with torch.no_grad():
            f = model.encode_image(preprocess(Image.open(path).convert("RGB")).unsqueeze(0))[0]
        return (f / f.norm()).numpy().astype(np.float64)

    @functools.lru_cache(maxsize=None)  # a template's text is encoded once (the tests ask for it per image)
    def text(s):
        with torch.no_grad():
            f = model.encode_text(tok([s]))[0]
        return (f / f.norm()).numpy().astype(np.float64)

    return image, text


@pytest.fixture
def refs(tmp_path):
    d = tmp_path / "refs"
    d.mkdir()
    for i in range(3):
        draw_image(500 + i, 96).save(d / f"tom_{i}.png")
    draw_image(600, 80).save(d / "tom_3.jpg", quality=95)
    return d


@pytest.fixture
def run(tmp_path):
    # unscored fake run: images and images.csv only
    return make_fake_run(tmp_path / "runs", "obj", with_scores=False)


class Counting:
    """Wraps a ClipScorer and counts the images it encodes (and can stop after some batches)."""

    def __init__(self, inner, stop_after_batches=None):
        self.inner, self.images, self.batches, self.stop = inner, 0, 0, stop_after_batches
        self.provenance, self.device, self.is_random = inner.provenance, inner.device, inner.is_random

    def encode_images(self, images, batch_size=16, progress=None):
        if self.stop is not None and self.batches >= self.stop:
            raise KeyboardInterrupt
        self.batches += 1
        self.images += len(images)
        return self.inner.encode_images(images, batch_size)

    def encode_texts(self, texts, batch_size=64):
        return self.inner.encode_texts(texts, batch_size)


@pytest.mark.slow
def test_scores_equal_direct_open_clip(run, refs, scorer, direct):
    image, text = direct
    meta = score_run(run, ScoreConfig(references=refs, clip="ViT-B-32:random", batch_size=3), scorer=scorer,
                     progress=False)
    rows = run.read_scores()
    assert len(rows) == 8 and meta["n_images"] == 8
    ref_paths = sorted(refs.iterdir())
    ref_emb = np.stack([image(p) for p in ref_paths])
    for r in rows:
        e = image(run.path / r["path"])
        assert float(r["clip_i"]) == pytest.approx(float(np.mean(ref_emb @ e)), abs=1e-4), r["path"]
        assert float(r["clip_t"]) == pytest.approx(float(e @ text(EXPECTED_TEXT[r["template"]])), abs=1e-4)
        assert r["clip_model"] == "ViT-B-32" and r["clip_weights"] == "random"
    # the numbers are not degenerate: images differ from each other
    assert np.std([float(r["clip_i"]) for r in rows]) > 1e-3
    # reference ceiling = mean cosine over distinct reference pairs
    n = len(ref_emb)
    pairs = [ref_emb[i] @ ref_emb[j] for i in range(n) for j in range(n) if i < j]
    c = meta["baselines"]["reference_ceiling"]
    assert c["mean"] == pytest.approx(np.mean(pairs), abs=1e-4) and c["n_pairs"] == 6
    assert c["lo"] <= c["mean"] <= c["hi"]
    assert meta["baselines"]["reference_ceiling_clip_i"] == c["mean"]
    # provenance, references with hashes, pipeline-check flag, initializer baseline = step 0 rows
    saved = run.read_scores_meta()
    assert saved["clip"] == {"model": "ViT-B-32", "pretrained": "random", "source": "random", "sha256": None,
                             "seed": 0}
    assert [f["file"] for f in saved["references"]["files"]] == [p.name for p in ref_paths]
    assert all(len(f["sha256"]) == 64 for f in saved["references"]["files"])
    assert saved["pipeline_check"] and saved["complete"]
    step0 = [float(r["clip_i"]) for r in rows if r["step"] == "0"]
    assert saved["baselines"]["initializer"]["clip_i_mean"] == pytest.approx(np.mean(step0))


def test_summaries_match_pandas_and_cis_contain_means(tmp_path):
    rows = make_fake_run(tmp_path / "runs", "x").read_scores()
    df = pd.DataFrame(rows).astype({"step": int, "clip_i": float, "clip_t": float})
    by_step = summarize_by_step(rows)
    expect = df.groupby("step")[["clip_i", "clip_t"]].mean()
    assert list(by_step["step"]) == list(expect.index)
    assert list(by_step["n"]) == list(df.groupby("step").size())
    for m in ("clip_i", "clip_t"):
        np.testing.assert_allclose(by_step[f"{m}_mean"], expect[m])
        assert (by_step[f"{m}_lo"] <= by_step[f"{m}_mean"]).all() and (by_step[f"{m}_mean"] <= by_step[f"{m}_hi"]).all()
        assert (by_step[f"{m}_lo"] < by_step[f"{m}_hi"]).all()
    by_prompt = summarize_by_prompt(rows)
    expect = df.groupby(["template", "step"])["clip_i"].mean()
    assert len(by_prompt) == len(expect) == 4
    for _, r in by_prompt.iterrows():
        assert r["clip_i_mean"] == pytest.approx(expect[(r["template"], r["step"])])
        assert r["clip_i_lo"] <= r["clip_i_mean"] <= r["clip_i_hi"]


@pytest.mark.slow
def test_rerun_scores_only_new_images(run, refs, scorer):
    cfg = ScoreConfig(references=refs, clip="ViT-B-32:random", batch_size=4)
    first = Counting(scorer)
    score_run(run, cfg, scorer=first, progress=False)
    assert first.images == 8 + 4  # 8 generated + 4 references
    before = {r["path"]: r for r in run.read_scores()}

    # two new images at a new checkpoint
    new = []
    for seed in (0, 1):
        rel = run.image_relpath(10, f"p00-s{seed}.png")
        (run.path / rel).parent.mkdir(parents=True, exist_ok=True)
        draw_image(900 + seed).save(run.path / rel)
        new.append({"path": rel, "prompt": "a horror movie poster with <tom-cat>",
                    "template": "a horror movie poster with {}", "seed": seed, "step": 10, "token": "<tom-cat>"})
    run.append_images(new)
    second, log = Counting(scorer), []
    meta = score_run(run, cfg, scorer=second, progress=False, log=log.append)
    assert second.images == 2 + 4
    assert meta["n_scored_now"] == 2 and meta["n_kept"] == 8 and meta["n_images"] == 10
    after = {r["path"]: r for r in run.read_scores()}
    assert all(after[p] == before[p] for p in before)  # old rows untouched
    assert sorted(set(after) - set(before)) == sorted(r["path"] for r in new)
    assert any("scoring 2 new" in m for m in log)
    assert [s["step"] for s in meta["summaries"]["by_step"]] == [0, 10, 20]

    # nothing new: nothing scored but the references
    third = Counting(scorer)
    assert score_run(run, cfg, scorer=third, progress=False)["n_scored_now"] == 0 and third.images == 4

    # another CLIP model (here: other provenance) -> everything is rescored, and the log says so
    from core.clip_score import ClipScorer

    other = ClipScorer(scorer.model, scorer.preprocess, scorer.tokenizer,
                       {**scorer.provenance, "seed": 1}, scorer.device)
    fourth, log = Counting(other), []
    meta = score_run(run, cfg, scorer=fourth, progress=False, log=log.append)
    assert fourth.images == 10 + 4 and meta["n_kept"] == 0
    assert any("CLIP model changed" in m and "rescoring all 10" in m for m in log)

    # other references -> everything is rescored too
    draw_image(777, 64).save(refs / "tom_9.png")
    fifth, log = Counting(other), []
    score_run(run, cfg, scorer=fifth, progress=False, log=log.append)
    assert fifth.images == 10 + 5 and any("reference images changed" in m for m in log)


@pytest.mark.slow
def test_interrupted_scoring_keeps_finished_batches(run, refs, scorer):
    cfg = ScoreConfig(references=refs, clip="ViT-B-32:random", batch_size=3)
    # batch 1 = the references, then 2 batches of 3 images, then interrupted
    with pytest.raises(KeyboardInterrupt):
        score_run(run, cfg, scorer=Counting(scorer, stop_after_batches=3), progress=False)
    assert len(run.read_scores()) == 6
    assert run.read_scores_meta()["complete"] is False
    again = Counting(scorer)
    meta = score_run(run, cfg, scorer=again, progress=False)
    assert again.images == 4 + 2 and meta["n_kept"] == 6 and meta["complete"]


def test_bad_reference_image_is_named(run, refs):
    (refs / "broken.png").write_bytes(b"this is not a png")
    (refs / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as e:
        score_run(run, ScoreConfig(references=refs, clip="ViT-B-32:random"), progress=False)  # fails before CLIP
    msg = str(e.value)
    assert "broken.png" in msg and "notes.txt" in msg and "tom_0.png" not in msg
    assert not run.scores_path.exists()


def test_missing_generated_image_is_named(run, refs):
    rel = run.read_images()[3]["path"]
    (run.path / rel).unlink()
    with pytest.raises(UserError, match=rel.split("/")[-1]):
        score_run(run, ScoreConfig(references=refs), progress=False)


def test_no_images_yet(tmp_path, refs):
    run = make_fake_run(tmp_path / "runs", "empty", with_images=False)
    with pytest.raises(UserError, match="generate"):
        score_run(run, ScoreConfig(references=refs), progress=False)


def test_offline_tag_gives_clear_error(monkeypatch):
    import open_clip.pretrained

    import core.clip_score as cs

    def offline(*a, **k):
        raise FileNotFoundError("Failed to download file (open_clip_pytorch_model.bin): Name or service not known")

    monkeypatch.setattr(cs, "_cached_tag_file", lambda cfg: None)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained", offline)
    with pytest.raises(UserError) as e:
        cs.load_clip("ViT-B-32:openai")
    msg = str(e.value)
    assert "--clip ViT-B-32:/path/open_clip_model.safetensors" in msg and "--clip ViT-B-32:random" in msg
    assert "Name or service not known" in msg


def test_bad_clip_specs():
    from core.clip_score import load_clip, parse_clip_spec

    assert parse_clip_spec("ViT-B-32:/a/b:c.safetensors") == ("ViT-B-32", "/a/b:c.safetensors")
    for spec in ("ViT-B-32", ":openai", "ViT-B-32:"):
        with pytest.raises(UserError, match="MODEL:TAG"):
            parse_clip_spec(spec)
    with pytest.raises(UserError, match="unknown open_clip model"):
        load_clip("ViT-Q-99:random")
    with pytest.raises(UserError, match="neither a pretrained tag"):
        load_clip("ViT-B-32:/no/such/file.safetensors")


@pytest.mark.slow
def test_local_weights_file(tmp_path, scorer, refs):
    """A local file is the offline route: same embeddings as the model it came from, recorded with its sha256."""
    from safetensors.torch import save_file

    from core.clip_score import load_clip
    from core.runfolder import sha256_file

    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()}, str(path))
    local = load_clip(f"ViT-B-32:{path}", device="cpu")
    assert local.provenance == {"model": "ViT-B-32", "pretrained": str(path.resolve()), "source": "local",
                                "sha256": sha256_file(path), "seed": None}
    pics = [Image.open(p).convert("RGB") for p in sorted(refs.iterdir())]
    np.testing.assert_allclose(local.encode_images(pics), scorer.encode_images(pics), atol=1e-5)
    np.testing.assert_allclose(local.encode_texts(["a cat"]), scorer.encode_texts(["a cat"]), atol=1e-5)
    del local
    path.unlink()  # 600 MB: do not leave it in pytest's kept tmp folders


def test_cached_tag_is_loaded_without_network_with_the_tags_settings(tmp_path, scorer, monkeypatch):
    """A tag whose weights are in the cache loads from that file (no download), with the tag's QuickGELU."""
    import open_clip.pretrained
    from safetensors.torch import save_file

    import core.clip_score as cs
    from core.runfolder import sha256_file

    path = tmp_path / "open_clip_model.safetensors"  # stands in for the cached OpenAI weights
    save_file({k: v.contiguous() for k, v in scorer.model.state_dict().items()}, str(path))
    monkeypatch.setattr(cs, "_cached_tag_file", lambda cfg: str(path))
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained",
                        lambda *a, **k: pytest.fail("downloaded although the weights are cached"))
    tagged = cs.load_clip("ViT-B-32:openai", device="cpu")
    assert tagged.provenance == {"model": "ViT-B-32", "pretrained": "openai", "source": "open_clip-tag",
                                 "sha256": sha256_file(path), "seed": None}
    assert type(tagged.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert type(scorer.model.visual.transformer.resblocks[0].mlp.gelu).__name__ != "QuickGELU"
    path.unlink()


def test_reference_ceiling_needs_two_images():
    assert reference_ceiling(np.ones((1, 4)))["mean"] is None
    e = np.eye(3)
    assert reference_ceiling(e)["mean"] == pytest.approx(0.0)


@pytest.mark.slow
def test_cli_score_same_numbers_for_same_seed(run, refs, scorer, capsys):
    """`python -m core score ... --clip ViT-B-32:random` rebuilds the seeded model: same numbers as the fixture."""
    from core.__main__ import main

    assert main(["score", str(run.path), "--references", str(refs), "--clip", "ViT-B-32:random",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "PIPELINE CHECK" in out and "reference ceiling CLIP-I" in out
    cli = {r["path"]: float(r["clip_i"]) for r in run.read_scores()}
    other = make_fake_run(run.path.parent.parent / "runs2", "obj", with_scores=False)
    score_run(other, ScoreConfig(references=refs), scorer=scorer, progress=False)
    fixture = {r["path"]: float(r["clip_i"]) for r in other.read_scores()}
    assert cli.keys() == fixture.keys()
    assert all(cli[p] == pytest.approx(fixture[p], abs=1e-5) for p in cli)
    assert json.loads(run.scores_meta_path.read_text())["clip"]["seed"] == 0
    assert main(["score", str(run.path), "--references", str(refs / "nope")]) == 2


def test_clip_text_drops_the_placeholder():
    from core.score import clip_text

    for tmpl, text in EXPECTED_TEXT.items():
        assert clip_text({"template": tmpl, "prompt": tmpl.replace("{}", "<tom-cat>")}, "<tom-cat>") == text
    # rows without a template (e.g. a free prompt): the token is removed from the prompt
    assert clip_text({"template": "", "prompt": "<tom-cat> surfing a wave", "token": "<tom-cat>"}, "") == \
        "surfing a wave"


@pytest.mark.slow
def test_score_then_compare_end_to_end(tmp_path, scorer, direct):
    """Done-when of issue 4: on random-weight runs, `score` then `compare` write their files, and CLIP-I / CLIP-T
    of images recomputed with open_clip directly match."""
    from core.__main__ import main
    from core.compare import load_comparison

    image, text = direct
    runs = tmp_path / "runs"
    for name, prop in (("char", "object"), ("style", "style")):
        run = make_fake_run(runs, name, prop, with_scores=False, seeds=(0,))
        ref_dir = tmp_path / f"refs-{name}"
        ref_dir.mkdir()
        for i in range(2):
            draw_image(zlib.crc32(f"{name}-{i}".encode()) % 1000, 64).save(ref_dir / f"{i}.png")  # per-run stable
        score_run(run, ScoreConfig(references=ref_dir), scorer=scorer, progress=False)
        ref = np.stack([image(p) for p in sorted(ref_dir.iterdir())])
        for row in run.read_scores()[::3]:
            e = image(run.path / row["path"])
            assert float(row["clip_i"]) == pytest.approx(float((ref @ e).mean()), abs=1e-4)
            assert float(row["clip_t"]) == pytest.approx(float(e @ text(EXPECTED_TEXT[row["template"]])), abs=1e-4)
    out = tmp_path / "cmp"
    assert main(["compare", str(runs / "char"), str(runs / "style"), "--out", str(out)]) == 0
    back = load_comparison(out)
    assert back["meta"]["pipeline_check"] and back["meta"]["runs"]["b"]["clip"]["source"] == "random"
    assert back["png"] is not None and len(back["table"]) == 10
    char = pd.DataFrame(Run(runs / "char").read_scores()).astype({"step": int, "clip_i": float})
    after = back["table"].set_index(["metric", "checkpoint"]).loc[("clip_i", "after")]
    assert after["a_mean"] == pytest.approx(char[char.step == 20].clip_i.mean())


def test_reference_pictures_are_encoded_once_per_scorer(clip_scorer, char_images):
    """clip_score.encode_references: the features of `encode_images`, each picture encoded once per scorer (by its
    pixels), so score and audit in one process (the demo) do not encode a reference set twice."""
    from core.clip_score import encode_references
    from core.images import load_image

    pics = [load_image(p) for p in sorted(char_images.glob("*.png"))]

    class Counting:
        def __init__(self):
            self.calls = []

        def encode_images(self, images, batch_size=16):
            self.calls.append(len(images))
            return np.stack([np.asarray(im, np.float32).mean(axis=(0, 1)) for im in images])

    stub = Counting()
    first = encode_references(stub, [pics[0], pics[1], pics[0]])
    second = encode_references(stub, [pics[1], pics[2]])
    assert stub.calls == [2, 1]  # a repeated picture, and one seen before, are not encoded again
    np.testing.assert_array_equal(first, stub.encode_images([pics[0], pics[1], pics[0]]))
    np.testing.assert_array_equal(second, stub.encode_images([pics[1], pics[2]]))
    np.testing.assert_allclose(encode_references(clip_scorer, pics), clip_scorer.encode_images(pics), atol=1e-5)
