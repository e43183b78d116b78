"""The user's model-card overrides (RUN/card.yaml): what the card *declares* (owner, intended use, ethics
checklist, environment figures), validated where it is read; unknown keys and bad values are a UserError naming
the key and the allowed values."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping

from core.errors import UserError
from core.runfolder import Run

OWNER_NOT_STATED = "not stated - fill in"

# ethics checklist: key -> title. Statuses a user may give each item.
ETHICS_ITEMS = {
    "copyright_and_trademark": "Copyright and trademark",
    "consent": "Consent of the people or works depicted",
    "misuse": "Misuse",
    "bias": "Bias",
    "ai_disclosure": "Disclosure of AI generation",
}
ETHICS_STATUSES = ("open", "addressed", "not-applicable")

# overrides file: key -> what it holds (also the comments of `overrides_template`)
OVERRIDE_TEXT_KEYS = {
    "subject": "what the token stands for, e.g. 'Tom, the cat from the cartoon Tom and Jerry'",
    # issue 22 point 7: no example owner (the tool never guesses one, and an example would be a guess)
    "owner": "the rights holder as named in the official copyright / trademark notice (the (c) / TM line) of the "
             "character or works depicted; never guessed by the tool",
    "base_model_license": "licence of the base checkpoint, when run.json does not record it (weights from a file "
                          "other than KerasCV's SD v1.4)",
    "developers": "who trained this embedding",
    "intended_use": "the direct use you intend (replaces the default text)",
    "downstream_use": "downstream use, e.g. in an app (replaces the default text)",
    "out_of_scope_use": "uses you rule out, added to the licence's restrictions",
    "notes": "anything else readers should know",
    "model_card_authors": "who wrote this card",
    "contact": "how to reach the authors",
    "repo": "https:// address of the code or the published embedding",
}
OVERRIDE_ENV_KEYS = {
    "power_watts": "average power of the devices used, in watts (replaces the per-device assumption)",
    "carbon_intensity_g_per_kwh": "grid carbon intensity where it ran, g CO2eq per kWh",
    "pue": "data-centre power usage effectiveness (1.0 = no overhead)",
    "cloud_provider": "e.g. 'none (local workstation)'",
    "region": "compute region / country",
}
OVERRIDE_KEYS = tuple(OVERRIDE_TEXT_KEYS) + ("environment", "ethics")


def load_overrides(run: Run, path: str | Path | None = None) -> dict:
    """The validated overrides for `run` (default RUN/card.yaml; JSON is also YAML). {} when there is no file.

    Unknown keys and bad statuses raise UserError naming the key and the allowed values.
    """
    path = Path(path) if path is not None else run.card_overrides_path
    if not path.exists():
        if path != run.card_overrides_path:
            raise UserError(f"{path}: overrides file not found")
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid YAML/JSON ({str(error).splitlines()[0]}); fix or delete it") from None
    if data is None:
        return {}
    return validate_overrides(data, source=str(path))


def validate_overrides(data: Any, source: str = "overrides") -> dict:
    """Check an overrides mapping; returns a normalised copy (empty strings and nulls dropped)."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: must be a mapping of keys to values (allowed keys: {', '.join(OVERRIDE_KEYS)})")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in OVERRIDE_KEYS:
            raise UserError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(OVERRIDE_KEYS)}")
        if key in OVERRIDE_TEXT_KEYS:
            text = _override_text(value, f"{source}: {key}")
            if text:
                out[key] = text
        elif key == "environment":
            out[key] = _validate_environment(value, source)
        elif key == "ethics":
            out[key] = _validate_ethics(value, source)
    if "repo" in out and not re.match(r"^https?://", out["repo"]):
        raise UserError(f"{source}: repo {out['repo']!r} must be an http:// or https:// address")
    return out


def _override_text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: expected text, got {type(value).__name__}")
    return str(value).strip()


def _items(value: Any, source: str, name: str, allowed, kind: str, noun: str) -> list[tuple[str, Any]]:
    """The entries of the mapping override `name`, each key one of `allowed` (None: no entries)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: {name} must be {kind} (allowed {noun}: {', '.join(allowed)})")
    for key in value:
        if key not in allowed:
            raise UserError(f"{source}: unknown key '{name}.{key}'; allowed {noun}: {', '.join(allowed)}")
    return list(value.items())


def _validate_environment(value: Any, source: str) -> dict:
    env: dict[str, Any] = {}
    for key, setting in _items(value, source, "environment", OVERRIDE_ENV_KEYS, "a mapping", "keys"):
        if setting is None or setting == "":
            continue
        if key in ("cloud_provider", "region"):
            env[key] = _override_text(setting, f"{source}: environment.{key}")
            continue
        if isinstance(setting, bool) or not isinstance(setting, (int, float)) or not math.isfinite(setting) \
                or setting <= 0:
            raise UserError(f"{source}: environment.{key} must be a positive number, got {setting!r}")
        if key == "pue" and setting < 1:
            raise UserError(f"{source}: environment.pue must be >= 1.0, got {setting!r}")
        env[key] = float(setting)
    return env


def _validate_ethics(value: Any, source: str) -> dict:
    out: dict[str, dict] = {}
    for item, entry in _items(value, source, "ethics", ETHICS_ITEMS, "a mapping of items", "items"):
        if isinstance(entry, str):  # shorthand: `bias: addressed`
            entry = {"status": entry}
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise UserError(f"{source}: ethics.{item} must be a mapping with 'status' and 'notes'")
        for key in entry:
            if key not in ("status", "notes"):
                raise UserError(f"{source}: unknown key 'ethics.{item}.{key}'; allowed keys: status, notes")
        status = entry.get("status", "open")
        if status not in ETHICS_STATUSES:
            raise UserError(f"{source}: ethics.{item}.status {status!r} is not allowed; "
                            f"allowed values: {', '.join(ETHICS_STATUSES)}")
        out[item] = {"status": status, "notes": _override_text(entry.get("notes"), f"{source}: ethics.{item}.notes")}
    return out


def overrides_template(run: Run | None = None) -> str:
    """A commented card.yaml for the user to fill in (all values empty, every checklist item open)."""
    name = run.name if run is not None else "RUN"
    lines = [
        f"# Model-card overrides for run {name}. Fill in, then: python -m core card {name if run else 'RUN'}",
        "# Every key is optional; unknown keys are an error. Empty values are ignored.",
    ]
    for key, help_text in OVERRIDE_TEXT_KEYS.items():
        lines.append(f'{key}: ""  # {help_text}')
    lines.append("environment:  # for the emissions estimate; empty = the documented defaults")
    for key, help_text in OVERRIDE_ENV_KEYS.items():
        lines.append(f"  {key}:   # {help_text}")
    lines.append(f"ethics:  # status: {' | '.join(ETHICS_STATUSES)}; say what you did in notes")
    for key, title in ETHICS_ITEMS.items():
        lines.append(f'  {key}: {{status: open, notes: ""}}  # {title}')
    return "\n".join(lines) + "\n"
