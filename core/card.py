"""Model card: a Hugging Face model card for one run (Markdown, HTML, PDF, JSON), built from the run folder itself.

The card follows the layout of the Hugging Face model-card template (itself after Mitchell et al. 2019, "Model
Cards for Model Reporting"): model details, uses, out-of-scope use, bias/risks/limitations, how to get started,
training details, evaluation, environmental impact, technical specifications, citation. What is *measured* comes
from the run (CLIP tables with confidence intervals, the character-versus-style comparison, how far the token
moved, the best and worst scored images); what is *declared* comes from the user's overrides file
(`Run.card_overrides_path`, RUN/card.yaml: owner, intended use, ethics checklist); nothing is guessed.

One document model feeds every format: `build_card` turns the run into a `Card` (sections made of typed blocks
holding plain text), and one renderer per format escapes as that format needs. User-supplied strings (prompts,
file names, overrides, the token) are therefore never pasted into HTML or Markdown unescaped.

    python -m core card RUN [--compare RUN_B] [--format md,html,pdf,json] [--out reports/NAME/]

Python API (the dashboard's export buttons use it, so they give the same bytes as the CLI):
    build_card(run, compare_run=None, overrides_path=None) -> Card
    render(run_or_card, fmt, compare_run=None) -> bytes          # for st.download_button
    write_card(run, out_dir, formats=FORMATS, compare_run=None) -> dict[str, Path]
    load_overrides(run, path=None) -> dict                       # validated; UserError names a bad key
    overrides_template(run) -> str                               # a commented card.yaml to fill in

The Hub is never contacted: huggingface_hub's `ModelCard` is used only to assemble and parse the Markdown
(no `validate()`, no `push_to_hub`). Outputs are deterministic for a given run state (dates come from run.json,
not the clock), so the CLI and the dashboard produce identical files.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html as _html
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

from core.errors import UserError
from core.runfolder import PIPELINE_CHECK_LABEL, Run, atomic_write_bytes

# ------------------------------------------------------------------------------------------------ constants
FORMATS = ("md", "html", "pdf", "json")
FILE_NAMES = {"md": "README.md", "html": "card.html", "pdf": "card.pdf", "json": "card.json"}
MIME_TYPES = {"md": "text/markdown", "html": "text/html", "pdf": "application/pdf", "json": "application/json"}
IMAGES_SUBDIR = "images"
FIGURE_NAMES = frozenset({f"{k}-{m}.png" for k in ("best", "worst") for m in ("clipi", "clipt")}
                         | {"comparison-plane.png"})  # every figure a card can have (write_card removes stale ones)
JSON_SCHEMA = "tomcat-ti/model-card/1"

BASE_MODEL = "CompVis/stable-diffusion-v1-4"
BASE_MODEL_URL = "https://huggingface.co/CompVis/stable-diffusion-v1-4"
LICENSE_ID = "creativeml-openrail-m"
LICENSE_NAME = "CreativeML Open RAIL-M"
LICENSE_URL = "https://huggingface.co/spaces/CompVis/stable-diffusion-license"
LIBRARY_NAME = "keras-cv"

# Attachment A ("Use Restrictions") of the CreativeML Open RAIL-M licence, dated August 22, 2022, reproduced
# verbatim: paragraph 5 and Attachment A require derivatives to carry these restrictions.
LICENSE_USE_RESTRICTIONS = (
    "In any way that violates any applicable national, federal, state, local or international law or regulation;",
    "For the purpose of exploiting, harming or attempting to exploit or harm minors in any way;",
    "To generate or disseminate verifiably false information and/or content with the purpose of harming others;",
    "To generate or disseminate personal identifiable information that can be used to harm an individual;",
    "To defame, disparage or otherwise harass others;",
    "For fully automated decision making that adversely impacts an individual’s legal rights or otherwise "
    "creates or modifies a binding, enforceable obligation;",
    "For any use intended to or which has the effect of discriminating against or harming individuals or groups "
    "based on online or offline social behavior or known or predicted personal or personality characteristics;",
    "To exploit any of the vulnerabilities of a specific group of persons based on their age, social, physical or "
    "mental characteristics, in order to materially distort the behavior of a person pertaining to that group in "
    "a manner that causes or is likely to cause that person or another person physical or psychological harm;",
    "For any use intended to or which has the effect of discriminating against individuals or groups based on "
    "legally protected characteristics or categories;",
    "To provide medical advice and medical results interpretation;",
    "To generate or disseminate information for the purpose to be used for administration of justice, law "
    "enforcement, immigration or asylum processes, such as predicting an individual will commit fraud/crime "
    "commitment (e.g. by text profiling, drawing causal relationships between assertions made in documents, "
    "indiscriminate and arbitrarily-targeted use).",
)

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
    "owner": "who holds the copyright/trademark of the character or works depicted "
             "(for Tom and Jerry: Warner Bros.); never guessed by the tool",
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

# Environmental-impact assumptions (ML CO2 Impact method, Lacoste et al. 2019): energy = power x time x PUE,
# emissions = energy x grid carbon intensity. Power is the board/TDP figure of the device type (vendor spec
# sheets), an upper bound on the average draw.
DEVICE_POWER_W = (  # (substring of the device description, lower-case) -> watts; first match wins
    ("h200", 700.0), ("h100", 700.0), ("a100", 400.0), ("a10g", 150.0), ("a10", 150.0), ("l40", 300.0),
    ("l4", 72.0), ("v100", 300.0), ("t4", 70.0), ("p100", 250.0), ("4090", 450.0), ("3090", 350.0),
    ("tpu", 250.0), ("m1", 20.0), ("m2", 22.0), ("m3", 22.0),
)
DEFAULT_GPU_W = 300.0   # an accelerator not in the table above
DEFAULT_CPU_W = 100.0   # a CPU-only run: one desktop/server CPU package
DEFAULT_CARBON_G_PER_KWH = 475.0   # world-average grid intensity, IEA (2019), the figure the ML CO2 calculator cites
DEFAULT_PUE = 1.0

SUCCESS_FAILURE_K = 4   # images in each success / failure grid
THUMB_PX = 160

REQUIRED_SECTIONS = (
    "Model Details", "Uses", "Direct Use", "Downstream Use", "Out-of-Scope Use and Misuse",
    "License and Use Restrictions", "Bias, Risks, and Limitations", "How to Get Started with the Model",
    "Training Details", "Training Data", "Evaluation", "Testing Data, Factors & Metrics", "Results",
    "Environmental Impact", "Technical Specifications", "Ethics Checklist", "Citation",
)


# ------------------------------------------------------------------------------------------- document model
@dataclass(frozen=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True)
class Bold:
    text: str


@dataclass(frozen=True)
class Mono:
    text: str


Inline = Union[str, Link, Bold, Mono]


@dataclass
class Para:
    parts: list
    kind: str = "para"


@dataclass
class Bullets:
    items: list  # list[list[Inline]]
    kind: str = "bullets"


@dataclass
class Table:
    columns: list
    rows: list  # list[list[str]]
    kind: str = "table"


@dataclass
class CodeBlock:
    lang: str
    text: str
    kind: str = "code"


@dataclass
class Figure:
    name: str      # file name under images/
    caption: str
    kind: str = "figure"


@dataclass
class Callout:
    """A warning or note shown in a box (blockquote in Markdown)."""
    parts: list
    level: str = "warning"  # warning | note
    kind: str = "callout"


@dataclass
class Section:
    id: str
    title: str
    level: int          # 2 = ##, 3 = ###, 4 = ####
    blocks: list = field(default_factory=list)


@dataclass
class Card:
    """Everything one model card says, independent of the output format."""
    run_name: str
    title: str
    summary: str
    pipeline_check: bool
    metadata: dict            # YAML front matter (ModelCardData.to_dict())
    sections: list            # list[Section], in order
    figures: dict             # file name -> PNG bytes
    warnings: list            # plain-text warnings, also shown in the card
    data: dict                # everything else for JSON: provenance, tables, environment, overrides, ...
    date: str                 # ISO date taken from run.json (not the clock: same inputs, same bytes)

    def section(self, title: str) -> Section:
        for s in self.sections:
            if s.title == title:
                return s
        raise KeyError(title)

    def model_card(self):
        """The huggingface_hub ModelCard (YAML metadata + Markdown body). Offline: never validated online."""
        from huggingface_hub import ModelCard

        return ModelCard(_render_md_content(self))


# ------------------------------------------------------------------------------------------------ overrides
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
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]}); fix or delete it") from None
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


def _validate_environment(value: Any, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: environment must be a mapping (allowed keys: {', '.join(OVERRIDE_ENV_KEYS)})")
    env: dict[str, Any] = {}
    for k, v in value.items():
        if k not in OVERRIDE_ENV_KEYS:
            raise UserError(f"{source}: unknown key 'environment.{k}'; allowed keys: {', '.join(OVERRIDE_ENV_KEYS)}")
        if v is None or v == "":
            continue
        if k in ("cloud_provider", "region"):
            env[k] = _override_text(v, f"{source}: environment.{k}")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise UserError(f"{source}: environment.{k} must be a positive number, got {v!r}")
        if k == "pue" and v < 1:
            raise UserError(f"{source}: environment.pue must be >= 1.0, got {v!r}")
        env[k] = float(v)
    return env


def _validate_ethics(value: Any, source: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserError(f"{source}: ethics must be a mapping of items (allowed items: {', '.join(ETHICS_ITEMS)})")
    out: dict[str, dict] = {}
    for item, entry in value.items():
        if item not in ETHICS_ITEMS:
            raise UserError(f"{source}: unknown key 'ethics.{item}'; allowed items: {', '.join(ETHICS_ITEMS)}")
        if isinstance(entry, str):  # shorthand: `bias: addressed`
            entry = {"status": entry}
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise UserError(f"{source}: ethics.{item} must be a mapping with 'status' and 'notes'")
        for k in entry:
            if k not in ("status", "notes"):
                raise UserError(f"{source}: unknown key 'ethics.{item}.{k}'; allowed keys: status, notes")
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
    for k, help_text in OVERRIDE_TEXT_KEYS.items():
        lines.append(f'{k}: ""  # {help_text}')
    lines.append("environment:  # for the emissions estimate; empty = the documented defaults")
    for k, help_text in OVERRIDE_ENV_KEYS.items():
        lines.append(f"  {k}:   # {help_text}")
    lines.append(f"ethics:  # status: {' | '.join(ETHICS_STATUSES)}; say what you did in notes")
    for k, title in ETHICS_ITEMS.items():
        lines.append(f'  {k}: {{status: open, notes: ""}}  # {title}')
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- measurements
def _f(x: Any, nd: int = 3) -> str:
    """A number for a table: fixed decimals, '-' when missing or not finite."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-" if x in (None, "") else str(x)
    if not math.isfinite(v):
        return "-"
    if v == int(v) and abs(v) < 1e9 and nd == 0:
        return str(int(v))
    return f"{v:.{nd}f}"


