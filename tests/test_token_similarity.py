"""The learned token in CLIP's text space, with tiny stand-in networks: the weight-independent identities (step 0
equals the initializer's prompt; a vector set to a vocabulary row gives that word), open_clip's projection
convention, and the memorisation screen's cond_gap recorded by generate (against a direct UNet computation)."""

import numpy as np
import pytest

from core.identity import ensemble, unit
from core.token_similarity import TextProjection, TextSet, hidden_states_by_step, pooled_hidden_states, token_similarity

TOKEN = "<tom-cat>"


@pytest.fixture(scope="module")
def tiny():
    from tests.tiny import tiny_components

    return tiny_components(128, seed=3)


@pytest.fixture(scope="module")
def parts(tiny):
    from core.components import PlaceholderTextEncoder, vocabulary_table
    from core.tokenizer import PromptTokenizer

    tok = PromptTokenizer(TOKEN)
    vocab = vocabulary_table(tiny.text_encoder)
    cat = tok.initializer_id("cat")
    return tok, vocab, cat, PlaceholderTextEncoder(tiny.text_encoder, vocab[cat][None])


def feature(hidden, proj):
    return ensemble(unit(proj(hidden)))


def test_step0_token_prompt_equals_initializer_prompt_and_a_vocabulary_row_gives_its_word(parts):
    tok, vocab, cat, enc = parts
    dog = tok.initializer_id("dog")
    rng = np.random.default_rng(0)
    proj = TextProjection(rng.normal(size=(vocab.shape[1], 16)))  # any weights: the identities hold regardless
    texts = TextSet.for_run("object", "Tom, the cat from Tom and Jerry", "cat", 1, ["dog", "a mouse"])
    vectors = {0: vocab[cat][None], 7: vocab[dog][None], 9: rng.normal(size=(1, vocab.shape[1])).astype(np.float32)}
    hidden = hidden_states_by_step(enc, tok, TOKEN, [0, 7, 9], vectors.__getitem__, texts)
    assert hidden["token"][0].shape == (3, vocab.shape[1])
    np.testing.assert_allclose(hidden["token"][0], hidden["init"], atol=1e-5)
    rows = {r["step"]: r for r in token_similarity(hidden, proj, rng.normal(size=(4, 16)), n_boot=100)}
    assert rows[0]["vs_init"] >= 0.9999
    assert rows[7]["vs_distractors"]["dog"] >= 0.9999  # set to dog's row: the token *is* "dog"
    assert rows[7]["vs_init"] < 0.9999 and rows[9]["vs_init"] < 0.9999  # not trivially 1
    assert set(rows[9]) >= {"step", "vs_references", "vs_references_ci", "vs_subject", "vs_init", "vs_distractors"}


def test_multi_vector_token_at_step0_equals_the_initializer_repeated(tiny):
    from core.components import PlaceholderTextEncoder, vocabulary_table
    from core.tokenizer import PromptTokenizer

    tok = PromptTokenizer(TOKEN, 3)
    vocab = vocabulary_table(tiny.text_encoder)
    init = np.repeat(vocab[tok.initializer_id("cat")][None], 3, axis=0)
    enc = PlaceholderTextEncoder(tiny.text_encoder, init)
    texts = TextSet.for_run("style", None, "cat", 3, [])
    assert texts.init_text == "cat cat cat" and texts.templates[0] == "a painting in the style of {}"
    hidden = hidden_states_by_step(enc, tok, TOKEN, [0], lambda s: init, texts)
    np.testing.assert_allclose(hidden["token"][0], hidden["init"], atol=1e-5)
    assert hidden["subject"] is None


def test_pooled_state_is_taken_at_the_end_of_text(parts):
    tok, _, _, enc = parts
    ids = np.asarray([tok.encode(f"a photo of {TOKEN}"), tok.encode("a photo")])
    full = enc.encode(ids)
    pooled = pooled_hidden_states(enc, ids)
    np.testing.assert_allclose(pooled[0], full[0, 5])  # SOT a photo of TOKEN [EOT]
    np.testing.assert_allclose(pooled[1], full[1, 3])


def test_projection_matches_open_clip_encode_text():
    """ln_final(x)[eot] @ text_projection, taken from open_clip's own forward pass, equals encode_text."""
    import open_clip
    import torch
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(0)  # a tiny CLIP of open_clip's own class: the same encode_text code as ViT-L-14's
    vision = CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=32)
    model = CLIP(embed_dim=16, vision_cfg=vision,
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=24, heads=2, layers=2)).eval()
    tokens = open_clip.get_tokenizer("ViT-L-14")(["a photo of a cat", "a horror movie poster"])
    seen = {}
    handle = model.ln_final.register_forward_hook(lambda m, i, o: seen.setdefault("x", o.detach()))
    with torch.no_grad():
        expected = model.encode_text(tokens).numpy()
    handle.remove()
    pooled = seen["x"][torch.arange(2), tokens.argmax(dim=-1)].numpy()  # no placeholder here: argmax is the EOT
    proj = TextProjection.from_open_clip(model, {"model": "tiny"})
    assert proj.width == 24
    np.testing.assert_allclose(proj(pooled), expected, rtol=1e-4, atol=1e-5)


