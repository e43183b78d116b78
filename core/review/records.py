"""The review store's records: one JSON object per line of RUN/review/annotations.jsonl and findings.jsonl.

Each record type parses *and* writes its line (`parse` / `to_json`); it is the only place that knows the keys.
Every field a person types is checked where it enters (`new`) and again where a line is read (`parse`: a line
edited by hand is reported naming the file and line, never half-trusted):

    annotations.jsonl   Annotation  id, time, reviewer, tool_version, target, flag, note
                        Retraction  id, time, reviewer, tool_version, retracts (an annotation's id), note
    findings.jsonl      Finding       id, time, reviewer, tool_version, title, text, severity, status, mitigation,
                                      evidence
                        FindingUpdate id, time, reviewer, tool_version, updates (a finding's id), and what changed:
                                      severity, status, mitigation, evidence (added), note
                        Retraction    (as above, naming a finding's id: the finding is withdrawn)

Nothing is ever edited in place: a change of mind is a new line (a retraction, an update), so the history stays.
`target` is {"type": "image", "path": "images/step-000020/p00-s0.png"} (relative to the run), {"type":
"checkpoint", "step": 20} or {"type": "run"}.
"""

from __future__ import annotations

import datetime as _dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from core.errors import UserError
from core.runfolder import JsonFields

FLAGS = ("on-model", "off-model", "copy-suspected", "harmful", "misuse-transfer", "other")
SEVERITIES = ("low", "medium", "high")
FINDING_STATUSES = ("open", "mitigated", "accepted")
TARGET_TYPES = ("image", "checkpoint", "run")
MAX_NOTE = 2000  # characters of a note (issue 20)
MAX_REVIEWER = 100
MAX_TITLE = 200
MAX_TEXT = 10_000  # a finding's text and mitigation
MAX_EVIDENCE = 50  # evidence items per line
MAX_EVIDENCE_ITEM = 2000
EXAMPLE_PREFIX = "EXAMPLE"  # the demo's example lines say so in their note/title


# ------------------------------------------------------------------------------------------ validation
# Bidirectional-override and isolate characters can make a note read differently from what it says
# ("Trojan Source"); they count as control characters here, as do C0/C1 controls and DEL.
# C0 and C1 controls and DEL are Unicode category Cc (U+0000-001F, U+007F-009F).
_BIDI = "\u202a-\u202e\u2066-\u2069\u200e\u200f"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")  # tab (09) and newline (0a) allowed


def control_characters(text: str, allow_newlines: bool) -> list[str]:
    """The control characters in `text` (as U+XXXX), tab and newline excepted when `allow_newlines`."""
    return [f"U+{ord(c):04X}" for c in (_CONTROL_BUT_LINES if allow_newlines else _CONTROL).findall(text)]


def check_text(value: Any, name: str, limit: int, *, required: bool = False, multiline: bool = True) -> str:
    """A typed text field: str, at most `limit` characters, no control characters (newlines and tabs only where
    `multiline`), non-blank when `required`. CRLF is read as LF. A UserError names the field and the rule."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise UserError(f"{name}: must be text, got {type(value).__name__}")
    value = value.replace("\r\n", "\n")
    if required and not value.strip():
        raise UserError(f"{name}: empty; give a {name}")
    if len(value) > limit:
        raise UserError(f"{name}: {len(value):,} characters; at most {limit:,} are allowed")
    bad = control_characters(value, allow_newlines=multiline)
    if bad:
        raise UserError(f"{name}: contains control character(s) {', '.join(sorted(set(bad))[:5])}; "
                        "remove them" + ("" if multiline else " (one line of text)"))
    return value


def check_reviewer(value: Any) -> str:
    """A reviewer's name: one line of 1-100 characters, no control characters; leading/trailing spaces dropped."""
    return check_text(value, "reviewer", MAX_REVIEWER, required=True, multiline=False).strip()


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UserError(f"{name} {value!r}: unknown; use one of {', '.join(choices)}")
    return value


def check_image_path(value: Any) -> str:
    """An image path as the run's images.csv spells it: relative, '/'-separated, no '..' (the store checks that the
    run lists it)."""
    text = check_text(value, "image", 1000, required=True, multiline=False).strip()
    parts = text.replace("\\", "/").split("/")
    if text.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", text):
        raise UserError(f"image {text!r}: leads outside the run; give the path relative to the run "
                        "(as images.csv lists it, e.g. images/step-000020/p00-s0.png)")
    return "/".join(p for p in parts if p not in ("", "."))