def _records(obj: Any) -> list[dict]:
    """Rows from whatever a summary returns: a list of dicts/dataclasses, a pandas DataFrame, or a dict of dicts."""
    if obj is None:
        return []
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return [dict(r) for r in obj.reset_index(drop=obj.index.name is None).to_dict("records")]
    if isinstance(obj, Mapping):
        out = []
        for k, v in obj.items():
            row = {"key": k}
            row.update(_records([v])[0] if not isinstance(v, Mapping) else dict(v))
            out.append(row)
        return out
    rows = []
    for r in obj:
        if dataclasses.is_dataclass(r):
            rows.append(dataclasses.asdict(r))
        elif isinstance(r, Mapping):
            rows.append(dict(r))
        elif hasattr(r, "_asdict"):
            rows.append(dict(r._asdict()))
        else:
            rows.append({"value": r})
    return rows


def _flatten(row: Mapping) -> dict:
    """{'clip_i': {'mean': .5, 'lo': .4}} -> {'clip_i_mean': .5, 'clip_i_lo': .4}."""
    out = {}
    for k, v in row.items():
        if isinstance(v, Mapping):
            for k2, v2 in _flatten(v).items():
                out[f"{k}_{k2}"] = v2
        elif dataclasses.is_dataclass(v):
            for k2, v2 in _flatten(dataclasses.asdict(v)).items():
                out[f"{k}_{k2}"] = v2
        elif isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            out[f"{k}_lo"], out[f"{k}_hi"] = v
        else:
            out[k] = v
    return out


def _table_from_records(records: list[dict]) -> Table:
    flat = [_flatten(r) for r in records]
    columns: list[str] = []
    for r in flat:
        for k in r:
            if k not in columns:
                columns.append(k)
    rows = []
    for r in flat:
        row = []
        for c in columns:
            v = r.get(c, "")
            if isinstance(v, bool) or v is None:
                row.append("" if v is None else str(v))
            elif isinstance(v, int) or (isinstance(v, float) and v.is_integer() and c in ("step", "n", "seed", "count")):
                row.append(str(int(v)))
            elif isinstance(v, float):
                row.append(_f(v))
            else:
                row.append(str(v))
        rows.append(row)
    return Table(columns, rows)


def _score_table(records: list[dict], keys: Sequence[str]) -> Table:
    """summarize_by_* rows -> 'mean [lo, hi]' columns; falls back to every column if the layout is unexpected."""
    cols = {f"{m}_{x}" for m in ("clip_i", "clip_t") for x in ("mean", "lo", "hi")}
    if not records or not all(cols <= set(r) for r in records):
        return _table_from_records(records)
    rows = []
    for r in records:
        row = [str(int(r[k])) if k == "step" else str(r[k]) for k in keys if k in r]
        row.append(str(int(r["n"])) if "n" in r else "")
        for m in ("clip_i", "clip_t"):
            row += [_f(r[f"{m}_mean"]), f"[{_f(r[f'{m}_lo'])}, {_f(r[f'{m}_hi'])}]"]
        rows.append(row)
    return Table([k for k in keys if k in records[0]] + ["n", "CLIP-I mean", "CLIP-I 95% CI", "CLIP-T mean",
                                                         "CLIP-T 95% CI"], rows)


def _scores_unmeaningful(run: Run, rows: list[dict]) -> str:
    """Why the CLIP numbers carry no information about quality ('' when they do)."""
    if run.is_pipeline_check:
        return "the diffusion model had random weights"
    meta = run.read_scores_meta() or {}
    if meta.get("pipeline_check"):
        return "; ".join(meta.get("pipeline_check_reasons") or []) or "scores.json marks them as a pipeline check"
    clip = meta.get("clip") or {}
    if str(clip.get("source", "")).lower() == "random" or str(clip.get("pretrained", "")).lower() == "random" or \
            any(str(r.get("clip_weights", "")).lower() == "random" for r in rows):
        return "the CLIP scorer had random weights"
    return ""


def _score_summaries(run: Run, rows: list[dict]) -> dict:
    """CLIP-I / CLIP-T summaries with confidence intervals, from core.score (the one place they are computed)."""
    out: dict[str, Any] = {"available": False}
    if not rows:
        out["reason"] = f"no scores yet: run `python -m core score {_run_ref(run)} --references DIR`"
        return out
    try:
        from core import score as score_mod
        by_step_fn = score_mod.summarize_by_step
        by_prompt_fn = getattr(score_mod, "summarize_by_prompt", None)
    except (ImportError, AttributeError) as e:
        out["reason"] = f"score summaries unavailable (core.score.summarize_by_step: {e})"
        return out
    out["by_step"] = _records(by_step_fn(rows))
    out["by_prompt"] = _records(by_prompt_fn(rows)) if by_prompt_fn else []
    out["available"] = True
    return out


def _embedding_movement(run: Run) -> dict:
    """How far the learned vectors moved from the initializer (step 0), per saved checkpoint."""
    import numpy as np

    steps = run.embedding_steps()
    out: dict[str, Any] = {"steps": steps, "rows": [], "neighbors": {}}
    if not steps:
        return out
    if steps[0] != 0:  # e.g. an imported embedding: no initializer saved, so no movement to measure
        out["error"] = (f"no step-0 (initializer) embedding in {run.embeddings_dir.name}/ (have steps "
                        f"{', '.join(map(str, steps))}): how far the token moved cannot be measured")
        return out
    token = run.token
    first = run.load_embedding(steps[0])
    if token not in first:
        out["error"] = f"{run.embedding_path(steps[0]).name}: no tensor named {token!r} (have: {', '.join(first)})"
        return out
    v0 = np.asarray(first[token], dtype=np.float64)
    for s in steps:
        v = np.asarray(run.load_embedding(s).get(token, np.full_like(v0, np.nan)), dtype=np.float64)
        for i in range(v0.shape[0]):
            a, b = v0[i], v[i]
            cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) if np.linalg.norm(a) and np.linalg.norm(b) else float("nan")
            out["rows"].append({"step": s, "vector": i, "l2_from_init": float(np.linalg.norm(b - a)),
                                "cosine_to_init": cos, "norm": float(np.linalg.norm(b)),
                                "init_norm": float(np.linalg.norm(a))})
    # nearest vocabulary tokens at the first and last step that have neighbours
    neighbors = run.read_neighbors()
    by_step: dict[int, list[dict]] = {}
    for r in neighbors:
        try:
            by_step.setdefault(int(r["step"]), []).append(r)
        except (KeyError, ValueError):
            continue
    if by_step:
        for s in sorted({min(by_step), max(by_step)}):
            rs = sorted(by_step[s], key=lambda r: (int(r.get("vector") or 0), int(r.get("rank") or 0)))
            out["neighbors"][s] = [{"vector": r.get("vector"), "rank": r.get("rank"), "token": r.get("token"),
                                    "cosine": r.get("cosine"), "distance_from_init": r.get("distance_from_init")}
                                   for r in rs[:5]]
    return out


def _environment(run: Run, meta: Mapping, env_over: Mapping) -> dict:
    """Energy and emissions estimate from the run's own timing and hardware, with every assumption shown."""
    timings = meta.get("timings") or {}
    seconds = timings.get("seconds_total")
    seconds_source = "run.json timings.seconds_total (training only)"
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        metrics = run.read_metrics()
        seconds = max((m["seconds"] for m in metrics), default=None)
        seconds_source = "last `seconds` in metrics.csv (training only; run.json has no timings.seconds_total)"
    training_seconds = seconds
    generation_seconds = 0.0
    for r in run.read_images():  # images.csv records each image's share of its sampler call
        try:
            generation_seconds += max(float(r.get("seconds") or 0.0), 0.0)
        except ValueError:
            continue
    if generation_seconds > 0:
        seconds = (seconds if isinstance(seconds, (int, float)) and seconds > 0 else 0.0) + generation_seconds
        seconds_source = (seconds_source.replace(" (training only", " (training").replace("training only; ", "")
                          + f" + generation {generation_seconds:.0f} s (sum of images.csv `seconds`)")
    hardware = meta.get("hardware") or {}
    devices = hardware.get("devices") or []
    if isinstance(devices, (str, Mapping)):
        devices = [devices]
    names = []
    for d in devices:
        if isinstance(d, Mapping):
            names.append(" ".join(str(d.get(k, "")) for k in ("device_type", "type", "name", "model") if d.get(k)).strip()
                         or json.dumps(d, sort_keys=True))
        else:
            names.append(str(d))
    gpus = [n for n in names if "cpu" not in n.lower()]  # TF "CPU:...", JAX "TFRT_CPU_0" / "CpuDevice"
    counted = gpus or names or ["CPU (assumed: run.json lists no devices)"]
    per_device = []
    for n in counted:
        low = n.lower()
        w = next((w for sub, w in DEVICE_POWER_W if sub in low), None)
        basis = "board power / TDP of this device type"
        if w is None and "cpu" in low:
            w, basis = DEFAULT_CPU_W, "generic CPU package power (CPU-only run)"
        elif w is None:
            w, basis = DEFAULT_GPU_W, "generic accelerator (model not recorded in run.json)"
        per_device.append({"device": n, "watts": w, "basis": basis})
    power_source = "per-device board power / TDP assumption (table in core/card.py)"
    power = sum(d["watts"] for d in per_device)
    if "power_watts" in env_over:
        power, power_source = env_over["power_watts"], "overrides: environment.power_watts"
    intensity = env_over.get("carbon_intensity_g_per_kwh", DEFAULT_CARBON_G_PER_KWH)
    intensity_source = ("overrides: environment.carbon_intensity_g_per_kwh" if "carbon_intensity_g_per_kwh" in env_over
                        else "world average, IEA 2019 (set environment.carbon_intensity_g_per_kwh for your grid)")
    pue = env_over.get("pue", DEFAULT_PUE)
    out = {
        "method": "ML CO2 Impact (Lacoste et al. 2019): energy_kWh = power_W x hours x PUE / 1000; "
                  "CO2eq_g = energy_kWh x grid_intensity_g_per_kWh",
        "platform": hardware.get("platform", "not recorded"),
        "devices": names,
        "devices_counted": per_device,
        "power_watts": power, "power_source": power_source,
        "seconds": seconds, "seconds_source": seconds_source,
        "training_seconds": training_seconds, "generation_seconds": generation_seconds,
        "pue": pue, "carbon_intensity_g_per_kwh": intensity, "carbon_intensity_source": intensity_source,
        "cloud_provider": env_over.get("cloud_provider", "not stated"),
        "region": env_over.get("region", "not stated"),
        "energy_kwh": None, "co2eq_g": None,
    }
    if isinstance(seconds, (int, float)) and seconds > 0:
        hours = seconds / 3600.0
        out["hours"] = hours
        out["energy_kwh"] = power * hours * pue / 1000.0
        out["co2eq_g"] = out["energy_kwh"] * intensity
    return out


_UNKNOWN_LICENSES = {"", "unknown", "?", "none", "n/a", "na", "unspecified", "not stated", "todo", "tbd"}