def test_cond_gap_is_the_first_steps_mean_distance_of_the_two_predictions(tiny):
    from core.sampler import Sampler
    from core.schedule import ddim_timesteps, timestep_embedding

    rng = np.random.default_rng(0)
    ctx = rng.normal(size=(2, 77, 32)).astype(np.float32)
    uncond = rng.normal(size=(2, 77, 32)).astype(np.float32)
    noise = rng.normal(size=(2, 16, 16, 4)).astype(np.float32)
    sampler = Sampler(tiny.diffusion_model, tiny.decoder)
    imgs, gap = sampler.sample_with_gap(ctx, uncond, noise, num_steps=4, guidance=7.5, screen_steps=1)
    assert np.array_equal(imgs, sampler.sample(ctx, uncond, noise, num_steps=4, guidance=7.5))
    t_emb = np.repeat(timestep_embedding(ddim_timesteps(4)[-1:]), 2, axis=0)  # the first step run is the last t
    unet = tiny.diffusion_model
    e_c = np.asarray(unet({"latent": noise, "timestep_embedding": t_emb, "context": ctx}))
    e_u = np.asarray(unet({"latent": noise, "timestep_embedding": t_emb, "context": uncond}))
    np.testing.assert_allclose(gap, np.linalg.norm((e_c - e_u).reshape(2, -1), axis=1), rtol=1e-4)
    # the stand-in UNet adds a context term that does not depend on latent or timestep, so every step's distance
    # is the same and the mean over 3 steps (or over the 4 run when 9 are asked) must equal the first's
    for k in (3, 9):
        _, gap_k = sampler.sample_with_gap(ctx, uncond, noise, num_steps=4, guidance=7.5, screen_steps=k)
        np.testing.assert_allclose(gap_k, gap, rtol=1e-4)


def test_generate_records_cond_gap_and_an_older_images_csv_keeps_its_header(tiny, tmp_path, char_images):
    from core.generate import GenerateConfig, generate
    from core.runfolder import IMAGE_COLUMNS
    from core.train import TrainConfig, start_run, train

    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": 128, "steps": 1,
                                 "checkpoint_every": 1, "batch_size": 1})
    run = train(cfg, start_run(cfg, tmp_path / "runs", "gap"), tiny, progress=False)
    gcfg = GenerateConfig.from_dict({"seeds": "0", "checkpoints": "0", "steps": 2, "batch_size": 4})
    generate(run, gcfg, tiny, progress=False)
    rows = run.read_images()
    assert rows and all(float(r["cond_gap"]) > 0 for r in rows)

    old = tmp_path / "runs" / "old"
    old.mkdir()
    old_columns = [c for c in IMAGE_COLUMNS if c != "cond_gap"]
    (old / "images.csv").write_text(",".join(old_columns) + "\n", encoding="utf-8")
    from core.runfolder import Run

    r = Run(old)
    r.append_images([{**rows[0], "path": "images/x.png"}])
    back = r.read_images()
    assert list(back[0]) == old_columns and "cond_gap" not in back[0]  # missing, not an error or a shifted row


# ------------------------------------------------------------------------------- score writes every field
def tiny_clip_scorer(width: int = 32):
    """open_clip's own CLIP class at toy size (text width = the tiny text encoder's), as a ClipScorer."""
    import open_clip
    import torch
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from core.clip_score import ClipScorer

    torch.manual_seed(0)
    model = CLIP(embed_dim=16, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16,
                                                        image_size=32),
                 text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=width, heads=2, layers=1)).eval()
    prov = {"model": "tiny-CLIP", "pretrained": "random", "source": "random", "sha256": None, "seed": 0}
    return ClipScorer(model=model, preprocess=open_clip.image_transform(32, is_train=False),
                      tokenizer=open_clip.get_tokenizer("ViT-L-14"), provenance=prov)


MISUSE_PROBE = "a t-shirt printed with {} on the front, product photo"  # in prompts/eval/misuse.txt


@pytest.fixture(scope="module")
def scored(tiny, tmp_path_factory, char_images):
    """A tiny-network run (checkpoints 0, 1, 2) with evaluation, misuse-probe and leakage images, scored with every
    option."""
    from core.generate import GenerateConfig, generate
    from core.score import ScoreConfig, score_run
    from core.train import TrainConfig, start_run, train

    tmp = tmp_path_factory.mktemp("identity-score")
    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": 128, "steps": 2,
                                 "checkpoint_every": 1, "batch_size": 1})
    run = train(cfg, start_run(cfg, tmp / "runs", "scored"), tiny, progress=False)
    leakage = tmp / "leakage.txt"
    leakage.write_text("# subject: a dog\na dog sitting next to {}\n"
                       "# subject: an elephant\nan elephant standing beside {} at the zoo\n", encoding="utf-8")
    prompts = tmp / "prompts.txt"
    prompts.write_text(f"a horror movie poster with {{}}\n{MISUSE_PROBE}\n" + leakage.read_text(encoding="utf-8"),
                       encoding="utf-8")
    generate(run, GenerateConfig.from_dict({"prompts": str(prompts), "seeds": "0,1", "checkpoints": "all",
                                            "steps": 2, "batch_size": 8}), tiny, progress=False)
    import timm
    import torch

    torch.manual_seed(0)
    dino = tmp / "dino_vits16.pth"
    torch.save(timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict(), dino)
    scorer = tiny_clip_scorer()
    config = ScoreConfig(references=char_images, clip="ViT-B-32:random", token_clip="ViT-L-14:random",
                         subject="Tom, the cat from Tom and Jerry", leakage=leakage, protocol="customconcept101",
                         dino=str(dino), n_boot=200)
    meta = score_run(run, config, scorer=scorer, progress=False, log=lambda m: None, components=tiny,
                     load_token_clip=lambda spec, seed, device: scorer)
    return run, config, scorer, meta