def check_evidence(items: Any) -> tuple[str, ...]:
    if items is None:
        return ()
    if isinstance(items, str) or not isinstance(items, (list, tuple)):
        raise UserError("evidence: must be a list of image paths, metric names or links")
    if len(items) > MAX_EVIDENCE:
        raise UserError(f"evidence: {len(items)} items; at most {MAX_EVIDENCE} per line")
    out = tuple(check_text(item, "evidence", MAX_EVIDENCE_ITEM, required=True, multiline=False).strip()
                for item in items)
    return tuple(dict.fromkeys(out))


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[af]-[0-9a-f]{12}", value):
        raise UserError(f"{name} {value!r}: not a review id (like a-0123456789ab for a flag, f-... for a finding); "
                        "see `python -m core review RUN --list`")
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TIME = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ")


def _check_time(value: str, name: str) -> str:
    if not _TIME.fullmatch(value):
        raise UserError(f"{name} {value!r}: not a UTC ISO 8601 time like 2026-01-31T12:00:00Z")
    return value


def _tool_version() -> str:
    from core import __version__

    return __version__


# ---------------------------------------------------------------------------------------------- lines
class _LineFields(JsonFields):
    """JsonFields for one line of a JSONL file: errors name "FILE: line N" and the key, and say to repair the line."""

    def _fail(self, key: str, rule: str) -> UserError:
        return UserError(f"{self.path}: key {self.prefix + key!r} {rule}; the line is damaged or was edited by hand - "
                         "repair or delete that line")

    def sub(self, key: str, *, required: bool = True) -> "_LineFields":
        return _LineFields(self.path, self.get(key, dict, required=required, default={}), f"{self.prefix}{key}.")


def _fields(source: str, data: Any) -> JsonFields:
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a JSON object; the line is damaged (repair or delete that line)")
    return _LineFields(source, data)


def _note(source: str, r: JsonFields) -> str:
    """A line's optional `note`, checked as a note written through the commands is."""
    return _checked(source, check_text, r.get("note", str, required=False, default=""), "note", MAX_NOTE)


def _checked(source: str, fn, *args, **kw):
    """Run a field check on a value read from a file; its error names the file and line."""
    try:
        return fn(*args, **kw)
    except UserError as e:
        raise UserError(f"{source}: {e}; the line is damaged or was edited by hand - repair or delete that line") \
            from None


def _common(source: str, r: JsonFields, prefix: str) -> dict[str, Any]:
    """id, time, reviewer, tool_version of a line; its id must start with the file's prefix (a- or f-)."""
    ident = _checked(source, check_id, r.get("id", str), "id")
    if not ident.startswith(prefix + "-"):
        raise UserError(f"{source}: id {ident!r} does not belong in this file (its ids start with {prefix}-)")
    return {"id": ident, "time": _checked(source, _check_time, r.get("time", str), "time"),
            "reviewer": _checked(source, check_reviewer, r.get("reviewer", str)),
            "tool_version": r.get("tool_version", str, required=False, default="")}


@dataclass(frozen=True)
class Target:
    """What a flag is about: an image of the run (path relative to it), a checkpoint, or the whole run."""

    type: str
    path: str = ""
    step: int | None = None

    @classmethod
    def image(cls, path: str) -> Target:
        return cls("image", path=check_image_path(path))

    @classmethod
    def checkpoint(cls, step: int) -> Target:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise UserError(f"checkpoint {step!r}: must be a step number >= 0")
        return cls("checkpoint", step=step)

    @property
    def key(self) -> str:
        """One string per target (for grouping): 'image:PATH', 'checkpoint:STEP' or 'run'."""
        return {"image": f"image:{self.path}", "checkpoint": f"checkpoint:{self.step}"}.get(self.type, "run")

    def describe(self) -> str:
        return {"image": self.path, "checkpoint": f"checkpoint {self.step}"}.get(self.type, "the whole run")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **({"path": self.path} if self.type == "image" else {}),
                **({"step": self.step} if self.type == "checkpoint" else {})}

    @classmethod
    def parse(cls, source: str, r: JsonFields) -> Target:
        kind = r.get("type", str, choices=TARGET_TYPES)
        if kind == "image":
            return cls("image", path=_checked(source, check_image_path, r.get("path", str)))
        if kind == "checkpoint":
            return _checked(source, cls.checkpoint, r.get("step", int))
        return cls("run")


