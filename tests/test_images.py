"""Image validation, loading and augmentation (no networks)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.images import augment, center_square, check_image, load_rgb, manifest_rows, validate_images

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


def make_bad_folder(folder):
    folder.mkdir()
    Image.new("RGB", (100, 80), "red").save(folder / "good.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("hello, not an image")
    Image.new("RGB", (200, 200), "blue").save(folder / "full.jpg", quality=90)
    data = (folder / "full.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "full.jpg").unlink()
    Image.new("RGB", (30, 20), "green").save(folder / "tiny.png")
    (folder / "notes.txt").write_text("x")
    return folder


def test_check_image_reasons(tmp_path):
    f = make_bad_folder(tmp_path / "imgs")
    assert check_image(f / "good.png") is None
    assert "empty" in check_image(f / "empty.jpg")
    assert "not an image" in check_image(f / "text.png")
    assert "truncated" in check_image(f / "truncated.jpg")
    assert "too small" in check_image(f / "tiny.png")
    assert "not a supported image type" in check_image(f / "notes.txt")


def test_too_many_pixels(tmp_path, monkeypatch):
    import core.images as images

    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 300 * 299)
    assert "too many pixels" in images.check_image(tmp_path / "big.png")


def test_validate_lists_every_bad_file(tmp_path):
    f = make_bad_folder(tmp_path / "imgs")
    with pytest.raises(UserError) as e:
        validate_images(f)
    msg = str(e.value)
    for name in ("empty.jpg", "text.png", "truncated.jpg", "tiny.png", "notes.txt"):
        assert name in msg
    assert "good.png" not in msg


def test_check_images_cli_exit_status(tmp_path, char_images):
    f = make_bad_folder(tmp_path / "imgs")
    bad = subprocess.run([sys.executable, "-m", "core", "check-images", str(f)], cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 1
    lines = [l for l in bad.stdout.splitlines() if ": " in l and "bad file" not in l]
    assert len(lines) == 5, bad.stdout  # one line per bad file
    ok = subprocess.run([sys.executable, "-m", "core", "check-images", str(char_images)], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "6 image(s) OK" in ok.stdout


def test_load_rgb_modes_exif_and_gif(tmp_path):
    rgba = Image.new("RGBA", (80, 60), (255, 0, 0, 0))
    rgba.save(tmp_path / "a.png")
    assert load_rgb(tmp_path / "a.png").getpixel((0, 0)) == (255, 255, 255)  # transparency on white
    Image.new("L", (70, 70), 128).save(tmp_path / "g.bmp")
    assert load_rgb(tmp_path / "g.bmp").mode == "RGB"
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]  # red, then blue
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.n_frames == 2
        gif.seek(1)
        assert gif.convert("RGB").getpixel((5, 5)) == (0, 0, 255)  # the file really holds a different frame
    first = load_rgb(tmp_path / "anim.gif")
    assert first.size == (64, 64) and first.getpixel((5, 5)) == (255, 0, 0)  # the first frame is what is read
    img = Image.new("RGB", (100, 50), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").size == (50, 100)
    Image.new("RGB", (90, 90), "blue").save(tmp_path / "w.webp")
    assert load_rgb(tmp_path / "w.webp").size == (90, 90)


def test_augment_range_and_determinism(char_images):
    sq = center_square(load_rgb(sorted(char_images.glob("*.png"))[0]), 144)
    a = augment(sq, 128, np.random.default_rng(1))
    b = augment(sq, 128, np.random.default_rng(1))
    assert a.shape == (128, 128, 3) and a.dtype == np.float32
    assert -1.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    flips = [augment(sq, 128, np.random.default_rng(s), min_area=1.0) for s in range(8)]
    assert any(not np.array_equal(flips[0], f) for f in flips[1:])


def test_licenses_recorded_and_checked(char_images, tmp_path):
    imgs = validate_images(char_images)
    rows = manifest_rows(char_images, imgs)
    assert len(rows) == 6 and all(r["license"] == "CC0-1.0" and len(r["sha256"]) == 64 for r in rows)
    bad = tmp_path / "lic"
    bad.mkdir()
    Image.new("RGB", (80, 80)).save(bad / "a.png")
    (bad / "licenses.csv").write_text("file,license,source,author\nmissing.png,CC-BY-4.0,x,y\n")
    with pytest.raises(UserError, match=r"licenses.csv:2: file 'missing.png'"):
        manifest_rows(bad, validate_images(bad))