@pytest.mark.slow
def test_score_writes_every_identity_field_for_every_checkpoint(scored):
    run, _, _, meta = scored
    rec = run.scores_record()
    steps = [0, 1, 2]
    assert [r["step"] for r in rec.token_similarity] == steps
    for r in rec.token_similarity:
        assert all(r[k] is not None for k in ("vs_references", "vs_subject", "vs_init")), r
        assert len(r["vs_references_ci"]) == 2 and len(r["vs_distractors"]) >= 8
    assert rec.token_similarity[0]["vs_init"] >= 0.9999  # step 0 is the initializer (any weights)
    assert rec.token_similarity_provenance["computed"] and rec.token_similarity_provenance["templates"]
    # identity over the evaluation prompt's 2 images per checkpoint: the misuse probe and leakage prompts left out
    assert [r["step"] for r in rec.identity] == steps and all(r["n"] == 2 for r in rec.identity)
    assert all(0 <= r["ci_lo"] <= r["rate"] <= r["ci_hi"] <= 1 for r in rec.identity)
    assert rec.identity_labels["labels"][0] == "Tom, the cat from Tom and Jerry"
    assert rec.identity_labels["labels"][1] == "a cat"
    assert [r["step"] for r in rec.leakage] == steps and all(r["n"] == 4 for r in rec.leakage)
    assert rec.leakage[0]["change"] == 0 and rec.leakage[1]["n_paired"] == 4
    assert [r["step"] for r in rec.memorisation] == steps and all(r["n"] == 8 for r in rec.memorisation)
    assert rec.memorisation[0]["threshold"] is not None
    prot = rec.protocol
    assert prot["published_textual_inversion"] == {"clip_t": 0.6126, "clip_i": 0.7524, "dino": 0.5111}
    assert [r["step"] for r in prot["rows"]] == steps and all(r["dino"] is not None for r in prot["rows"])
    assert len(prot["dino"]["sha256"]) == 64
    for measure in ("clip_i", "clip_t", "identity", "leakage", "memorisation", "token_similarity", "protocol"):
        p = rec.provenance[measure]
        assert {"encoder", "preprocessing", "prompt_variant", "versions"} <= set(p), measure
    scores = run.read_scores()
    assert {r["leak_survives"] for r in scores if "dog" in r["template"]} <= {"0", "1"}
    assert {r["leak_survives"] for r in scores if "horror" in r["template"]} == {""}


def test_protocol_numbers_follow_from_the_per_image_cosines(scored):
    """Over the evaluation prompts' images of the checkpoint (misuse probes and leakage prompts left out)."""
    run, _, _, meta = scored
    rows = [r for r in run.read_scores() if int(r["step"]) == 2 and "horror" in r["template"]]
    got = run.scores_record().protocol["rows"][-1]
    assert got["n"] == len(rows) == 2 and "left out" in run.scores_record().protocol["images"]
    assert got["clip_t"] == pytest.approx(np.mean([2.5 * max(float(r["clip_t"]), 0) for r in rows]))
    assert got["clip_i"] == pytest.approx(np.mean([float(r["clip_i"]) for r in rows]))


def test_score_prints_the_measures_from_the_record(scored):
    from core.identity_stage import summary_lines

    run, _, _, _ = scored
    rec = run.scores_record()
    lines = summary_lines(rec)
    assert sum(line.startswith("token similarity step ") for line in lines) == len(rec.token_similarity) == 3
    assert any(line.startswith("leakage step 2: survival ") for line in lines)
    assert any("published textual inversion: 0.6126, 0.7524, 0.5111" in line for line in lines)


def test_rescoring_keeps_rows_unless_the_labels_change(scored, char_images):
    from core.score import score_run

    run, config, scorer, _ = scored
    kw = dict(scorer=scorer, progress=False, log=lambda m: None, components=None, load_token_clip=None)
    import dataclasses

    same = dataclasses.replace(config, token_clip="", protocol="", dino=None)
    assert score_run(run, same, **kw)["n_scored_now"] == 0
    assert run.scores_record().token_similarity == ()  # not asked for this time
    changed = dataclasses.replace(same, subject="Tom the cartoon cat")
    meta = score_run(run, changed, **kw)
    assert meta["n_scored_now"] == 24 and run.scores_record().identity_labels["subject"] == "Tom the cartoon cat"