@dataclass(frozen=True)
class Annotation:
    """One reviewer's flag on a target, with an optional note (annotations.jsonl)."""

    id: str
    time: str
    reviewer: str
    tool_version: str
    target: Target
    flag: str
    note: str = ""

    @classmethod
    def new(cls, reviewer: str, target: Target, flag: str, note: str = "") -> Annotation:
        return cls(new_id("a"), utc_now(), check_reviewer(reviewer), _tool_version(), target,
                   check_choice(flag, "flag", FLAGS), check_text(note, "note", MAX_NOTE))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "reviewer": self.reviewer, "tool_version": self.tool_version,
                "target": self.target.to_json(), "flag": self.flag, "note": self.note}

    @classmethod
    def parse(cls, source: str, r: JsonFields) -> Annotation:
        return cls(**_common(source, r, "a"), target=Target.parse(source, r.sub("target")),
                   flag=r.get("flag", str, choices=FLAGS),
                   note=_note(source, r))


@dataclass(frozen=True)
class Retraction:
    """Withdraws an earlier line (a flag, or a finding) by its id; the withdrawn line stays in the file."""

    id: str
    time: str
    reviewer: str
    tool_version: str
    retracts: str
    note: str = ""

    @classmethod
    def new(cls, reviewer: str, retracts: str, note: str = "") -> Retraction:
        prefix = "a" if retracts.startswith("a-") else "f"
        return cls(new_id(prefix), utc_now(), check_reviewer(reviewer), _tool_version(),
                   check_id(retracts, "--retract"), check_text(note, "note", MAX_NOTE))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "reviewer": self.reviewer, "tool_version": self.tool_version,
                "retracts": self.retracts, "note": self.note}

    @classmethod
    def parse(cls, source: str, r: JsonFields, prefix: str) -> Retraction:
        return cls(**_common(source, r, prefix), retracts=_checked(source, check_id, r.get("retracts", str),
                                                                   "retracts"),
                   note=_note(source, r))


@dataclass(frozen=True)
class Finding:
    """A finding of the review as first written (findings.jsonl); later lines update it (`FindingUpdate`)."""

    id: str
    time: str
    reviewer: str
    tool_version: str
    title: str
    text: str
    severity: str
    status: str = "open"
    mitigation: str = ""
    evidence: tuple[str, ...] = ()

    @classmethod
    def new(cls, reviewer: str, title: str, text: str, severity: str, status: str = "open",
            mitigation: str = "", evidence: Any = ()) -> Finding:
        return cls(new_id("f"), utc_now(), check_reviewer(reviewer),
                   _tool_version(), check_text(title, "title", MAX_TITLE, required=True, multiline=False).strip(),
                   check_text(text, "text", MAX_TEXT, required=True), check_choice(severity, "severity", SEVERITIES),
                   check_choice(status, "status", FINDING_STATUSES), check_text(mitigation, "mitigation", MAX_TEXT),
                   check_evidence(list(evidence)))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "reviewer": self.reviewer, "tool_version": self.tool_version,
                "title": self.title, "text": self.text, "severity": self.severity, "status": self.status,
                "mitigation": self.mitigation, "evidence": list(self.evidence)}

    @classmethod
    def parse(cls, source: str, r: JsonFields) -> Finding:
        text = r.get("text", str, required=False, default="")
        return cls(**_common(source, r, "f"),
                   title=_checked(source, check_text, r.get("title", str), "title", MAX_TITLE, required=True,
                                  multiline=False),
                   text=_checked(source, check_text, text, "text", MAX_TEXT),
                   severity=r.get("severity", str, choices=SEVERITIES),
                   status=r.get("status", str, required=False, default="open", choices=FINDING_STATUSES),
                   mitigation=_checked(source, check_text, r.get("mitigation", str, required=False, default=""),
                                       "mitigation", MAX_TEXT),
                   evidence=_checked(source, check_evidence, r.get("evidence", list, required=False, default=[])))