def _training_data(run: Run) -> dict:
    rows = run.read_manifest()
    unknown = [r.get("file", "?") for r in rows if str(r.get("license", "")).strip().lower() in _UNKNOWN_LICENSES]
    licenses: dict[str, int] = {}
    for r in rows:
        lic = str(r.get("license", "")).strip() or "unknown"
        licenses[lic] = licenses.get(lic, 0) + 1
    return {"rows": rows, "unknown_license_files": unknown, "licenses": licenses}


def _success_failure(run: Run, rows: list[dict], warnings: list[str]) -> dict:
    """Best and worst images of the last scored checkpoint by CLIP-I and by CLIP-T, as grids and tables."""
    out: dict[str, Any] = {"step": None, "sets": [], "figures": {}}
    if not rows:
        return out
    def num(r, k):
        try:
            v = float(r.get(k, ""))
            return v if math.isfinite(v) else None
        except (TypeError, ValueError):
            return None
    steps = sorted({int(float(r["step"])) for r in rows if str(r.get("step", "")).strip() != ""})
    if not steps:
        return out
    last = steps[-1]
    at_last = [r for r in rows if str(r.get("step", "")).strip() and int(float(r["step"])) == last]
    out["step"] = last
    for metric in ("clip_i", "clip_t"):
        have = [r for r in at_last if num(r, metric) is not None]
        if not have:
            continue
        ranked = sorted(have, key=lambda r: (-num(r, metric), r.get("path", "")))
        k = min(SUCCESS_FAILURE_K, max(1, len(ranked) // 2))  # best and worst never share an image
        best = ranked[:k]
        worst = list(reversed(ranked[-k:])) if len(ranked) >= 2 else []
        for kind, chosen in (("best", best), ("worst", worst)):
            if not chosen:
                continue
            name = f"{kind}-{metric.replace('_', '')}.png"
            items = [{"n": i + 1, "path": r.get("path", ""), "prompt": r.get("prompt", ""), "seed": r.get("seed", ""),
                      "clip_i": num(r, "clip_i"), "clip_t": num(r, "clip_t")} for i, r in enumerate(chosen)]
            png, missing = _grid_png(run, items)
            for m in missing:
                warnings.append(f"{m}: listed in scores.csv but the image file is missing or unreadable")
            out["figures"][name] = png
            out["sets"].append({"name": name, "kind": kind, "metric": metric, "items": items})
    return out


def _grid_png(run: Run, items: list[dict]) -> tuple[bytes, list[str]]:
    """A one-row grid of thumbnails, each numbered (the table beside it gives prompt and scores)."""
    from PIL import Image, ImageDraw

    label_h = 18
    grid = Image.new("RGB", (THUMB_PX * len(items), THUMB_PX + label_h), "white")
    draw = ImageDraw.Draw(grid)
    missing = []
    for i, it in enumerate(items):
        x = i * THUMB_PX
        try:
            with Image.open(run.path / it["path"]) as im:
                tile = im.convert("RGB")
                tile.thumbnail((THUMB_PX, THUMB_PX))
        except (OSError, ValueError):
            missing.append(it["path"])
            tile = Image.new("RGB", (THUMB_PX, THUMB_PX), (230, 230, 230))
            ImageDraw.Draw(tile).text((8, THUMB_PX // 2), "missing", fill="black")
        grid.paste(tile, (x + (THUMB_PX - tile.width) // 2, (THUMB_PX - tile.height) // 2))
        draw.text((x + 4, THUMB_PX + 3), f"#{it['n']}", fill="black")  # only digits: never user text in pixels
    buf = io.BytesIO()
    grid.save(buf, format="PNG", optimize=False)
    return buf.getvalue(), missing


def _comparison(run: Run, compare_run: Run | None) -> dict:
    """core.compare's paired comparison, character (object) run first. Incompatible runs raise its UserError."""
    if compare_run is None:
        return {"available": False, "reason": "no second run given (use --compare RUN_B for character vs style)"}
    from core import compare as compare_mod

    a, b = run, compare_run
    # the comparison is character (object) first, style second, whichever run the card is for
    if str(a.meta.get("property", "")) == "style" and str(b.meta.get("property", "")) != "style":
        a, b = b, a
    cmp = compare_mod.compare_runs(a, b)
    info = dict(getattr(cmp, "info", {}) or {})
    runs = info.get("runs") or {}
    out = {"available": True, "run_a": a.name, "run_b": b.name,
           "property_a": (runs.get("a") or {}).get("property", a.meta.get("property")),
           "property_b": (runs.get("b") or {}).get("property", b.meta.get("property")),
           "pipeline_check": bool(info.get("pipeline_check", a.is_pipeline_check or b.is_pipeline_check)),
           "pipeline_check_reasons": list(info.get("pipeline_check_reasons") or []),
           "notes": [str(n) for n in info.get("notes") or []],
           "matched_on": info.get("matched_on"),
           "table": _records(getattr(cmp, "table", None)),
           "plane": _records(getattr(cmp, "plane", None)),
           "figure": None}
    try:  # the plane as a picture for HTML/PDF (PIL drawing: deterministic, needs no browser)
        out["figure_png"] = compare_mod.render_plane_pil(cmp)
        out["figure"] = "comparison-plane.png"
    except Exception as e:  # a missing picture must not lose the card; say so instead
        out["figure_error"] = f"{type(e).__name__}: {e}"
    return out


def _comparison_table(records: list[dict]) -> Table:
    need = {"metric", "checkpoint", "a_mean", "b_mean", "diff", "diff_lo", "diff_hi", "n"}
    if not records or not all(need <= set(r) for r in records):
        return _table_from_records(records)
    rows = [[str(r["metric"]).upper().replace("_", "-"), str(r["checkpoint"]),
             f"{r.get('step_a', '')} / {r.get('step_b', '')}", _f(r["a_mean"]), _f(r["b_mean"]),
             _f(r["diff"]), f"[{_f(r['diff_lo'])}, {_f(r['diff_hi'])}]", str(r["n"])] for r in records]
    return Table(["metric", "checkpoint", "steps A / B", "A mean", "B mean", "A - B", "95% CI", "pairs"], rows)


# -------------------------------------------------------------------------------------------------- build
def build_card(run: Run, compare_run: Run | None = None, overrides_path: str | Path | None = None) -> Card:
    """Read everything the card says from `run` (and `compare_run`, the character/style counterpart)."""
    from huggingface_hub import EvalResult, ModelCardData

    meta = run.meta
    if not isinstance(meta.get("token"), Mapping) or not meta["token"].get("placeholder"):
        raise UserError(f"{run.meta_path}: records no token (token.placeholder); is this a run made by `train`?")
    over = load_overrides(run, overrides_path)
    config = meta.get("config") or {}
    tok = meta.get("token") or {}
    token = run.token
    initializer = str(tok.get("initializer", config.get("init", "?")))
    n_vectors = int(tok.get("vectors", config.get("vectors", 1)) or 1)
    prop = str(meta.get("property", config.get("property", "object")))
    weights = dict(run.weights)
    pipeline_check = run.is_pipeline_check
    steps = run.embedding_steps()
    final_step = meta.get("final_step", steps[-1] if steps else None)
    date = _dt.datetime.fromtimestamp(float(meta.get("updated", meta.get("created", 0)) or 0),
                                      tz=_dt.timezone.utc).date().isoformat()
    warnings: list[str] = []

    owner = over.get("owner", OWNER_NOT_STATED)
    if "owner" not in over:
        warnings.append(f"The owner (copyright/trademark holder) of what {token} depicts is not stated: "
                        f"set 'owner' in {run.card_overrides_path.name}.")
    subject = over.get("subject", "")
    data_info = _training_data(run)
    if not data_info["rows"]:
        warnings.append(f"No training-image manifest ({run.manifest_path.name}): the sources and licences of the "
                        "training images are unknown.")
    elif data_info["unknown_license_files"]:
        warnings.append("Training images with unknown licence: " + ", ".join(data_info["unknown_license_files"])
                        + ". Find and record their licences (dataset.csv) or remove them before publishing.")
    if pipeline_check:
        warnings.insert(0, PIPELINE_CHECK_LABEL)

    score_rows = run.read_scores()
    unmeaningful = _scores_unmeaningful(run, score_rows)
    summaries = _score_summaries(run, score_rows)
    movement = _embedding_movement(run)
    sf = _success_failure(run, score_rows, warnings)
    comparison = _comparison(run, compare_run)
    if comparison.get("figure_error"):
        warnings.append(f"Comparison plane not drawn ({comparison['figure_error']}); the table is complete.")
    if comparison.get("available") and comparison.get("pipeline_check") and not pipeline_check:
        warnings.append("The comparison run has random weights (pipeline check): the comparison says nothing "
                        "about what Stable Diffusion learns.")
    env = _environment(run, meta, over.get("environment", {}))
    ethics = {k: over.get("ethics", {}).get(k, {"status": "open", "notes": ""}) for k in ETHICS_ITEMS}
    open_items = [ETHICS_ITEMS[k] for k, v in ethics.items() if v["status"] == "open"]
    if open_items:
        warnings.append("Ethics checklist items still open: " + ", ".join(open_items) + ".")

    # ---- metadata (YAML front matter)
    tags = ["stable-diffusion", "stable-diffusion-diffusers", "text-to-image", "textual_inversion",
            "textual-inversion", "keras-cv", token, "character" if prop == "object" else "style"]
    slug = _a1111_name(token)
    if slug != token and slug not in tags:  # Hub-friendly spelling of the token as a tag, too
        tags.insert(tags.index(token) + 1, slug)
    if pipeline_check:
        tags.append("pipeline-check")
    eval_results = None
    final_means = _final_means(summaries, score_rows, final_step)
    if not pipeline_check and not unmeaningful and final_means:
        eval_results = [EvalResult(task_type="text-to-image", dataset_type=f"{run.name}-eval-prompts",
                                   dataset_name=f"{run.name} evaluation prompts", metric_type=m,
                                   metric_name=f"{m.upper().replace('_', '-')} (mean, step {final_means['step']})",
                                   metric_value=round(v, 4))
                        for m, v in final_means.items() if m in ("clip_i", "clip_t")]
    card_data = ModelCardData(
        base_model=BASE_MODEL, library_name=LIBRARY_NAME, license=LICENSE_ID, license_link=LICENSE_URL,
        language=["en"], pipeline_tag="text-to-image", tags=tags,
        metrics=["clip_i", "clip_t"], model_name=f"{run.name} ({token})" if eval_results else None,
        eval_results=eval_results,
        instance_prompt=token, textual_inversion_token=token, initializer_token=initializer,
        num_vectors=n_vectors, learned_property=prop, weights_source=str(weights.get("source", "unknown")),
        pipeline_check=pipeline_check, character_owner=owner,
        # numbers go into the metadata only when they mean something (never for a pipeline check)
        **({"clip_scores": {k: round(v, 4) if isinstance(v, float) else v for k, v in final_means.items()}}
           if final_means and not unmeaningful else {}),
    )
    metadata = card_data.to_dict()

    title = f"Model Card for {token}"
    short = (f"Textual-inversion embedding for the token {token} on Stable Diffusion v1.4 (KerasCV), learning a "
             f"{'character' if prop == 'object' else 'style'}" + (f": {subject}." if subject else "."))
    summary_txt = (f"A textual-inversion embedding that teaches {BASE_MODEL} (KerasCV) the new token {token}, "
                   f"learned as a {'character/object' if prop == 'object' else 'style'} from "
                   f"{len(data_info['rows'])} training image(s), starting from the word {initializer!r}."
                   + (f" It stands for: {subject}." if subject else ""))
    ctx = dict(run=run, meta=meta, config=config, token=token, initializer=initializer, n_vectors=n_vectors,
               prop=prop, weights=weights, pipeline_check=pipeline_check, final_step=final_step, over=over,
               owner=owner, subject=subject, data_info=data_info, score_rows=score_rows, unmeaningful=unmeaningful,
               summaries=summaries, movement=movement, sf=sf, comparison=comparison, env=env, ethics=ethics,
               warnings=warnings, date=date, final_means=final_means, summary=summary_txt)
    sections = _sections(ctx)

    tables = {}
    for s in sections:
        for i, b in enumerate(s.blocks):
            if isinstance(b, Table):
                tables[f"{s.id}-{i}"] = {"section": s.title, "columns": b.columns, "rows": b.rows}
    data = {
        "run": {"name": run.name, "status": meta.get("status"), "kind": meta.get("kind"),
                "property": prop, "token": token, "initializer": initializer, "vectors": n_vectors,
                "final_step": final_step, "checkpoints": steps, "created": meta.get("created"),
                "updated": meta.get("updated")},
        "weights": weights,
        "scores_meta": _public_scores_meta(run.read_scores_meta()),
        "scores_meaningful": not bool(unmeaningful), "scores_caveat": unmeaningful,
        "config": config, "versions": meta.get("versions"), "hardware": meta.get("hardware"),
        "timings": meta.get("timings"),
        "overrides": over, "owner": owner, "ethics": ethics,
        "training_data": data_info, "score_summaries": summaries, "final_means": final_means,
        "embedding_movement": {**movement, "neighbors": {str(k): v for k, v in movement["neighbors"].items()}},
        "success_failure": {"step": sf["step"], "sets": sf["sets"]},
        "comparison": comparison, "environment": env,
        "license": {"id": LICENSE_ID, "name": LICENSE_NAME, "url": LICENSE_URL,
                    "use_restrictions": list(LICENSE_USE_RESTRICTIONS)},
        "tables": tables,
    }
    figures = dict(sf["figures"])
    if comparison.get("figure"):
        figures[comparison["figure"]] = comparison.pop("figure_png")
    return Card(run_name=run.name, title=title, summary=short, pipeline_check=pipeline_check,
                metadata=metadata, sections=sections, figures=figures, warnings=warnings,
                data=data, date=date)


def _final_means(summaries: Mapping, rows: list[dict], final_step: Any) -> dict:
    """Mean CLIP-I / CLIP-T at the last scored step (from the summary rows when they carry it)."""
    steps = sorted({int(float(r["step"])) for r in rows if str(r.get("step", "")).strip()})
    if not steps:
        return {}
    step = steps[-1]
    out: dict[str, Any] = {"step": step}
    for r in summaries.get("by_step") or []:
        flat = _flatten(r)
        try:
            if int(float(flat.get("step", -1))) != step:
                continue
        except (TypeError, ValueError):
            continue
        for m in ("clip_i", "clip_t"):
            for key in (f"{m}_mean", m, f"mean_{m}"):
                if isinstance(flat.get(key), (int, float)):
                    out[m] = float(flat[key])
                    break
    for m in ("clip_i", "clip_t"):  # the plain mean, if the summary did not carry one
        if m not in out:
            vals = []
            for r in rows:
                try:
                    if int(float(r["step"])) == step:
                        vals.append(float(r[m]))
                except (KeyError, TypeError, ValueError):
                    pass
            if vals:
                out[m] = sum(vals) / len(vals)
    return out if len(out) > 1 else {}


# ------------------------------------------------------------------------------------------------ sections
def _sections(c: dict) -> list[Section]:
    token, prop, run, over = c["token"], c["prop"], c["run"], c["over"]
    pc = c["pipeline_check"]
    S: list[Section] = []

    def sec(title: str, level: int, *blocks) -> Section:
        s = Section(id=_slug(title), title=title, level=level, blocks=[b for b in blocks if b is not None])
        S.append(s)
        return s

    # ---- Model details
    sec("Model Details", 2)
    sec("Model Description", 3,
        Para([c["summary"]]),
        Callout([PIPELINE_CHECK_LABEL + " Nothing in this card describes the quality of a trained model."])
        if pc else None,
        Bullets([
            [Bold("Developed by:"), " ", over.get("developers", "not stated")],
            [Bold("Model type:"), f" textual-inversion embedding ({c['n_vectors']} vector(s) of 768 dimensions) "
                                  "for the CLIP ViT-L/14 text encoder of Stable Diffusion v1"],
            [Bold("Token:"), " ", Mono(token), f" (initialised from {c['initializer']!r}; learns a "
                                               f"{'character/object' if prop == 'object' else 'style'})"],
            [Bold("Represents:"), " ", *([c["subject"]] if c["subject"] else
                                          ["not stated (set ", Mono("subject"), " in ", Mono("card.yaml"), ")"])],
            [Bold("Copyright/trademark owner of the depicted character:"), " ", c["owner"]],
            [Bold("Language(s):"), " English prompts"],
            [Bold("License:"), " ", Link(LICENSE_NAME, LICENSE_URL), " (inherited from the base model)"],
            [Bold("Finetuned from model:"), " ", Link(BASE_MODEL, BASE_MODEL_URL),
             " (frozen; only the new token's embedding is trained)"],
            [Bold("Weights used for this run:"), " ", _weights_sentence(c["weights"])],
            [Bold("Run:"), f" {run.name}, status {c['meta'].get('status', '?')}, final step {c['final_step']}, "
                           f"card date {c['date']}"],
        ]))
    sec("Model Sources", 3, Bullets([
        [Bold("Repository:"), " ", Link(over["repo"], over["repo"]) if "repo" in over else "not stated"],
        [Bold("Paper:"), " ", Link("Gal et al. 2022, An Image is Worth One Word", "https://arxiv.org/abs/2208.01618")],
        [Bold("Base model card:"), " ", Link(BASE_MODEL, BASE_MODEL_URL)],
    ]))

    # ---- Uses
    sec("Uses", 2, Para(["Foreseeable users: people making fan art, illustrations or research experiments with "
                         f"Stable Diffusion who want a word for {token}. Affected: the owners of the character or "
                         "style and anyone shown in, or misled by, generated images."]))
    direct = over.get("intended_use") or (
        f"Writing {token} in a Stable Diffusion v1 prompt to generate images of the learned "
        f"{'character' if prop == 'object' else 'style'} for personal, educational or research use, "
        "e.g. studying how textual inversion learns a concept from a few images.")
    sec("Direct Use", 3, Para([direct]),
        Callout(["Random weights: this embedding has no direct use beyond checking the pipeline."]) if pc else None)
    downstream = over.get("downstream_use") or (
        "Loading the embedding into another Stable Diffusion v1.x pipeline (KerasCV, diffusers, AUTOMATIC1111) or "
        "combining it with other embeddings. Downstream users inherit the licence's use restrictions below and "
        "the copyright and trademark constraints of the depicted character.")
    sec("Downstream Use", 3, Para([downstream]))
    oos = [
        ["Anything the licence's use restrictions forbid (listed in full under License and Use Restrictions)."],
        ["Commercial use of images of the character without a licence from its owner (", c["owner"], ")."],
        ["Presenting generated images as official artwork of the character, or implying endorsement by its owner."],
        ["Generating images of real people, or deceptive, harassing, sexual or violent content involving the "
         "character."],
        ["Distributing generated images without disclosing that they are AI-generated."],
        ["Use with models other than Stable Diffusion v1.x: the vectors live in the 768-d CLIP ViT-L/14 "
         "text-embedding space and mean nothing to SD 2.x or SDXL."],
    ]
    if "out_of_scope_use" in over:
        oos.append(["Ruled out by the authors: ", over["out_of_scope_use"]])
    sec("Out-of-Scope Use and Misuse", 3, Bullets(oos))

    # ---- Licence
    data_info = c["data_info"]
    sec("License and Use Restrictions", 2,
        Para(["This embedding was trained through Stable Diffusion v1.4 and is treated here as a Derivative of the "
              "Model under its ", Link(LICENSE_NAME, LICENSE_URL), " licence, under which it is distributed. "
              "Paragraph 4 of the licence requires anyone who distributes the Model or its Derivatives to include "
              "the use-based restrictions of paragraph 5 (listed in its Attachment A, below) as an enforceable "
              "provision, to give every recipient a copy of the licence, and to mark modified files. Whoever "
              "redistributes this embedding must pass these restrictions on. You are responsible for the images "
              "you generate."]))
    sec("Use Restrictions (Attachment A of the licence)", 3,
        Para(["You agree not to use the Model or Derivatives of the Model:"]),
        Bullets([[r] for r in LICENSE_USE_RESTRICTIONS]))
    sec("Copyright and Trademark of Generated Images", 3,
        Para([f"{token} depicts ", c["subject"] or "a character or style", ". Owner stated by the authors: ",
              Bold(c["owner"]), "."]),
        Callout(["The owner is not stated. Set ", Mono("owner"), " in ", Mono(run.card_overrides_path.name),
                 " (e.g. the studio that owns the character); this tool never guesses it."])
        if c["owner"] == OWNER_NOT_STATED else None,
        Bullets([
            ["Images of a copyrighted character are fan art: the character's copyright stays with its owner, and "
             "the Open RAIL-M licence of the model grants no rights in the character."],
            ["The character's name and likeness may be registered trademarks; using them to sell goods or "
             "services, or in a way that suggests origin, can infringe them."],
            ["This embedding and its images are not affiliated with, sponsored or endorsed by the owner."],
            ["Whether a generated image can be protected by copyright, and who would own it, depends on the "
             "jurisdiction; many treat purely machine-generated images as unprotected."],
        ]))
    lic_rows = [[r.get("file", ""), r.get("license", "") or "UNKNOWN", r.get("source", ""), r.get("author", ""),
                 f"{r.get('width', '')}x{r.get('height', '')}", (r.get("sha256", "") or "")[:12]]
                for r in data_info["rows"]]
    sec("Training Image Licences", 3,
        Para([f"{len(data_info['rows'])} training image(s); licences: "
              + (", ".join(f"{k} ({v})" for k, v in sorted(data_info["licenses"].items())) or "none recorded") + "."]),
        Callout(["Unknown licence: " + ", ".join(data_info["unknown_license_files"])
                 + ". Record the licence of each of these images in dataset.csv, or remove them, before publishing."])
        if data_info["unknown_license_files"] else None,
        Callout(["No dataset.csv: the sources and licences of the training images were not recorded."])
        if not data_info["rows"] else None,
        Table(["file", "license", "source", "author", "size", "sha256 (first 12)"], lic_rows) if lic_rows else None)

    # ---- Bias, risks, limitations
    sec("Bias, Risks, and Limitations", 2,
        Para(["Measured on this run (details under Evaluation and Model Examination), then the known limits of the "
              "base model and of the KerasCV pipeline."]))
    measured = []
    caveat = c["unmeaningful"]
    if caveat:
        measured.append(Callout([f"These measurements only check the pipeline: {caveat}. They say nothing about "
                                 "what the embedding learned."]))
    mv = c["movement"]
    mv_rows = [r for r in mv.get("rows", []) if r["step"] == (mv["steps"][-1] if mv.get("steps") else None)]
    if mv_rows:
        measured.append(Para([
            "Token movement: at step ", str(mv["steps"][-1]), " the learned vector(s) lie at L2 distance ",
            ", ".join(_f(r["l2_from_init"]) for r in mv_rows), " from the initializer ",
            Mono(c["initializer"]), " (cosine ", ", ".join(_f(r["cosine_to_init"]) for r in mv_rows), "; norm ",
            ", ".join(_f(r["norm"]) for r in mv_rows), " vs ", ", ".join(_f(r["init_norm"]) for r in mv_rows),
            " at initialisation); every checkpoint and the nearest vocabulary tokens are under Model Examination."]))
    elif mv.get("error"):
        measured.append(Para(["Token movement: ", mv["error"], "."]))
    fm = c["final_means"]
    if fm:
        measured.append(Para([f"CLIP at step {fm['step']}: mean CLIP-I {_f(fm.get('clip_i'))}, mean CLIP-T "
                              f"{_f(fm.get('clip_t'))}. CLIP-I measures likeness to the training images, CLIP-T "
                              "agreement with the rest of the prompt; a high CLIP-I with a low CLIP-T suggests the "
                              "token overrides the prompt (overfitting to the training images)."]))
    elif c["summaries"].get("reason"):
        measured.append(Para([c["summaries"]["reason"]]))
    cmpd = c["comparison"]
    if cmpd.get("available"):
        measured.append(Para([f"Character versus style: compared with run "
                              f"{cmpd['run_b'] if cmpd['run_a'] == run.name else cmpd['run_a']} "
                              "(paired differences under Evaluation > Results)."]))
        if cmpd.get("figure"):
            measured.append(Figure(cmpd["figure"], "Reconstruction (CLIP-I) vs editability (CLIP-T) per checkpoint, "
                                                   f"A = {cmpd['run_a']}, B = {cmpd['run_b']} (simplified drawing; "
                                                   "`python -m core compare` writes the interactive plot)"))
    sf = c["sf"]
    if sf["sets"]:
        measured.append(Para([f"Successes and failures: the {SUCCESS_FAILURE_K} highest- and lowest-scored images "
                              f"at step {sf['step']}" + (" (under random weights: pipeline check only)" if caveat else "")
                              + "."]))
        for st in sf["sets"]:
            label = f"{'Highest' if st['kind'] == 'best' else 'Lowest'} {st['metric'].upper().replace('_', '-')}"
            measured.append(Figure(st["name"], f"{label} at step {sf['step']}"))
            measured.append(Table(["#", "image", "prompt", "seed", "CLIP-I", "CLIP-T"],
                                  [[str(it["n"]), it["path"], it["prompt"], str(it["seed"]), _f(it["clip_i"]),
                                    _f(it["clip_t"])] for it in st["items"]]))
    sec("Measured Limitations of This Run", 3, *measured)
    sec("Known Limitations of the Base Model", 3,
        Para(["From the ", Link("Stable Diffusion v1.4 model card", BASE_MODEL_URL), ":"]),
        Bullets([
            ["It does not achieve perfect photorealism; faces and people in general may not be generated properly."],
            ["It cannot render legible text."],
            ["It struggles with compositional prompts (e.g. 'a red cube on top of a blue sphere')."],
            ["It was trained mainly on English captions (LAION-2B(en)) and works less well in other languages; "
             "white and Western cultures are often the default, and other communities are under-represented."],
            ["Its training data (subsets of LAION-5B) contains adult, violent and otherwise harmful material, and "
             "was not deduplicated: some memorisation of duplicated training images has been observed."],
            ["The autoencoder is lossy, so fine detail is approximated."],
        ]))
    sec("Known Limitations of KerasCV and of Textual Inversion", 3, Bullets([
        ["KerasCV's StableDiffusion has no safety checker (NSFW filter) and adds no invisible watermark; outputs "
         "are not filtered or marked as AI-generated. Add both before exposing generation to others."],
        ["A token learned from a handful of images also learns their backgrounds, poses and drawing quirks, and "
         "can dominate the rest of the prompt."],
        ["The embedding only works with the text encoder it was trained for (SD v1.x, CLIP ViT-L/14)."],
        ["CLIP-based scores are proxies: CLIP has its own biases and can reward copies of the training images."],
    ]))
    sec("Recommendations", 3, Bullets([
        ["Disclose that images are AI-generated, and do not present them as the owner's official artwork."],
        ["Keep the use restrictions of the licence with every copy of the embedding."],
        ["Run a safety checker and a watermark when generating for others."],
        ["Check the success and failure grids and the ethics checklist before publishing."],
    ]))

    # ---- get started
    sec("How to Get Started with the Model", 2,
        Para(["Export the learned vectors with ",
              Mono(f"python -m core export {_run_ref(run)} --format diffusers --out learned_embeds.safetensors"),
              " (or ", Mono("--format a1111 --out " + _a1111_name(token) + ".pt"),
              " for the AUTOMATIC1111 web UI); the final embedding of this run is ",
              Mono(run.embedding_path(c["final_step"]).relative_to(run.path).as_posix() if c["final_step"] is not None
                   else "embeddings/ (none yet)"),
              f", a safetensors file holding {{token: float32[{c['n_vectors']}, 768]}}. Below, "
              "learned_embeds.safetensors stands for that file."]),
        Callout(["Random weights: these snippets load a pipeline-check embedding; with the real base model it "
                 "produces nothing meaningful."]) if pc else None)
    sec("KerasCV", 3, CodeBlock("python", _kerascv_snippet(token, c["n_vectors"])))
    sec("diffusers", 3, CodeBlock("python", _diffusers_snippet(token)))
    sec("AUTOMATIC1111 web UI", 3, Para([
        "Copy the file into the web UI's ", Mono("embeddings/"), " folder and rename it to the word you want to "
        "type, e.g. ", Mono(_a1111_name(token) + ".safetensors"), "; then write ", Mono(_a1111_name(token)),
        " in a prompt. Use it with a Stable Diffusion v1.x checkpoint."]))

    # ---- training details
    sec("Training Details", 2)
    sec("Training Data", 3, Para([
        f"{len(data_info['rows'])} image(s) listed in the run's dataset.csv with their sources and licences "
        "(table under License and Use Restrictions). "
        + ("Unknown licences: " + ", ".join(data_info["unknown_license_files"]) + "." if data_info["unknown_license_files"] else "")]))
    cfg = c["config"]
    cfg_rows = [[str(k), json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v] for k, v in cfg.items()]
    sec("Training Procedure", 3,
        Para([f"Textual inversion (Gal et al. 2022): a new token {token} is added to the tokenizer, its embedding "
              f"row initialised from {c['initializer']!r}, and only that row is optimised with the latent-diffusion "
              "denoising loss while the text encoder, UNet and VAE stay frozen. Prompts come from the "
              f"{'object' if prop == 'object' else 'style'} templates."]),
        Table(["setting", "value"], cfg_rows) if cfg_rows else None)
    t = c["meta"].get("timings") or {}
    sec("Speeds, Sizes, Times", 4, Bullets([
        ["Training time: ", _duration(t.get("seconds_total")), f"; steps done: {t.get('steps_done', '?')}"],
        ["Checkpoints saved: ", ", ".join(map(str, c["movement"].get("steps", []))) or "none"],
        ["Embedding size: ", f"{c['n_vectors']} x 768 float32 = {c['n_vectors'] * 768 * 4} bytes"],
    ]))

    # ---- evaluation
    sec("Evaluation", 2)
    sm = c["summaries"]
    n_prompts = len({r.get("prompt") for r in c["score_rows"]})
    n_seeds = len({r.get("seed") for r in c["score_rows"]})
    sec("Testing Data, Factors & Metrics", 3,
        Para([f"Testing data: {len(c['score_rows'])} generated image(s) from {n_prompts} evaluation prompt(s) x "
              f"{n_seeds} seed(s), at each scored checkpoint. Factors: checkpoint step and prompt."]),
        Bullets([
            [Bold("CLIP-I:"), " mean cosine similarity between the CLIP image embeddings of a generated image and "
                              "of the training images (likeness to the concept)."],
            [Bold("CLIP-T:"), " cosine similarity between the generated image and the prompt with the token "
                              "removed (does the image still follow the prompt)."],
            ["Intervals are the confidence intervals computed by ", Mono("core.score"),
             " (see its documentation for the method)."],
            [Bold("Scorer:"), " ", _clip_sentence(run.read_scores_meta())],
        ]))
    res_blocks: list = []
    if pc:
        res_blocks.append(Callout(["The numbers below are from random weights and only check the pipeline; they "
                                   "say nothing about the quality of a trained embedding."]))
    elif caveat:
        res_blocks.append(Callout([f"The numbers below only check the pipeline: {caveat}."]))
    if sm.get("available"):
        res_blocks.append(Para(["CLIP scores per checkpoint (mean over images, percentile-bootstrap 95% "
                                "confidence interval; step 0 is the initializer word before training):"]))
        res_blocks.append(_score_table(sm["by_step"], ["step"]))
        last = fm.get("step") if fm else None
        by_prompt = [r for r in sm.get("by_prompt") or [] if last is None or r.get("step") == last]
        if by_prompt:
            res_blocks.append(Para([f"CLIP scores per prompt template at step {last} (CI over seeds; every step "
                                    "is in card.json):"]))
            res_blocks.append(_score_table(by_prompt, ["template"]))
        res_blocks.extend(_baseline_blocks(run.read_scores_meta() or {}))
    else:
        res_blocks.append(Para([sm.get("reason", "no scores")]))
    if cmpd.get("available"):
        res_blocks.append(Para([f"Character versus style: {cmpd['run_a']} ({cmpd.get('property_a')}) against "
                                f"{cmpd['run_b']} ({cmpd.get('property_b')})."]))
        if cmpd.get("pipeline_check"):
            res_blocks.append(Callout(["The comparison only checks the pipeline: "
                                       + ("; ".join(cmpd["pipeline_check_reasons"]) or "random weights") + "."]))
        if cmpd["table"]:
            res_blocks.append(_comparison_table(cmpd["table"]))
        if cmpd.get("notes"):
            res_blocks.append(Bullets([[n] for n in cmpd["notes"]]))
    else:
        res_blocks.append(Para([f"Character versus style: {cmpd['reason']}."]))
    sec("Results", 3, *res_blocks)
    if pc:
        summary_line = "Pipeline check: no claim about quality is made."
    elif caveat:
        summary_line = f"No claim about quality: {caveat}."
    elif fm:
        summary_line = (f"At step {fm['step']}: mean CLIP-I {_f(fm.get('clip_i'))}, mean CLIP-T "
                        f"{_f(fm.get('clip_t'))} (intervals in the table above).")
    else:
        summary_line = "Not evaluated yet."
    sec("Summary", 4, Para([summary_line]))

    # ---- model examination
    exam: list = []
    if mv.get("error"):
        exam.append(Callout([mv["error"]]))
    if mv.get("rows"):
        exam.append(Para(["Distance of the learned vector(s) from the initializer, per checkpoint (step 0 is the "
                          "initializer):"]))
        exam.append(Table(["step", "vector", "L2 from init", "cosine to init", "norm"],
                          [[str(r["step"]), str(r["vector"]), _f(r["l2_from_init"]), _f(r["cosine_to_init"]),
                            _f(r["norm"])] for r in mv["rows"]]))
    if mv.get("neighbors"):
        exam.append(Para(["Nearest vocabulary tokens (from neighbors.csv):"]))
        exam.append(Table(["step", "vector", "rank", "token", "cosine", "distance_from_init"],
                          [[str(s), str(n["vector"]), str(n["rank"]), str(n["token"]), _f(n["cosine"]),
                            _f(n["distance_from_init"])] for s, ns in mv["neighbors"].items() for n in ns]))
    if not exam:
        exam.append(Para(["No embeddings saved yet."]))
    sec("Model Examination", 2, *exam)

    # ---- environment
    env = c["env"]
    sec("Environmental Impact", 2,
        Callout(["Estimate, not a measurement: computed from the run's recorded training time and an assumed "
                 "power draw, with the ", Link("Machine Learning Impact calculator", "https://mlco2.github.io/impact#compute"),
                 " method of ", Link("Lacoste et al. (2019)", "https://arxiv.org/abs/1910.09700"), "."], level="note"),
        Bullets([
            [Bold("Hardware type:"), " ", ", ".join(env["devices"]) or "not recorded", f" (platform: {env['platform']})"],
            [Bold("Hours used:"), " ", _f(env.get("hours"), 4) if env.get("hours") else "not recorded",
             f" ({env['seconds_source']})"],
            [Bold("Cloud provider:"), " ", env["cloud_provider"]],
            [Bold("Compute region:"), " ", env["region"]],
            [Bold("Carbon emitted (estimate):"), " ",
             f"{_f(env['co2eq_g'], 2)} g CO2eq" if env["co2eq_g"] is not None else "not computable (no timing)"],
            [Bold("Energy (estimate):"), " ",
             f"{_f(env['energy_kwh'], 5)} kWh" if env["energy_kwh"] is not None else "not computable"],
        ]),
        Para(["Method: ", env["method"], "."]),
        Table(["assumption", "value", "source"], [
            ["power draw", f"{_f(env['power_watts'], 0)} W", env["power_source"]],
            *[["device: " + d["device"], f"{_f(d['watts'], 0)} W", "assumed: " + d["basis"]]
              for d in env["devices_counted"]],
            ["PUE", _f(env["pue"], 2), "overrides" if env["pue"] != DEFAULT_PUE else "assumed 1.0 (no data-centre overhead)"],
            ["grid carbon intensity", f"{_f(env['carbon_intensity_g_per_kwh'], 0)} g CO2eq/kWh",
             env["carbon_intensity_source"]],
            ["time", _duration(env["seconds"]), env["seconds_source"]],
        ]),
        Para(["Not included: image generation, scoring, and the (much larger) cost of training the base model."]))

    # ---- technical specs
    w = c["weights"]
    files = w.get("files") or {}
    sec("Technical Specifications", 2)
    sec("Model Architecture and Objective", 3, Para([
        "Stable Diffusion v1.4 (latent diffusion: CLIP ViT-L/14 text encoder, UNet, VAE) as implemented by KerasCV; "
        f"the only trained parameters are the {c['n_vectors']} embedding vector(s) of {token}; objective: the "
        "denoising (noise-prediction) MSE of latent diffusion."]))
    sec("Weight Provenance", 3,
        Bullets([
            [Bold("Source:"), " ", str(w.get("source", "unknown")), " - ", _weights_sentence(w)],
            [Bold("Verified against recorded checksums:"), " ",
             {True: "yes", False: "NO - the files did not match or were not checked"}.get(
                 w.get("verified"), "not applicable" if w.get("source") == "random" else "not recorded")],
        ]),
        Table(["file", "sha256"], [[str(k), str(v)] for k, v in files.items()]) if files else
        Para(["No weight files recorded" + (" (random initialisation)." if w.get("source") == "random" else ".")]))
    versions = c["meta"].get("versions") or {}
    sec("Software", 3, Table(["package", "version"], [[str(k), str(v)] for k, v in versions.items()])
        if versions else Para(["Package versions not recorded."]))

    # ---- ethics checklist
    eth_rows = [[ETHICS_ITEMS[k], v["status"], v["notes"] or "-"] for k, v in c["ethics"].items()]
    sec("Ethics Checklist", 2,
        Para(["Filled in by the authors in ", Mono(run.card_overrides_path.name), f"; statuses: "
              f"{', '.join(ETHICS_STATUSES)}."]),
        Table(["item", "status", "notes"], eth_rows),
        Callout(["Open items: " + ", ".join(r[0] for r in eth_rows if r[1] == "open") + "."])
        if any(r[1] == "open" for r in eth_rows) else None)

    # ---- citation etc.
    sec("Citation", 2, Para(["BibTeX:"]), CodeBlock("bibtex", CITATIONS_BIBTEX),
        Para(["APA:"]), Bullets([[x] for x in CITATIONS_APA]))
    if "notes" in over:
        sec("More Information", 2, Para([over["notes"]]))
    sec("Model Card Authors", 2, Para([over.get("model_card_authors", "not stated")]))
    sec("Model Card Contact", 2, Para([over.get("contact", "not stated")]))
    sec("Warnings", 2, Bullets([[w_] for w_ in c["warnings"]]) if c["warnings"] else Para(["None."]))
    return S


CITATIONS_BIBTEX = """@misc{gal2022textual,
  title         = {An Image is Worth One Word: Personalizing Text-to-Image Generation using Textual Inversion},
  author        = {Gal, Rinon and Alaluf, Yuval and Atzmon, Yuval and Patashnik, Or and Bermano, Amit H. and
                   Chechik, Gal and Cohen-Or, Daniel},
  year          = {2022},
  eprint        = {2208.01618},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV}
}

@inproceedings{rombach2022high,
  title     = {High-Resolution Image Synthesis with Latent Diffusion Models},
  author    = {Rombach, Robin and Blattmann, Andreas and Lorenz, Dominik and Esser, Patrick and Ommer, Bj{\\"o}rn},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {10684--10695},
  year      = {2022}
}

@inproceedings{mitchell2019model,
  title     = {Model Cards for Model Reporting},
  author    = {Mitchell, Margaret and Wu, Simone and Zaldivar, Andrew and Barnes, Parker and Vasserman, Lucy and
               Hutchinson, Ben and Spitzer, Elena and Raji, Inioluwa Deborah and Gebru, Timnit},
  booktitle = {Proceedings of the Conference on Fairness, Accountability, and Transparency (FAT* '19)},
  pages     = {220--229},
  year      = {2019},
  doi       = {10.1145/3287560.3287596}
}

@article{lacoste2019quantifying,
  title   = {Quantifying the Carbon Emissions of Machine Learning},
  author  = {Lacoste, Alexandre and Luccioni, Alexandra and Schmidt, Victor and Dandres, Thomas},
  journal = {arXiv preprint arXiv:1910.09700},
  year    = {2019}
}"""

CITATIONS_APA = (
    "Gal, R., Alaluf, Y., Atzmon, Y., Patashnik, O., Bermano, A. H., Chechik, G., & Cohen-Or, D. (2022). An image "
    "is worth one word: Personalizing text-to-image generation using textual inversion. arXiv:2208.01618.",
    "Rombach, R., Blattmann, A., Lorenz, D., Esser, P., & Ommer, B. (2022). High-resolution image synthesis with "
    "latent diffusion models. In Proceedings of CVPR 2022 (pp. 10684-10695).",
    "Mitchell, M., Wu, S., Zaldivar, A., Barnes, P., Vasserman, L., Hutchinson, B., Spitzer, E., Raji, I. D., & "
    "Gebru, T. (2019). Model cards for model reporting. In Proceedings of FAT* '19 (pp. 220-229).",
    "Lacoste, A., Luccioni, A., Schmidt, V., & Dandres, T. (2019). Quantifying the carbon emissions of machine "
    "learning. arXiv:1910.09700.",
)


def _baseline_blocks(scores_meta: Mapping) -> list:
    b = scores_meta.get("baselines") or {}
    items = []
    ceil = b.get("reference_ceiling")
    if isinstance(ceil, Mapping) and ceil.get("mean") is not None:
        items.append([Bold("Reference ceiling (CLIP-I between distinct reference images):"), " ",
                      f"{_f(ceil['mean'])} [{_f(ceil.get('lo'))}, {_f(ceil.get('hi'))}] "
                      f"({ceil.get('n_images', '?')} images)"])
    elif b.get("reference_ceiling_clip_i") is not None:
        items.append([Bold("Reference ceiling CLIP-I:"), " ", _f(b["reference_ceiling_clip_i"])])
    init = b.get("initializer")
    if isinstance(init, Mapping) and init.get("available") and init.get("clip_i_mean") is not None:
        items.append([Bold("Initializer baseline (step 0):"), " ",
                      f"CLIP-I {_f(init['clip_i_mean'])} [{_f(init.get('clip_i_lo'))}, {_f(init.get('clip_i_hi'))}], "
                      f"CLIP-T {_f(init.get('clip_t_mean'))} [{_f(init.get('clip_t_lo'))}, {_f(init.get('clip_t_hi'))}]"])
    return [Para(["Baselines:"]), Bullets(items)] if items else []


def _run_ref(run: Run) -> str:
    """How the card names the run folder in commands: runs/NAME, never the local path it was opened from (the card
    is published, and the CLI and the dashboard open the same run by different paths but must give the same bytes)."""
    return f"runs/{run.name}"


def _public_scores_meta(meta: Mapping | None) -> dict | None:
    """scores.json without local paths: CLIP provenance, baselines, reference files (names + sha256)."""
    if not meta:
        return None
    keep = ("clip", "clip_label", "baselines", "pipeline_check", "pipeline_check_reasons", "n_images", "complete")
    out = {k: meta[k] for k in keep if k in meta}
    refs = meta.get("references") or {}
    if refs.get("files"):
        out["references"] = {"files": refs["files"]}
    return out


def _weights_sentence(w: Mapping) -> str:
    src = str(w.get("source", "unknown"))
    files = w.get("files") or {}
    if src == "random":
        return "random initialisation (pipeline check, not Stable Diffusion's trained weights)"
    if src == "kerascv":
        return f"KerasCV's published Stable Diffusion v1.4 weights ({len(files)} file(s) with sha256 recorded)"
    if src == "local":
        return f"local weight files ({len(files)} file(s) with sha256 recorded)"
    return "unknown provenance: treat as a pipeline check"


def _clip_sentence(meta: Mapping | None) -> str:
    if (meta or {}).get("clip_label"):
        return str(meta["clip_label"])
    clip = (meta or {}).get("clip") or {}
    if not clip:
        return "not recorded (no scores.json)"
    return ", ".join(f"{k}: {v}" for k, v in clip.items())


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "not recorded"
    if not math.isfinite(s):
        return "not recorded"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _a1111_name(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "", token) or "token"


def _kerascv_snippet(token: str, n_vectors: int) -> str:
    tokens = [token] + [f"{token}_{i}" for i in range(1, n_vectors)]
    return f'''import numpy as np
import keras_cv
from safetensors.numpy import load_file

TOKEN = {token!r}
vectors = load_file("learned_embeds.safetensors")[TOKEN]          # float32[{n_vectors}, 768]
words = {tokens!r}                                                   # one tokenizer entry per vector

sd = keras_cv.models.StableDiffusion(img_width=512, img_height=512)
for w in words:
    sd.tokenizer.add_tokens(w)
old = sd.text_encoder.layers[2]                                      # token + position embedding layer
new_table = np.concatenate([old.token_embedding.get_weights()[0], vectors], axis=0)
encoder = keras_cv.models.stable_diffusion.TextEncoder(
    keras_cv.models.stable_diffusion.stable_diffusion.MAX_PROMPT_LENGTH,
    vocab_size=new_table.shape[0], download_weights=False)
for i, layer in enumerate(sd.text_encoder.layers):
    if i != 2:
        encoder.layers[i].set_weights(layer.get_weights())
encoder.layers[2].token_embedding.set_weights([new_table])
encoder.layers[2].position_embedding.set_weights(old.position_embedding.get_weights())
sd._text_encoder = encoder

prompt = "a drawing of {{}} in the snow".format(" ".join(words))
images = sd.text_to_image(prompt, batch_size=2, seed=0)'''


def _diffusers_snippet(token: str) -> str:
    return f'''import torch
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("{BASE_MODEL}", torch_dtype=torch.float16).to("cuda")
pipe.load_textual_inversion("learned_embeds.safetensors", token={token!r})
image = pipe("a drawing of " + {token!r} + " in the snow", num_inference_steps=50).images[0]
image.save("out.png")'''


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# ------------------------------------------------------------------------------------------------ Markdown
_MD_SPECIAL = re.compile(r"([\\`*_\[|~])")  # with [ escaped, no link, image or footnote can form


def md_escape(text: Any, line_start: bool = True) -> str:
    """Plain text -> Markdown that renders as that text (HTML-significant characters become entities).
    line_start: the text may begin a line, so a leading '-', '#', '>' or '1.' is escaped too."""
    s = " ".join(str(text).split()) if "\n" in str(text) or "\r" in str(text) else str(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    if line_start:  # a leading '-', '#', '>', '=' or '1.' could start a list, heading, quote or underline
        s = re.sub(r"^(\s*)([-=+#>])", r"\1\\\2", s)
        s = re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", s)
    return s


def _md_code_span(text: str) -> str:
    text = " ".join(str(text).split())
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_inline(parts: Iterable[Inline]) -> str:
    out = []
    for i, p in enumerate(parts):
        if isinstance(p, Link):
            out.append(f"[{md_escape(p.text)}](<{_safe_url(p.url)}>)" if _safe_url(p.url) else md_escape(p.text))
        elif isinstance(p, Bold):
            out.append(f"**{md_escape(p.text)}**")
        elif isinstance(p, Mono):
            out.append(_md_code_span(p.text))
        else:
            out.append(md_escape(p, line_start=(i == 0)))
    return "".join(out)


def _safe_url(url: str) -> str:
    """Only http(s) addresses become links; spaces, quotes and angle brackets are percent-encoded."""
    url = str(url).strip()
    if not re.match(r"^https?://", url, re.I):
        return ""
    return url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E").replace('"', "%22").replace("'", "%27")


def _md_block(b: Any) -> str:
    if isinstance(b, Para):
        return _md_inline(b.parts)
    if isinstance(b, Bullets):
        return "\n".join("- " + _md_inline(item) for item in b.items)
    if isinstance(b, Callout):
        label = "Warning" if b.level == "warning" else "Note"
        return f"> **{label}:** " + _md_inline(b.parts)
    if isinstance(b, Table):
        def cell(x):
            return md_escape(x, line_start=False) if str(x).strip() else " "
        head = "| " + " | ".join(cell(c) for c in b.columns) + " |"
        sep = "| " + " | ".join("---" for _ in b.columns) + " |"
        body = ["| " + " | ".join(cell(x) for x in row) + " |" for row in b.rows]
        return "\n".join([head, sep, *body])
    if isinstance(b, CodeBlock):
        longest = max((len(m) for m in re.findall(r"`+", b.text)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}{b.lang}\n{b.text}\n{fence}"
    if isinstance(b, Figure):
        return f"![{md_escape(b.caption)}]({IMAGES_SUBDIR}/{b.name})\n\n*{md_escape(b.caption)}*"
    raise TypeError(f"unknown block {type(b).__name__}")


def _render_md_body(card: Card) -> str:
    lines = []
    if card.pipeline_check:
        lines += [f"> **{md_escape(PIPELINE_CHECK_LABEL)}**", ""]
    lines += [f"# {md_escape(card.title)}", "", md_escape(card.summary), ""]
    for s in card.sections:
        lines += [f"{'#' * s.level} {md_escape(s.title)}", ""]
        for b in s.blocks:
            lines += [_md_block(b), ""]
    return "\n".join(lines).rstrip() + "\n"


def _render_md_content(card: Card) -> str:
    from huggingface_hub import ModelCardData

    yaml_block = ModelCardData(**card.metadata).to_yaml()
    return f"---\n{yaml_block}\n---\n\n{_render_md_body(card)}"


def render_md(card: Card) -> bytes:
    return str(card.model_card()).encode("utf-8")


# ---------------------------------------------------------------------------------------------------- HTML
def _h(x: Any) -> str:
    return _html.escape(str(x), quote=True)


def _html_inline(parts: Iterable[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, Link):
            url = _safe_url(p.url)
            out.append(f'<a href="{_h(url)}" rel="noopener noreferrer">{_h(p.text)}</a>' if url else _h(p.text))
        elif isinstance(p, Bold):
            out.append(f"<strong>{_h(p.text)}</strong>")
        elif isinstance(p, Mono):
            out.append(f"<code>{_h(p.text)}</code>")
        else:
            out.append(_h(p))
    return "".join(out)


def _html_block(b: Any, figures: Mapping[str, bytes]) -> str:
    if isinstance(b, Para):
        return f"<p>{_html_inline(b.parts)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Callout):
        label = "Warning" if b.level == "warning" else "Note"
        return f'<div class="callout {_h(b.level)}"><strong>{label}:</strong> {_html_inline(b.parts)}</div>'
    if isinstance(b, Table):
        head = "".join(f"<th>{_h(c)}</th>" for c in b.columns)
        body = "".join("<tr>" + "".join(f"<td>{_h(x)}</td>" for x in row) + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, CodeBlock):
        return f'<pre><code class="language-{_h(b.lang)}">{_h(b.text)}</code></pre>'
    if isinstance(b, Figure):
        png = figures.get(b.name)
        src = f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" if png else f"{IMAGES_SUBDIR}/{b.name}"
        return f'<figure><img src="{_h(src)}" alt="{_h(b.caption)}"><figcaption>{_h(b.caption)}</figcaption></figure>'
    raise TypeError(f"unknown block {type(b).__name__}")


_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
line-height:1.5;color:#1b1b1b}table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}th,td{border:1px solid #ccc;
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}pre{background:#f6f8fa;padding:.75rem;
overflow-x:auto}code{font-family:ui-monospace,monospace}.callout{border-left:4px solid #d4a017;background:#fff8e1;
padding:.5rem .75rem;margin:.5rem 0}.callout.note{border-color:#2b6cb0;background:#ebf4ff}.pipeline-check{background:#c53030;
color:#fff;padding:.75rem 1rem;font-weight:bold;margin-bottom:1rem}figure{margin:.5rem 0}img{max-width:100%}
.meta{font-size:.85rem;background:#f6f8fa;padding:.5rem}"""


def render_html(card: Card) -> bytes:
    """A self-contained HTML page (figures inlined as data: URIs); every string from the run is escaped."""
    import yaml

    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_h(card.title)}</title><style>{_CSS}</style></head><body>"]
    if card.pipeline_check:
        parts.append(f'<div class="pipeline-check" role="alert">{_h(PIPELINE_CHECK_LABEL)}</div>')
    parts.append(f"<h1>{_h(card.title)}</h1><p>{_h(card.summary)}</p>")
    meta_yaml = yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True)
    parts.append(f'<details class="meta"><summary>Metadata (YAML)</summary><pre>{_h(meta_yaml)}</pre></details>')
    for s in card.sections:
        parts.append(f'<h{s.level} id="{_h(s.id)}">{_h(s.title)}</h{s.level}>')
        parts.extend(_html_block(b, card.figures) for b in s.blocks)
    parts.append("</body></html>")
    return ("\n".join(parts) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------------- PDF
_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
              "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
               "mono": "DejaVuSansMono.ttf"}


def find_unicode_fonts() -> dict[str, Path] | None:
    """DejaVu Sans (regular, bold, oblique) and Sans Mono if installed (Debian/Ubuntu: fonts-dejavu-core)."""
    for d in _FONT_DIRS:
        paths = {k: Path(d) / f for k, f in _FONT_FILES.items()}
        if all(p.exists() for p in paths.values()):
            return paths
    return None


_LATIN1_REPLACE = {"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "•": "-", "×": "x",
                   "≈": "~", "≤": "<=", "≥": ">="}


def latin1_safe(text: str) -> str:
    """For PDF core fonts (no TTF found): typographic characters mapped, accents stripped where needed, any other
    non-Latin-1 character replaced by '?', so text is never silently dropped and never crashes fpdf."""
    out = []
    for ch in str(text):
        ch = _LATIN1_REPLACE.get(ch, ch)
        try:
            ch.encode("latin-1")
            out.append(ch)
        except UnicodeEncodeError:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            try:
                base.encode("latin-1")
                out.append(base or "?")
            except UnicodeEncodeError:
                out.append("?")
    return "".join(out)


def render_pdf(card: Card) -> bytes:
    """The card as a PDF (fpdf2): headings, text, tables and the success/failure grids.

    Uses DejaVu Sans when installed (full Unicode text); otherwise the built-in Helvetica/Courier with text
    passed through `latin1_safe`.
    """
    from fpdf import FPDF
    from fpdf.fonts import FontFace
    from PIL import Image

    pdf = FPDF(format="A4")
    pdf.set_title(card.title if find_unicode_fonts() else latin1_safe(card.title))
    pdf.set_creator("tomcat-ti core.card")
    pdf.set_creation_date(_dt.datetime.fromisoformat(card.date + "T00:00:00+00:00"))
    pdf.set_auto_page_break(True, margin=15)
    fonts = find_unicode_fonts()
    if fonts:
        for style in ("", "B", "I"):
            pdf.add_font("CardSans", style, str(fonts[style]))
        pdf.add_font("CardMono", "", str(fonts["mono"]))
        covered = set(pdf.fonts["cardsans"].cmap) & set(pdf.fonts["cardmono"].cmap)

        def T(text: Any) -> str:  # characters DejaVu lacks (e.g. CJK) become a visible '?', not a silent gap
            return "".join(ch if ord(ch) in covered or ch in "\n\t" else "?" for ch in str(text))

        sans, mono = "CardSans", "CardMono"
    else:
        sans, mono, T = "Helvetica", "Courier", latin1_safe
    pdf.add_page()
    epw = pdf.epw

    def text_line(parts: Iterable[Inline], size: float = 10, h: float = 5) -> None:
        for p in parts:
            if isinstance(p, Link):
                pdf.set_font(sans, "", size)
                pdf.set_text_color(20, 60, 170)
                url = _safe_url(p.url)
                pdf.write(h, T(p.text), link=url or "")
                pdf.set_text_color(0, 0, 0)
            elif isinstance(p, Bold):
                pdf.set_font(sans, "B", size)
                pdf.write(h, T(p.text))
            elif isinstance(p, Mono):
                pdf.set_font(mono, "", size - 1)
                pdf.write(h, T(p.text))
            else:
                pdf.set_font(sans, "", size)
                pdf.write(h, T(p))
        pdf.ln(h)

    if card.pipeline_check:
        pdf.set_fill_color(197, 48, 48)
        pdf.set_text_color(255, 255, 255)
        pdf.set_font(sans, "B", 11)
        pdf.multi_cell(epw, 6, T(PIPELINE_CHECK_LABEL), fill=True, new_x="LMARGIN", new_y="NEXT", padding=2)
        pdf.set_text_color(0, 0, 0)
        pdf.ln(3)
    pdf.set_font(sans, "B", 18)
    pdf.multi_cell(epw, 9, T(card.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(sans, "", 10)
    pdf.multi_cell(epw, 5, T(card.summary), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    heading_size = {2: 14, 3: 12, 4: 11}
    for s in card.sections:
        size = heading_size.get(s.level, 11)
        if pdf.will_page_break(30):
            pdf.add_page()
        pdf.ln(2 if s.level > 2 else 4)
        pdf.set_font(sans, "B", size)
        pdf.multi_cell(epw, size * 0.55, T(s.title), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)
        for b in s.blocks:
            if isinstance(b, Para):
                text_line(b.parts)
                pdf.ln(1)
            elif isinstance(b, Bullets):
                left = pdf.l_margin
                for item in b.items:
                    pdf.set_x(left)
                    pdf.set_font(sans, "", 10)
                    pdf.write(5, "- ")
                    pdf.set_left_margin(left + 4)
                    text_line(item)
                    pdf.set_left_margin(left)
                pdf.ln(1)
            elif isinstance(b, Callout):
                pdf.set_fill_color(255, 248, 225) if b.level == "warning" else pdf.set_fill_color(235, 244, 255)
                label = "Warning: " if b.level == "warning" else "Note: "
                text = label + "".join(p.text if not isinstance(p, str) else p for p in b.parts)
                pdf.set_font(sans, "", 9.5)
                pdf.multi_cell(epw, 5, T(text), fill=True, new_x="LMARGIN", new_y="NEXT", padding=1.5)
                pdf.ln(1.5)
            elif isinstance(b, Table):
                ncol = len(b.columns)
                pdf.set_font(sans, "", 7.5 if ncol > 4 else 8.5)
                with pdf.table(text_align="LEFT", line_height=3.6 if ncol > 4 else 4.2,
                               headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
                               col_widths=_pdf_col_widths(b), width=epw) as tbl:
                    for row in [b.columns] + b.rows:
                        r = tbl.row()
                        for x in row:
                            r.cell(T(_break_long(str(x))))
                pdf.ln(2)
            elif isinstance(b, CodeBlock):
                pdf.set_font(mono, "", 7)
                pdf.set_fill_color(246, 248, 250)
                pdf.multi_cell(epw, 3.4, T(b.text), fill=True, new_x="LMARGIN", new_y="NEXT", padding=1.5)
                pdf.ln(2)
            elif isinstance(b, Figure):
                png = card.figures.get(b.name)
                if png:
                    img = Image.open(io.BytesIO(png))
                    w_mm = min(epw, img.width * 0.26)  # ~96 dpi
                    h_mm = w_mm * img.height / img.width
                    if pdf.will_page_break(h_mm + 8):
                        pdf.add_page()
                    pdf.image(img, w=w_mm, h=h_mm)
                pdf.set_font(sans, "I", 8.5)
                pdf.multi_cell(epw, 4.5, T(b.caption), new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
    return bytes(pdf.output())


def _pdf_col_widths(t: Table) -> tuple:
    """Column widths proportional to content length (clamped), so prompts and file names get room."""
    lens = []
    for i, c in enumerate(t.columns):
        longest = max([len(str(c))] + [len(str(r[i])) for r in t.rows if i < len(r)])
        lens.append(min(max(longest, 7), 45))  # numbers such as -0.053 stay on one line
    return tuple(lens)


def _break_long(s: str, n: int = 30) -> str:
    """Insert spaces into very long unbroken runs (hashes, paths) so table cells can wrap."""
    return re.sub(r"(\S{%d})(?=\S)" % n, r"\1 ", s)


# ---------------------------------------------------------------------------------------------------- JSON
def _block_json(b: Any) -> dict:
    def inline(parts):
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append({"type": type(p).__name__.lower(), **dataclasses.asdict(p)})
        return out
    if isinstance(b, Para):
        return {"kind": "para", "parts": inline(b.parts)}
    if isinstance(b, Bullets):
        return {"kind": "bullets", "items": [inline(i) for i in b.items]}
    if isinstance(b, Callout):
        return {"kind": "callout", "level": b.level, "parts": inline(b.parts)}
    if isinstance(b, Figure):
        return {"kind": "figure", "name": b.name, "path": f"{IMAGES_SUBDIR}/{b.name}", "caption": b.caption}
    return dataclasses.asdict(b)


def render_json(card: Card) -> bytes:
    """Everything: metadata, sections (as typed blocks), tables, provenance, environment, warnings."""
    doc = {
        "schema": JSON_SCHEMA,
        "title": card.title,
        "summary": card.summary,
        "pipeline_check": card.pipeline_check,
        "pipeline_check_label": PIPELINE_CHECK_LABEL if card.pipeline_check else None,
        "date": card.date,
        "metadata": card.metadata,
        "warnings": card.warnings,
        "figures": [f"{IMAGES_SUBDIR}/{n}" for n in card.figures],
        **card.data,
        "sections": [{"id": s.id, "title": s.title, "level": s.level, "blocks": [_block_json(b) for b in s.blocks]}
                     for s in card.sections],
    }
    text = json.dumps(_finite(doc), indent=2, ensure_ascii=False, default=_json_default, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _finite(o: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python, recursively."""
    if isinstance(o, Mapping):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if hasattr(o, "item") and getattr(o, "shape", None) == ():
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    return str(o)


# ----------------------------------------------------------------------------------------------- public API
_RENDERERS = {"md": render_md, "html": render_html, "pdf": render_pdf, "json": render_json}


def parse_formats(spec: str | Sequence[str]) -> list[str]:
    items = [x.strip().lower() for x in (spec.split(",") if isinstance(spec, str) else spec) if x.strip()]
    for x in items:
        if x not in FORMATS:
            raise UserError(f"--format {x!r}: unknown format; choose from {', '.join(FORMATS)} (comma-separated)")
    if not items:
        raise UserError(f"--format: give at least one of {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def render(run: Run | Card, fmt: str, compare_run: Run | None = None) -> bytes:
    """One format's bytes, e.g. for st.download_button. Pass a Card (from build_card) to render several formats
    without rebuilding. Markdown refers to figures under images/ (write_card writes them); HTML inlines them."""
    fmt = parse_formats([fmt])[0]
    card = run if isinstance(run, Card) else build_card(run, compare_run)
    return _RENDERERS[fmt](card)


def write_card(run: Run, out_dir: str | Path, formats: Sequence[str] | str = FORMATS, compare_run: Run | None = None,
               overrides_path: str | Path | None = None) -> dict[str, Path]:
    """Write the chosen formats (and the figures) into out_dir atomically. Returns {format: path}."""
    fmts = parse_formats(formats)
    card = build_card(run, compare_run, overrides_path)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for name, png in card.figures.items():
        atomic_write_bytes(out / IMAGES_SUBDIR / name, png)
    for stale in FIGURE_NAMES - set(card.figures):  # a figure of an earlier build that this card no longer has
        (out / IMAGES_SUBDIR / stale).unlink(missing_ok=True)
    for fmt in fmts:
        path = out / FILE_NAMES[fmt]
        atomic_write_bytes(path, _RENDERERS[fmt](card))
        written[fmt] = path
    return written


# ---------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser, command: str) -> None:
    parser.add_argument("run", help="run folder (made by `train`)")
    parser.add_argument("--compare", metavar="RUN_B", default=None,
                        help="the counterpart run (style for a character run, or the reverse) to compare with")
    parser.add_argument("--format", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--out", default=None, help="output folder; None means reports/<run name>/")
    parser.add_argument("--overrides", default=None,
                        help="overrides file, YAML or JSON; None means RUN/card.yaml when it exists")
    parser.add_argument("--init-overrides", action="store_true",
                        help="write a commented RUN/card.yaml to fill in (never overwrites one) and stop")


def run(args) -> int:
    r = Run(args.run)
    r.meta  # raises a UserError naming the folder if it is not a run
    if args.init_overrides:
        path = r.card_overrides_path
        if path.exists():
            raise UserError(f"{path}: already exists; edit it (it is never overwritten)")
        atomic_write_bytes(path, overrides_template(r).encode("utf-8"))
        print(f"wrote {path}: fill it in, then run `python -m core card {r.path}`")
        return 0
    compare_run = None
    if args.compare:
        compare_run = Run(args.compare)
        compare_run.meta
        if compare_run.path.resolve() == r.path.resolve():
            raise UserError(f"--compare {args.compare}: the same run as RUN; give the counterpart run")
    fmts = parse_formats(args.format)
    out = Path(args.out) if args.out else Path("reports") / r.name
    written = write_card(r, out, fmts, compare_run=compare_run, overrides_path=args.overrides)
    for fmt, path in written.items():
        print(f"{fmt:5s} {path}")
    if r.is_pipeline_check:
        print("note: random-weight run: the card is labelled as a pipeline check")
    return 0
