"""A licence-free cartoon character drawn by code: a simple cat in varied poses, colours and backgrounds
(the demo's "character" images), and flat-colour scenes in one look (the demo's "style" images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BACKGROUNDS = [(250, 240, 200), (190, 225, 250), (200, 240, 200), (250, 210, 220), (235, 235, 235)]
FUR = [(110, 125, 150), (95, 110, 135), (130, 140, 160)]  # the character's blue-grey, as in the running example


def draw_cat(seed: int, size: int = 256) -> Image.Image:
    """One picture of the character: head, ears, eyes, whiskers, body and tail at a random pose and place."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), BACKGROUNDS[seed % len(BACKGROUNDS)])
    d = ImageDraw.Draw(img)
    s = size / 256
    d.rectangle([0, int(200 * s), size, size], fill=(120, 190, 110) if seed % 2 else (200, 170, 120))  # ground
    fur = FUR[seed % len(FUR)]
    cx = int((100 + rng.integers(0, 56)) * s)
    cy = int((95 + rng.integers(0, 30)) * s)
    r = int((42 + rng.integers(0, 12)) * s)
    lean = int(rng.integers(-15, 16) * s)
    # body and tail
    d.ellipse([cx - r + lean, cy + r // 2, cx + r + lean, cy + 3 * r], fill=fur, outline=(30, 30, 40), width=3)
    tail_dir = 1 if rng.random() < 0.5 else -1
    d.line([cx + lean + tail_dir * r, cy + 2 * r, cx + lean + tail_dir * 2 * r, cy + r], fill=fur, width=int(10 * s))
    # head with ears
    for ex in (-1, 1):
        d.polygon([(cx + ex * r * 0.9, cy - r * 0.2), (cx + ex * r * 0.75, cy - r * 1.4),
                   (cx + ex * r * 0.2, cy - r * 0.8)],
                  fill=fur, outline=(30, 30, 40))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fur, outline=(30, 30, 40), width=3)
    d.ellipse([cx - r * 0.6, cy - r * 0.05, cx + r * 0.6, cy + r * 0.85], fill=(235, 230, 210))  # muzzle
    look = int(rng.integers(-4, 5) * s)
    for ex in (-1, 1):  # eyes
        x0 = cx + ex * r * 0.4
        d.ellipse([x0 - r * 0.22, cy - r * 0.5, x0 + r * 0.22, cy - r * 0.05], fill=(255, 255, 240), outline=(0, 0, 0))
        d.ellipse([x0 - r * 0.08 + look, cy - r * 0.35, x0 + r * 0.08 + look, cy - r * 0.12], fill=(20, 20, 20))
    d.ellipse([cx - r * 0.1, cy + r * 0.05, cx + r * 0.1, cy + r * 0.2], fill=(40, 20, 20))  # nose
    for ex in (-1, 1):  # whiskers
        for dy in (0.2, 0.35):
            d.line([cx + ex * r * 0.15, cy + r * dy, cx + ex * r * 1.1, cy + r * (dy - 0.1)], fill=(20, 20, 20),
                   width=2)
    return img


def draw_style_scene(seed: int, size: int = 256) -> Image.Image:
    """A scene in one flat-colour, thick-outline look: sky, hills, a house or tree, a sun."""
    rng = np.random.default_rng(10_000 + seed)
    sky = [(255, 200, 120), (140, 200, 255), (255, 160, 180)][seed % 3]
    img = Image.new("RGB", (size, size), sky)
    d = ImageDraw.Draw(img)
    for i in range(3):
        y = int(size * (0.55 + 0.12 * i))
        col = (60 + 40 * i, 150 - 20 * i, 70)
        d.ellipse([int(-size * 0.3 + rng.integers(0, size // 3)), y, int(size * 1.1), y + size], fill=col,
                  outline=(20, 20, 20), width=4)
    sx, sy = int(rng.integers(20, size - 60)), int(rng.integers(10, 60))
    d.ellipse([sx, sy, sx + 45, sy + 45], fill=(255, 230, 60), outline=(20, 20, 20), width=4)
    hx = int(rng.integers(30, size - 100))
    d.rectangle([hx, int(size * 0.45), hx + 70, int(size * 0.65)], fill=(230, 90, 70), outline=(20, 20, 20), width=4)
    d.polygon([(hx - 10, int(size * 0.45)), (hx + 35, int(size * 0.3)), (hx + 80, int(size * 0.45))],
              fill=(120, 60, 40), outline=(20, 20, 20))
    return img


def write_image_set(folder: Path, kind: str, n: int, size: int = 256) -> list[Path]:
    """Write n PNGs plus a licenses.csv (CC0: drawn by this program) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    draw = draw_cat if kind == "character" else draw_style_scene
    paths = []
    for i in range(n):
        p = folder / f"{kind}_{i:02d}.png"
        draw(i, size).save(p)
        paths.append(p)
    lines = ["file,license,source,author"] + [f"{p.name},CC0-1.0,drawn by core/cartoon.py,tomcat-ti demo"
                                              for p in paths]
    (folder / "licenses.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths
