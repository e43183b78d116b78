"""Export for diffusers / A1111 and import: diffusers' own loader reads our file; round trips are exact."""

import gzip
import json

import numpy as np
import pytest

from core.errors import UserError
from core.export import export_embedding, import_embedding, read_embedding_file
from tests.fakerun import make_fake_run


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


@pytest.fixture
def run(tmp_path):
    return make_fake_run(tmp_path / "runs", "exp", with_images=False)


def test_diffusers_load_textual_inversion_reads_our_export(run, tmp_path):
    import torch
    from diffusers.loaders import TextualInversionLoaderMixin
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = export_embedding(run, "diffusers", tmp_path / "learned_embeds.safetensors")
    tok = CLIPTokenizer.from_pretrained(str(clip_tokenizer_files(tmp_path)))
    assert tok("a photo of a cat").input_ids[:5] == [49406, 320, 1125, 539, 320]  # same ids as SD's tokenizer
    torch.manual_seed(0)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=77))

    class Loader(TextualInversionLoaderMixin):  # the two attributes a DiffusionPipeline would provide
        hf_device_map = None
        components = {"text_encoder": te}

    Loader().load_textual_inversion(str(out), tokenizer=tok, text_encoder=te)
    tid = tok.convert_tokens_to_ids("<tom-cat>")
    assert tid == 49408
    loaded = te.get_input_embeddings().weight[tid].detach().numpy()
    np.testing.assert_array_equal(loaded, run.load_embedding(20)["<tom-cat>"][0])


@pytest.mark.parametrize("fmt,name", [("diffusers", "e.safetensors"), ("a1111", "e.pt"), ("a1111", "e.safetensors")])
def test_export_import_round_trip(run, tmp_path, fmt, name):
    out = export_embedding(run, fmt, tmp_path / name, "final")
    imp = import_embedding(out, tmp_path / "runs", f"imp-{fmt}-{name.replace('.', '-')}", "<tom-cat>", "random", 0,
                           512, "object")
    np.testing.assert_array_equal(imp.load_embedding(1)["<tom-cat>"], run.load_embedding(20)["<tom-cat>"])
    assert imp.meta["kind"] == "import" and imp.is_pipeline_check


def test_a1111_pt_layout(run, tmp_path):
    import torch

    out = export_embedding(run, "a1111", tmp_path / "tom.pt")
    data = torch.load(out, weights_only=True)
    assert set(data["string_to_param"]) == {"*"} and tuple(data["string_to_param"]["*"].shape) == (1, 768)


def test_bad_embedding_files(tmp_path):
    from safetensors.numpy import save_file

    save_file({"a": np.zeros((1, 512), np.float32)}, str(tmp_path / "sd2.safetensors"))
    with pytest.raises(UserError, match=r"shape \(1, 512\) does not fit"):
        read_embedding_file(tmp_path / "sd2.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="junk.pt: cannot read embedding"):
        read_embedding_file(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        export_embedding(make_fake_run(tmp_path / "r", "x", with_images=False), "diffusers", tmp_path / "o.safetensors", "5")
