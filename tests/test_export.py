"""Export: every format loads with each tool's default settings and exact vectors (the installed diffusers
loader on a tiny CLIPTextModel; A1111, ComfyUI and InvokeAI through their loaders' rules in tests/toolrules.py),
for one and five vectors; provenance tells the truth; --bundle; no overwriting without --force."""

import gzip
import hashlib
import json
import zipfile

import numpy as np
import pytest
import torch

from core.card.legal import LICENSE_SHA256
from core.errors import UserError
from core.export import export_bundle, export_embedding, weights_hash
from tests import toolrules
from tests.fakerun import make_fake_run

TOKEN = "<tom-cat>"
# (format, file name): every file `export` writes
EXPORTS = [("diffusers", "learned_embeds.safetensors"), ("a1111", "tom-cat.pt"), ("a1111", "tom-cat.safetensors"),
           ("comfyui", "tom-cat.safetensors"), ("invokeai", "tom-cat.safetensors"), ("kohya", "tom-cat.safetensors")]


def clip_tokenizer_files(folder):
    """vocab.json + merges.txt for transformers' CLIPTokenizer, from the BPE file open_clip ships."""
    from core.tokenizer import bpe_path

    merges = gzip.open(bpe_path()).read().decode("utf-8").split("\n")[1: 49152 - 256 - 2 + 1]
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = [chr(c) for c in cs]
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def make_run(runs_dir, name, vectors=1, real=False):
    """A fake finished run (tests/fakerun.py) with `vectors` vectors per checkpoint; `real` gives it KerasCV
    weight provenance (file hashes) instead of random weights."""
    run = make_fake_run(runs_dir, name, with_images=False)
    if vectors != 1:
        rng = np.random.default_rng(vectors)
        for s in run.embedding_steps():
            run.save_embedding(s, {TOKEN: rng.normal(size=(vectors, 768)).astype(np.float32)})
        run.update_meta(token={"placeholder": TOKEN, "initializer": "cat", "vectors": vectors,
                               "tokens": [TOKEN] + [f"{TOKEN}_{i}" for i in range(1, vectors)]})
    if real:
        run.update_meta(weights={"source": "kerascv", "verified": True,
                                 "files": {"kcv_encoder.h5": "4789" + "0" * 60, "kcv_decoder.h5": "ad35" + "1" * 60}})
    return run


@pytest.fixture(params=[1, 5], ids=["1vec", "5vec"])
def run(request, tmp_path):
    return make_run(tmp_path / "runs", f"exp{request.param}", request.param)


def final_vectors(run):
    return run.load_embedding(run.embedding_steps()[-1])[TOKEN]


# ------------------------------------------------------------------------------------------------ diffusers
@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return clip_tokenizer_files(tmp_path_factory.mktemp("clip_tokenizer"))


def tiny_text_encoder(folder):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(folder))
    assert tok("a photo of a cat").input_ids[:5] == [49406, 320, 1125, 539, 320]  # same ids as SD's tokenizer
    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77))
    return tok, te


@pytest.mark.slow
@pytest.mark.parametrize("fmt,name", EXPORTS)
def test_diffusers_load_textual_inversion_reads_every_format(run, tmp_path, tokenizer_dir, fmt, name):
    """diffusers loaders/textual_inversion.py (installed): default settings; the emb_params layout names no
    token diffusers can see (its key is 'emb_params'), so that one is loaded with token= as its docs say."""
    from diffusers.loaders import TextualInversionLoaderMixin

    out = export_embedding(run, fmt, tmp_path / name)
    tok, te = tiny_text_encoder(tokenizer_dir)

    class Loader(TextualInversionLoaderMixin):  # the two attributes a DiffusionPipeline would provide
        hf_device_map = None
        components = {"text_encoder": te}

    names_token = fmt == "diffusers" or name.endswith(".pt")
    loader = Loader()
    loader.load_textual_inversion(str(out), tokenizer=tok, text_encoder=te, token=None if names_token else TOKEN)
    want = final_vectors(run)
    names = [TOKEN] + [f"{TOKEN}_{i}" for i in range(1, len(want))]
    ids = tok.convert_tokens_to_ids(names)
    assert ids == list(range(49408, 49408 + len(want)))
    np.testing.assert_array_equal(te.get_input_embeddings().weight[ids].detach().numpy(), want)
    prompt = loader.maybe_convert_prompt(f"a {TOKEN} cat", tok)  # what the pipeline does: expand to n tokens
    assert tok(prompt).input_ids[2:2 + len(want)] == ids


