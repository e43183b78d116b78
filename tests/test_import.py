"""`import`: each tool's own embedding files (built the way each tool saves them) come in without --token where
the file names its token; original textual-inversion files are read without unpickling code; bad files get one
clear line without terminal escape codes."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from core.__main__ import main
from core.embedfile import read_embedding_file
from core.errors import UserError
from core.export import export_embedding, import_embedding
from tests.test_export import EXPORTS, TOKEN, make_run

RNG = np.random.default_rng(7)
V1 = RNG.normal(size=(1, 768)).astype(np.float32)
V5 = RNG.normal(size=(5, 768)).astype(np.float32)


def imp(path, tmp_path, token=None):
    return import_embedding(path, tmp_path / "runs", None, token, "random", 0, 128, "object")


# ---------------------------------------------------------------------------- each tool's files, as it saves them
def a1111_saved(path, vec):
    """modules/textual_inversion/textual_inversion.py Embedding.save (torch.save of this dict)."""
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(vec)}, "name": "tomcat",
                "step": 3000, "sd_checkpoint": "fe4efff1e1", "sd_checkpoint_name": "sd-v1-4"}, path)


def original_ti_saved(path, vec):
    """rinongal/textual_inversion ldm/modules/embedding_manager.py EmbeddingManager.save: an nn.ParameterDict."""
    torch.save({"string_to_token": {"*": torch.tensor(265)},
                "string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(torch.from_numpy(vec))})}, path)


def diffusers_saved_safetensors(path, vec):
    """diffusers examples/textual_inversion/textual_inversion.py save_progress (safe_serialization)."""
    import safetensors.torch

    safetensors.torch.save_file({"<tomcat>": torch.from_numpy(vec)}, str(path), metadata={"format": "pt"})


def diffusers_saved_bin(path, vec):
    """diffusers textual_inversion.py save_progress without safetensors: learned_embeds.bin."""
    torch.save({"<tomcat>": torch.from_numpy(vec)}, path)


def kohya_saved(path, vec):
    """kohya-ss/sd-scripts train_textual_inversion.py save_weights: {"emb_params": ...} with ModelSpec metadata."""
    import safetensors.torch

    safetensors.torch.save_file({"emb_params": torch.from_numpy(vec)}, str(path),
                                metadata={"modelspec.architecture": "stable-diffusion-v1/textual-inversion",
                                          "modelspec.title": "tomcat"})


@pytest.mark.parametrize("vec", [V1, V5], ids=["1vec", "5vec"])
@pytest.mark.parametrize("save,name,token", [
    (a1111_saved, "tomcat.pt", "<tomcat>"),  # A1111 `name` (its prompt word), as a placeholder token
    (diffusers_saved_safetensors, "learned_embeds.safetensors", "<tomcat>"),
    (diffusers_saved_bin, "learned_embeds.bin", "<tomcat>"),
])
def test_import_takes_the_token_the_file_names(tmp_path, save, name, token, vec):
    save(tmp_path / name, vec)
    run = imp(tmp_path / name, tmp_path)
    assert run.record.token.placeholder == token and run.meta["token"]["vectors"] == len(vec)
    np.testing.assert_array_equal(run.load_embedding(1)[token], vec)
    assert run.is_pipeline_check and run.meta["source_file"]["sha256"]


@pytest.mark.parametrize("save,name,layout", [(original_ti_saved, "embeddings_gs-6099.pt", "original-ti"),
                                              (kohya_saved, "tomcat.safetensors", "emb_params")])
def test_files_that_name_no_token_need_token(tmp_path, save, name, layout, capsys):
    save(tmp_path / name, V5)
    assert read_embedding_file(tmp_path / name).layout == layout
    assert main(["import", str(tmp_path / name), "--runs-dir", str(tmp_path / "runs"), "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert "names no token" in err and "--token" in err and err.count("\n") == 1
    run = imp(tmp_path / name, tmp_path, "<tomcat>")
    np.testing.assert_array_equal(run.load_embedding(1)["<tomcat>"], V5)


def test_original_ti_is_read_without_unpickling_code(tmp_path, monkeypatch):
    """torch.load(weights_only=True) refuses nn.ParameterDict; we read it through the allow-list, never torch.load."""
    original_ti_saved(tmp_path / "ti.pt", V1)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "ti.pt", weights_only=True)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    np.testing.assert_array_equal(read_embedding_file(tmp_path / "ti.pt").vectors, V1)


@pytest.mark.parametrize("vectors", [1, 5])
@pytest.mark.parametrize("fmt,name", EXPORTS)
def test_our_exports_round_trip_without_token(tmp_path, fmt, name, vectors):
    src = make_run(tmp_path / "src", "src", vectors)
    out = export_embedding(src, fmt, tmp_path / name)
    run = imp(out, tmp_path)
    assert run.record.token.placeholder == TOKEN
    np.testing.assert_array_equal(run.load_embedding(1)[TOKEN], src.load_embedding(20)[TOKEN])
    assert run.meta["source_file"]["metadata"].get("tomcat_ti.run") == "src"


# ------------------------------------------------------------------------------------------------- bad files
def st(path, tensors, metadata=None):
    from safetensors.numpy import save_file

    save_file(tensors, str(path), metadata)
    return path


@pytest.mark.parametrize("make,match", [
    (lambda p: st(p / "nan.safetensors", {"<t>": np.full((2, 768), np.nan, np.float32)}), "NaN/inf"),
    (lambda p: st(p / "inf.safetensors", {"emb_params": np.array([[np.inf] * 768], np.float32)}), "NaN/inf"),
    (lambda p: st(p / "sd2.safetensors", {"<t>": np.zeros((1, 1024), np.float32)}), "SD 2.x embedding"),
    (lambda p: st(p / "sd2e.safetensors", {"emb_params": np.zeros((4, 1024), np.float32)}), "SD 2.x embedding"),
    (lambda p: st(p / "xl.safetensors", {"clip_g": np.zeros((1, 1280), np.float32),
                                         "clip_l": np.zeros((1, 768), np.float32)}), "SDXL embedding"),
    (lambda p: st(p / "w.safetensors", {"<t>": np.zeros((1, 512), np.float32)}), r"shape \(1, 512\) does not fit"),
    (lambda p: st(p / "many.safetensors", {"<t>": np.zeros((80, 768), np.float32)}), "80 vectors"),
    (lambda p: st(p / "two.safetensors", {"a": V1, "b": V1}), "holds 2 tensors"),
])
def test_bad_files_one_clear_line(tmp_path, make, match, capsys):
    path = make(tmp_path)
    with pytest.raises(UserError, match=match):
        read_embedding_file(path)
    assert main(["import", str(path), "--runs-dir", str(tmp_path / "runs"), "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-made


def test_oversize_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "model.safetensors"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB on paper
    with pytest.raises(UserError, match=r"2048\.0 MiB is far too large .*checkpoint"):
        read_embedding_file(big)


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickles_that_could_run_code_are_not_loaded(tmp_path):
    buf = io.BytesIO()
    torch.save({"string_to_param": {"*": torch.zeros(1, 768)}, "x": Boom()}, buf)
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match=r"not loaded: the file refers to (posix|os)\.system"):
        read_embedding_file(tmp_path / "evil.pt")
    torch.save({"<t>": torch.zeros(1, 768)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(UserError, match="not a PyTorch zip file"):
        read_embedding_file(tmp_path / "legacy.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="junk.pt: not a PyTorch zip file"):
        read_embedding_file(tmp_path / "junk.pt")
    with zipfile.ZipFile(tmp_path / "extra.pt", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({}))
        z.writestr("archive/payload.so", b"\x7fELF")
    with pytest.raises(UserError, match="unexpected zip member"):
        read_embedding_file(tmp_path / "extra.pt")


def test_no_terminal_escape_codes(tmp_path, capsys):
    esc = "\x1b[2J\x1b[31m"
    st(tmp_path / "keys.safetensors", {f"{esc}a": V1, f"{esc}b": V1})
    torch.save({"string_to_param": {"*": torch.from_numpy(V1)}, "name": f"{esc}tom"}, tmp_path / "named.pt")
    weird = tmp_path / f"x{esc}.pt"
    weird.write_bytes(b"junk")
    for path in (tmp_path / "keys.safetensors", tmp_path / "named.pt", weird):
        assert main(["import", str(path), "--runs-dir", str(tmp_path / "runs"), "--weights", "random"]) == 2
        err = capsys.readouterr().err
        assert "\x1b" not in err and err.count("\n") == 1, err
