"""Prompt templates: loading `prompts/*.txt` (one template a line, `{}` marks the token) and filling them."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
PROPERTY_FILES = {"object": PROMPTS_DIR / "object.txt", "style": PROMPTS_DIR / "style.txt"}
EVAL_FILES = {"object": PROMPTS_DIR / "eval" / "character.txt", "style": PROMPTS_DIR / "eval" / "style.txt"}
MISUSE_FILE = PROMPTS_DIR / "eval" / "misuse.txt"  # misuse probes, grouped by `# category: NAME` lines
IDENTITY_LABELS_FILE = PROMPTS_DIR / "eval" / "identity-labels.txt"  # zero-shot distractors (issue 21)
LEAKAGE_FILE = PROMPTS_DIR / "eval" / "leakage.txt"  # two-subject prompts under `# subject: SECOND` lines
_EXAMPLE = {"category": "advertising", "subject": "a dog"}


def load_templates(path: str | Path) -> list[str]:
    """Templates from a file. Blank lines and '#' comments are skipped; every other line needs exactly one {}."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a prompt file; pass a .txt file with one template a line")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: prompt file not found") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the prompt file ({e.strerror})") from None
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        n = line.count("{}")
        if n != 1:
            raise UserError(
                f"{path}:{i}: {line!r} has {n} '{{}}' markers; each template needs exactly one, where the token goes"
            )
        out.append(line)
    if not out:
        raise UserError(f"{path}: no templates (one per line, with {{}} where the token goes)")
    return out


def load_categories(path: str | Path, key: str = "category") -> dict[str, str]:
    """{template: category} for a prompt file whose templates are grouped under `# category: NAME` comment lines
    (a template belongs to the nearest such line above it). A template above every category line is an error.
    `key` names the comment (`# subject: a dog` in prompts/eval/leakage.txt)."""
    path = Path(path)
    templates = set(load_templates(path))  # the same validation (and errors) as for any prompt file
    marker = f"# {key}:"
    out: dict[str, str] = {}
    category = ""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if line.lower().startswith(marker):
            category = line[len(marker):].strip()
            if not category:
                example = _EXAMPLE.get(key, "NAME")
                raise UserError(f"{path}:{i}: '{marker}' without a name; write e.g. '{marker} {example}'")
        elif line in templates:
            if not category:
                raise UserError(f"{path}:{i}: {line!r} comes before any '{marker} NAME' line; put one above it")
            out[line] = category
    return out


def load_labels(path: str | Path) -> list[str]:
    """Zero-shot labels: one a line; blank lines and '#' comments skipped; a label may not hold '{}'."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the label file ({e})") from None
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{}" in line:
            raise UserError(f"{path}:{i}: {line!r}: a label is plain text (no '{{}}'); it goes into 'a picture of ...'")
        if line in out:
            raise UserError(f"{path}:{i}: {line!r} is listed twice")
        out.append(line)
    if not out:
        raise UserError(f"{path}: no labels (one a line)")
    return out


def fill(template: str, token: str) -> str:
    return template.replace("{}", token)


def strip_token(template: str) -> str:
    """The prompt with the placeholder removed (CLIP-T text), whitespace and dangling punctuation tidied."""
    text = template.replace("{}", " ")
    text = " ".join(text.split())
    text = text.replace(" ,", ",").replace(" .", ".").strip(" ,")
    return text