def test_diffusers_single_vector_file_is_1d(tmp_path):
    """issue 12: InvokeAI reads shape[0] of a diffusers tensor as its width, so one vector is stored as [768]."""
    from safetensors.numpy import load_file

    one = make_run(tmp_path / "r", "one", 1)
    five = make_run(tmp_path / "r", "five", 5)
    assert load_file(str(export_embedding(one, "diffusers", tmp_path / "a.safetensors")))[TOKEN].shape == (768,)
    assert load_file(str(export_embedding(five, "diffusers", tmp_path / "b.safetensors")))[TOKEN].shape == (5, 768)


# -------------------------------------------------------------------------------------------------- A1111
@pytest.mark.parametrize("fmt,name", EXPORTS)
def test_a1111_loads_exact_vectors(run, tmp_path, fmt, name):
    """Every file `export` writes (the docs table says A1111 loads them all), through load_from_file's rules."""
    out = export_embedding(run, fmt, tmp_path / name)
    if out.suffix == ".pt":
        toolrules.a1111_check_pt(out)  # the safe unpickler runs first on every .pt
    vec, fields = toolrules.a1111_load(out)
    np.testing.assert_array_equal(vec, final_vectors(run))


def test_a1111_pt_passes_safe_unpickler_where_torch_save_does_not(tmp_path):
    """modules/safe.py check_zip_filenames: our members match `allowed_zip_names_re`; torch.save's own output
    (the torch in requirements.txt) has members it rejects: the reason we write the zip ourselves."""
    out = export_embedding(make_run(tmp_path / "r", "x"), "a1111", tmp_path / "tom-cat.pt")
    names = zipfile.ZipFile(out).namelist()
    assert names == ["archive/data.pkl", "archive/data/0", "archive/version"]
    for rule in toolrules.A1111_ZIP_RULE_VARIANTS.values():
        assert all(rule(n) for n in names)
    toolrules.a1111_check_pt(out)
    torch.save({"string_to_param": {"*": torch.zeros(1, 768)}}, tmp_path / "torch.pt")
    with pytest.raises(ValueError, match="bad file inside"):
        toolrules.a1111_check_pt(tmp_path / "torch.pt")
    torch_names = zipfile.ZipFile(tmp_path / "torch.pt").namelist()
    for rule in toolrules.A1111_ZIP_RULE_VARIANTS.values():  # .format_version passes no form of the rule
        assert not all(rule(n) for n in torch_names)
    # RestrictedUnpickler.find_class: only allow-listed globals
    pkl = zipfile.ZipFile(out).read("archive/data.pkl")
    assert toolrules.pickle_globals(pkl) <= toolrules.A1111_ALLOWED_GLOBALS
    assert ("torch._utils", "_rebuild_tensor_v2") in toolrules.pickle_globals(pkl)


def test_a1111_pt_fields_tell_the_truth(tmp_path):
    rnd = make_run(tmp_path / "r", "rnd")
    _, fields = toolrules.a1111_load(export_embedding(rnd, "a1111", tmp_path / "rnd.pt"))
    assert fields["sd_checkpoint"] is None and fields["step"] == 20
    assert "stable-diffusion-v1-4" != fields["sd_checkpoint_name"] and "PIPELINE-CHECK" in fields["sd_checkpoint_name"]
    real = make_run(tmp_path / "r", "real", real=True)
    out = export_embedding(real, "a1111", tmp_path / "real.pt")
    _, fields = toolrules.a1111_load(out)
    files = dict(real.record.weights.files)
    assert fields["sd_checkpoint"] == weights_hash(files)[:10]
    assert fields["sd_checkpoint_name"].startswith("stable-diffusion-v1-4 (KerasCV weights")
    data = torch.load(out, weights_only=True)
    assert data["name"] == TOKEN and json.loads(data["tomcat_ti"]["base_weights_sha256"]) == files
    assert data["tomcat_ti"]["pipeline_check"] == "false"


# ------------------------------------------------------------------------------------------------- ComfyUI
@pytest.mark.parametrize("fmt,name", EXPORTS)
def test_comfyui_loads_exact_vectors(run, tmp_path, fmt, name):
    np.testing.assert_array_equal(toolrules.comfyui_load(export_embedding(run, fmt, tmp_path / name)),
                                  final_vectors(run))


