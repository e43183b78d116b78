"""Training and reference images: validation (`check-images`), loading, crop/resize, augmentation, licences.

Validated per file: readable, non-empty, a supported image type, decodes fully (not truncated), not too small,
not too many pixels. A bad file is always reported by name with the reason; nothing is silently skipped
(hidden dot-files and `licenses.csv` are the only files in an image folder that are not images).
"""

from __future__ import annotations

import contextlib
import csv
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.config import StrictConfig, add_options, check, from_args, option
from core.errors import UserError

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
LICENSES_FILE = "licenses.csv"
LICENSE_COLUMNS = ("file", "license", "source", "author")
MIN_SIDE = 64  # smaller pictures carry too little detail to learn from (SD works at 512 px)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # CSV injection (OWASP): cells a spreadsheet evaluates
MAX_PIXELS = 40_000_000  # ~ 6300 x 6300; larger is almost certainly a mistake or a decompression bomb


@dataclass(frozen=True)
class ImageProblem:
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class _Unusable(Exception):
    """Why a file cannot be used as an image (a short reason, no path)."""


@contextlib.contextmanager
def _checked(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """The one place that opens an image: its size is checked before any pixel is decoded, and every way a
    file can fail (missing, unreadable, not an image, a decompression bomb, truncated) becomes `_Unusable`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise _Unusable(f"too many pixels ({w}x{h} > {max_pixels:,}; it may be a decompression bomb)")
                yield img
    except _Unusable:
        raise
    except FileNotFoundError:
        raise _Unusable("missing") from None
    except PermissionError as e:
        raise _Unusable(f"unreadable ({e.strerror})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _Unusable(f"too many pixels (over {max_pixels:,}; it may be a decompression bomb)") from None
    except UnidentifiedImageError:
        raise _Unusable("not an image (cannot identify image file)") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = " ".join(str(e).split())[:120]
        if "truncated" in msg.lower() or isinstance(e, (SyntaxError, ValueError)):
            raise _Unusable(f"truncated or corrupt ({msg})") from None
        raise _Unusable(f"unreadable ({msg})") from None


def check_image(path: Path, min_side: int = MIN_SIDE) -> str | None:
    """The reason `path` cannot be used as a training/reference image, or None if it is fine."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return f"not a supported image type ({path.suffix or 'no extension'}; use {', '.join(SUPPORTED_SUFFIXES)})"
    try:
        if path.stat().st_size == 0:
            return "empty (0 bytes)"
        with _checked(path, MAX_PIXELS) as img:
            w, h = img.size
            img.load()  # decodes everything: catches truncated files
    except OSError as e:
        return f"unreadable ({e.strerror})"
    except _Unusable as e:
        return str(e) + ("; downscale it first" if str(e).startswith("too many") else "")
    if min(w, h) < min_side:
        return f"too small ({w}x{h} px; need at least {min_side} px on the short side)"
    return None


def scan_folder(folder: Path, min_side: int = MIN_SIDE) -> tuple[list[Path], list[ImageProblem]]:
    """(good image paths sorted by name, problems) for every non-hidden file in `folder` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder of images")
    good, bad = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name == LICENSES_FILE or p.is_dir():
            continue
        reason = check_image(p, min_side)
        (bad.append(ImageProblem(p, reason)) if reason else good.append(p))
    return good, bad


def validate_images(folder: Path, min_side: int = MIN_SIDE) -> list[Path]:
    """The folder's images, or UserError listing every bad file (one line each) or saying the folder is empty."""
    good, bad = scan_folder(folder, min_side)
    if bad:
        lines = "\n".join(f"  {b}" for b in bad)
        raise UserError(f"{folder}: {len(bad)} bad file(s); fix or remove them (nothing was changed):\n{lines}")
    if not good:
        raise UserError(f"{folder}: no images ({', '.join(SUPPORTED_SUFFIXES)})")
    return good


@contextlib.contextmanager
def opened(path: Path, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """`with opened(p) as img:` a PIL image whose size was checked before any pixel is decoded. Not an image,
    damaged, over `max_pixels` (a decompression bomb: a tiny file that decodes to gigabytes) or unreadable is a
    one-line UserError naming the file. Use it for every image read from a run (generated images, grids)."""
    path = Path(path)
    try:
        with _checked(path, max_pixels) as img:
            yield img
    except _Unusable as e:
        fix = "regenerate it or restore the file" if str(e) == "missing" else "delete or regenerate it"
        raise UserError(f"{path}: {e}; {fix}") from None


def load_rgb(path: Path) -> Image.Image:
    """RGB image with EXIF orientation applied; first frame of an animation; transparency composited on white.
    Checked by `opened` (UserError for a bad or oversized file)."""
    with opened(path) as img:
        img.seek(0)
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(bg, img)
        return img.convert("RGB")


def load_image(path: Path) -> Image.Image:
    """`load_rgb` for a run's generated (or a reference) image; any failure is a one-line UserError naming the
    file, which says that the work done so far is kept."""
    try:
        return load_rgb(path)
    except UserError as e:
        raise UserError(f"{e} (the results so far are saved)") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for damaged files
        raise UserError(f"{path}: cannot be read as an image ({type(e).__name__}: {e}); regenerate or delete it "
                        "(the results so far are saved)") from e


def run_image_rows(run) -> list[dict[str, str]]:
    """The images a stage works on: images.csv rows of `run` (a core.runfolder.Run), one per path (a path listed
    twice: its later line describes the file on disk), each inside the run and present. No images, or missing
    files, is a one-line UserError with the command that makes them."""
    rows = run.read_images()
    if not rows:
        raise UserError(f"{run.path}: no generated images (images.csv is empty or missing); run "
                        "`python -m core generate` first")
    by_path: dict[str, dict[str, str]] = {}
    for r in rows:  # append-only index: a path written twice means the later line describes the file on disk
        by_path.pop(r["path"], None)
        by_path[r["path"]] = r
    rows = list(by_path.values())
    for r in rows:  # every path must stay inside the run (no absolute paths, `..` or symlinks out of it)
        run.resolve_inside(r["path"], what="image")
    missing = [r["path"] for r in rows if not (run.path / r["path"]).is_file()]
    if missing:
        shown = "\n".join(f"  {run.path / p}" for p in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise UserError(f"{run.path}: {len(missing)} image(s) listed in images.csv are missing; regenerate them "
                        f"or restore the files:\n{shown}{more}")
    return rows


def center_square(img: Image.Image, size: int) -> Image.Image:
    """Crop to a centred square (the aspect SD trains on) and resize to `size` px (bicubic)."""
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)


def to_array(img: Image.Image) -> np.ndarray:
    """uint8 RGB -> float32 HxWx3 in [-1, 1] (SD's VAE input range)."""
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


def augment(square: Image.Image, resolution: int, rng: np.random.Generator,
            min_area: float = 0.8, flip_p: float = 0.5) -> np.ndarray:
    """Random crop over [min_area, 1] of the area, resized to `resolution`, random horizontal flip -> [-1, 1].

    As in the reference recipe (diffusers' textual inversion: random crop + flip); `square` is the centred
    square crop of the picture, kept a little larger than `resolution` so crops stay sharp."""
    s = square.size[0]
    area = rng.uniform(min_area, 1.0)
    side = max(1, int(round(s * np.sqrt(area))))
    x = int(rng.integers(0, s - side + 1))
    y = int(rng.integers(0, s - side + 1))
    crop = square.crop((x, y, x + side, y + side)).resize((resolution, resolution), Image.Resampling.BICUBIC)
    if rng.random() < flip_p:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_array(crop)


def read_licenses(folder: Path, images: list[Path]) -> dict[str, dict[str, str]]:
    """Optional `licenses.csv` beside the images: file,license,source,author. Errors name the line."""
    path = Path(folder) / LICENSES_FILE
    if not path.exists():
        return {}
    names = {p.name for p in images}
    out: dict[str, dict[str, str]] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in LICENSE_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; the header must be "
                        f"{','.join(LICENSE_COLUMNS)}")
    first_line: dict[str, int] = {}
    for i, row in enumerate(reader, start=2):
        name = (row.get("file") or "").strip()
        if name not in names:
            raise UserError(f"{path}:{i}: file {name!r} is not an image in {folder}; fix the name or the line")
        if name in first_line:
            raise UserError(f"{path}:{i}: {name!r} is listed again (first on line {first_line[name]}); keep one line "
                            "per image")
        first_line[name] = i
        out[name] = {k: (row.get(k) or "").strip() for k in ("license", "source", "author")}
        for k, v in out[name].items():
            if v[:1] in FORMULA_STARTS and v != "-":
                raise UserError(f"{path}:{i}: {k} {v[:30]!r} starts with {v[0]!r}, which spreadsheets run as a "
                                "formula; remove that character")
    return out


def manifest_rows(folder: Path, images: list[Path]) -> list[dict]:
    """Dataset manifest rows (core.runfolder.MANIFEST_COLUMNS) for the run folder."""
    from core.runfolder import sha256_file

    lic = read_licenses(folder, images)
    rows = []
    for p in images:
        with Image.open(p) as img:
            w, h = ImageOps.exif_transpose(img).size
        info = lic.get(p.name, {})
        rows.append({"file": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size, "width": w, "height": h,
                     "license": info.get("license", ""), "source": info.get("source", ""),
                     "author": info.get("author", "")})
    return rows


# ------------------------------------------------------------------------------------------------------ CLI
@dataclass
class CheckImagesConfig(StrictConfig):
    """`check-images` options besides the folder."""

    min_size: int = option(MIN_SIDE, "smallest allowed short side in px")

    def validate(self) -> None:
        check(self.min_size >= 1, "min_size", self.min_size, "must be at least 1")


def add_arguments(parser, command: str) -> None:
    parser.add_argument("folder", type=Path, help="folder of training or reference images")
    add_options(parser, CheckImagesConfig)


def run(args) -> int:
    good, bad = scan_folder(args.folder, from_args(CheckImagesConfig, args).min_size)
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} bad file(s), {len(good)} good image(s) in {args.folder}")
        return 1
    if not good:
        print(f"{args.folder}: no images ({', '.join(SUPPORTED_SUFFIXES)})")
        return 1
    read_licenses(args.folder, good)
    print(f"{len(good)} image(s) OK in {args.folder}")
    return 0