@dataclass(frozen=True)
class FindingUpdate:
    """A change to a finding: a new status, severity or mitigation, or more evidence (fields left None/empty
    are unchanged)."""

    id: str
    time: str
    reviewer: str
    tool_version: str
    updates: str
    severity: str | None = None
    status: str | None = None
    mitigation: str | None = None
    evidence: tuple[str, ...] = ()
    note: str = ""

    @classmethod
    def new(cls, reviewer: str, updates: str, severity: str | None = None, status: str | None = None,
            mitigation: str | None = None, evidence: Any = (), note: str = "") -> FindingUpdate:
        if severity is None and status is None and mitigation is None and not evidence and not note:
            raise UserError(f"--update {updates}: nothing to change; give --status, --severity, --mitigation, "
                            "--evidence or --note")
        return cls(new_id("f"), utc_now(), check_reviewer(reviewer), _tool_version(),
                   check_id(updates, "--update"),
                   None if severity is None else check_choice(severity, "severity", SEVERITIES),
                   None if status is None else check_choice(status, "status", FINDING_STATUSES),
                   None if mitigation is None else check_text(mitigation, "mitigation", MAX_TEXT),
                   check_evidence(list(evidence)), check_text(note, "note", MAX_NOTE))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "time": self.time, "reviewer": self.reviewer,
                               "tool_version": self.tool_version, "updates": self.updates}
        for key in ("severity", "status", "mitigation"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.evidence:
            out["evidence"] = list(self.evidence)
        if self.note:
            out["note"] = self.note
        return out

    @classmethod
    def parse(cls, source: str, r: JsonFields) -> FindingUpdate:
        mitigation = r.get("mitigation", str, required=False)
        return cls(**_common(source, r, "f"), updates=_checked(source, check_id, r.get("updates", str), "updates"),
                   severity=r.get("severity", str, required=False, choices=SEVERITIES),
                   status=r.get("status", str, required=False, choices=FINDING_STATUSES),
                   mitigation=None if mitigation is None else _checked(source, check_text, mitigation, "mitigation",
                                                                       MAX_TEXT),
                   evidence=_checked(source, check_evidence, r.get("evidence", list, required=False, default=[])),
                   note=_note(source, r))


AnnotationLine = Annotation | Retraction
FindingLine = Finding | FindingUpdate | Retraction


_ID = re.compile(r"a-[0-9a-f]{12}")
_FLAG_SET = frozenset(FLAGS)


def _fast_flag(data: Any) -> Annotation | None:
    """The common line (a well-formed flag on an image) checked in one pass: the same rules as `Annotation.parse`,
    without building an error message. None when anything is off (the full parse then names the key)."""
    if not isinstance(data, dict) or "retracts" in data:
        return None
    ident, time, who, version = data.get("id"), data.get("time"), data.get("reviewer"), data.get("tool_version", "")
    target, flag, note = data.get("target"), data.get("flag"), data.get("note", "")
    if not (isinstance(ident, str) and _ID.fullmatch(ident) and isinstance(time, str) and _TIME.fullmatch(time)
            and isinstance(who, str) and 0 < len(who) <= MAX_REVIEWER and who == who.strip()
            and not _CONTROL.search(who) and isinstance(version, str) and flag in _FLAG_SET
            and isinstance(note, str) and len(note) <= MAX_NOTE and "\r" not in note
            and not _CONTROL_BUT_LINES.search(note) and isinstance(target, dict) and target.get("type") == "image"):
        return None
    path = target.get("path")
    if not (isinstance(path, str) and path and len(path) <= 1000 and not _CONTROL.search(path)
            and not path.startswith(("/", "\\")) and "\\" not in path and ":" not in path
            and path == path.strip() and ".." not in path.split("/") and "//" not in path
            and "./" not in path and not path.endswith("/")):
        return None
    return Annotation(ident, time, who, version, Target("image", path=path), flag, note)


def parse_annotation_line(source: str, data: Any) -> AnnotationLine:
    """One line of annotations.jsonl (already JSON-decoded); `source` is 'FILE:LINE' for the error messages."""
    fast = _fast_flag(data)
    if fast is not None:
        return fast
    r = _fields(source, data)
    return Retraction.parse(source, r, "a") if "retracts" in r.data else Annotation.parse(source, r)


def parse_finding_line(source: str, data: Any) -> FindingLine:
    r = _fields(source, data)
    if "retracts" in r.data:
        return Retraction.parse(source, r, "f")
    return FindingUpdate.parse(source, r) if "updates" in r.data else Finding.parse(source, r)