def test_comfyui_takes_the_first_tensor_so_files_hold_one(tmp_path):
    """comfy/sd1_clip.py load_embed uses next(iter(values)): with a second tensor in the file it could take the
    wrong one; every safetensors export holds exactly one."""
    from safetensors import safe_open

    r = make_run(tmp_path / "r", "x", 5)
    for fmt, name in EXPORTS:
        if name.endswith(".safetensors"):
            with safe_open(str(export_embedding(r, fmt, tmp_path / f"{fmt}-{name}")), "np") as f:
                assert len(list(f.keys())) == 1


# ------------------------------------------------------------------------------------------------- InvokeAI
@pytest.mark.parametrize("fmt,name", EXPORTS)
def test_invokeai_install_check_and_loader(run, tmp_path, fmt, name):
    out = export_embedding(run, fmt, tmp_path / name)
    if fmt == "diffusers" and len(final_vectors(run)) > 1:
        # InvokeAI cannot accept any [n>1, 768] diffusers file (README export table says so)
        with pytest.raises(ValueError, match=f"unrecognized token dimension {len(final_vectors(run))}"):
            toolrules.invokeai_probe(out)
        return
    assert toolrules.invokeai_probe(out) == "sd-1"
    np.testing.assert_array_equal(toolrules.invokeai_load(out), final_vectors(run))


def test_invokeai_rule_rejects_the_old_2d_single_vector_file(tmp_path):
    """The bug of issue 12: {token: [1, 768]} reads as width 1 in the install check."""
    from safetensors.numpy import save_file

    save_file({TOKEN: np.zeros((1, 768), np.float32)}, str(tmp_path / "learned_embeds.safetensors"))
    with pytest.raises(ValueError, match="unrecognized token dimension 1"):
        toolrules.invokeai_probe(tmp_path / "learned_embeds.safetensors")


# ------------------------------------------------------------------------------------------ kohya / ModelSpec
def test_kohya_modelspec_metadata(tmp_path):
    from safetensors import safe_open

    for real in (False, True):
        r = make_run(tmp_path / "r", f"k{real}", 5, real=real)
        with safe_open(str(export_embedding(r, "kohya", tmp_path / f"k{real}.safetensors")), "np") as f:
            md = f.metadata()
            assert list(f.keys()) == ["emb_params"] and f.get_tensor("emb_params").shape == (5, 768)
        assert md["modelspec.architecture"] == "stable-diffusion-v1/textual-inversion"
        assert md["modelspec.trigger_phrase"] == TOKEN and md["modelspec.license"] == "creativeml-openrail-m"
        assert md["modelspec.sai_model_spec"] == "1.0.0" and md["modelspec.date"][:2] == "20"
        assert md["tomcat_ti.token"] == TOKEN and md["tomcat_ti.run"] == r.name and md["tomcat_ti.step"] == "20"
        assert md["tomcat_ti.pipeline_check"] == str(not real).lower()
        if real:
            assert md["tomcat_ti.base_weights_hash"] == weights_hash(dict(r.record.weights.files))
            assert "PIPELINE" not in md["modelspec.title"]
        else:
            assert "PIPELINE CHECK" in md["modelspec.title"] and "PIPELINE CHECK" in md["tomcat_ti.note"]
            assert "stable-diffusion-v1-4 (" not in md["tomcat_ti.base_model"]


# --------------------------------------------------------------------------------------------- bundle, CLI
@pytest.mark.slow
def test_bundle(tmp_path, char_images):
    """The preview is the final checkpoint's grid as `generate` wrote it (tiny networks, random weights), with the
    red PIPELINE CHECK banner generate draws across the top of random-weight grids."""
    from PIL import Image

    from core.generate import GenerateConfig, generate
    from core.train import TrainConfig, start_run, train
    from tests.tiny import tiny_components

    comps = tiny_components(128)
    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": 128, "steps": 2,
                                 "checkpoint_every": 2})
    r = train(cfg, start_run(cfg, tmp_path / "runs", "b"), comps, progress=False)
    (tmp_path / "p.txt").write_text("a photo of {}\n")
    generate(r, GenerateConfig.from_dict({"prompts": str(tmp_path / "p.txt"), "seeds": "0", "checkpoints": "0,final",
                                          "steps": 1}), comps, progress=False)
    grid = r.grid_path("checkpoint-000002-txt2img.png")
    paths = export_bundle(r, tmp_path / "emb")
    assert sorted(p.name for p in paths) == ["tom-cat.LICENSE.txt", "tom-cat.description.txt", "tom-cat.preview.png",
                                             "tom-cat.safetensors"]
    assert (tmp_path / "emb/tom-cat.preview.png").read_bytes() == grid.read_bytes()
    with Image.open(grid) as im:
        im = im.convert("RGB")
        assert {im.getpixel((x, 2)) for x in range(0, im.width, 5)} == {(200, 30, 30)}  # the banner, edge to edge
        assert im.getpixel((im.width // 2, im.height - 2)) != (200, 30, 30)
    desc = (tmp_path / "emb/tom-cat.description.txt").read_text()
    assert desc.startswith("PIPELINE CHECK") and "embedding:tom-cat" in desc
    # the licence's 4(b): every recipient gets a copy of the licence, the exact CompVis/stable-diffusion LICENSE
    licence = (tmp_path / "emb/tom-cat.LICENSE.txt").read_bytes()
    assert hashlib.sha256(licence).hexdigest() == LICENSE_SHA256
    assert licence.startswith(b"Copyright (c) 2022 Robin Rombach and Patrick Esser and contributors\n")
    assert b"Attachment A" in licence and "tom-cat.LICENSE.txt" in desc
    from safetensors.numpy import load_file  # tiny networks: 32-wide vectors, which no web UI's rule accepts

    np.testing.assert_array_equal(load_file(str(tmp_path / "emb/tom-cat.safetensors"))["emb_params"], final_vectors(r))
    with pytest.raises(UserError, match="exists; pass --force"):
        export_bundle(r, tmp_path / "emb")
    export_bundle(r, tmp_path / "emb", force=True)


def test_random_weight_grids_carry_the_banner(tmp_path):
    """The preview comes from a grid; core/generate.py draws the PIPELINE CHECK banner on random-weight grids."""
    from core.generate import labelled_grid

    g = labelled_grid([[None]], ["p"], ["seed 0"], "t", "PIPELINE CHECK - random weights, not a model result")
    assert g.getpixel((1, 1)) == (200, 30, 30)
    assert labelled_grid([[None]], ["p"], ["seed 0"], "t", None).getpixel((1, 1)) == (255, 255, 255)


def test_export_refuses_overwrite_and_bad_out(tmp_path, capsys):
    import os

    from core.__main__ import main

    r = make_run(tmp_path / "runs", "x")
    out = tmp_path / "learned_embeds.safetensors"
    assert main(["export", str(r.path), "--out", str(out)]) == 0
    before = out.read_bytes()
    assert main(["export", str(r.path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force" in err and err.count("\n") == 1
    assert out.read_bytes() == before
    newer = final_vectors(r) + 1.0  # --force rewrites the file with what the run holds now
    r.save_embedding(r.embedding_steps()[-1], {TOKEN: newer})
    assert main(["export", str(r.path), "--out", str(out), "--force"]) == 0
    from safetensors.numpy import load_file

    np.testing.assert_array_equal(load_file(str(out))[TOKEN].reshape(newer.shape), newer)
    assert main(["export", str(r.path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and err.count("\n") == 1
    afile = tmp_path / "afile"  # a folder that is a file: nobody can write there, root included
    afile.write_text("x")
    assert main(["export", str(r.path), "--out", str(afile / "e.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1 and not afile.is_dir()
    if os.geteuid() != 0:  # a read-only folder as well (root may write in one)
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert main(["export", str(r.path), "--out", str(locked / "e.safetensors")]) == 2
        err = capsys.readouterr().err
        assert "cannot write" in err and err.count("\n") == 1
    with pytest.raises(UserError, match="writes a .safetensors"):
        export_embedding(r, "diffusers", tmp_path / "e.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        export_embedding(r, "diffusers", tmp_path / "o.safetensors", "5")


def test_cli_bundle_then_import_round_trip(tmp_path, capsys):
    from core.__main__ import main
    from core.runfolder import Run

    r = make_run(tmp_path / "runs", "cli", 5)
    assert main(["export", str(r.path), "--bundle", str(tmp_path / "emb")]) == 0
    out = capsys.readouterr().out
    assert "tom-cat.safetensors" in out and "PIPELINE CHECK" in out
    assert main(["import", str(tmp_path / "emb/tom-cat.safetensors"), "--runs-dir", str(tmp_path / "runs"),
                 "--weights", "random", "--name", "back"]) == 0
    assert f"imported {TOKEN}" in capsys.readouterr().out
    np.testing.assert_array_equal(Run(tmp_path / "runs/back").load_embedding(1)[TOKEN], final_vectors(r))
