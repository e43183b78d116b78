"""The review store of one run: reading RUN/review/*.jsonl into a `ReviewState`, and appending checked lines.

`ReviewStore(run).state()` folds the append-only history: a retracted flag no longer counts (its line stays), a
reviewer's later flag on the same target replaces their earlier one, a finding is its first line with every update
applied. Writes (`add_flag`, `add_finding`, `update_finding`, `retract`) validate everything first (the records'
checks, then that the target or id exists in this run) and append one line under the file's lock
(core.runfolder's `append_jsonl`), so concurrent reviewers never lose or tear a line; nothing is written when a
check fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from core.errors import UserError
from core.review.records import (
    FLAGS,
    Annotation,
    AnnotationLine,
    Finding,
    FindingLine,
    FindingUpdate,
    Retraction,
    Target,
    check_id,
    parse_annotation_line,
    parse_finding_line,
)
from core.runfolder import Run


@dataclass(frozen=True)
class FindingState:
    """A finding as it stands after every update, with its history (the lines, oldest first)."""

    id: str
    title: str
    text: str
    severity: str
    status: str
    mitigation: str
    evidence: tuple[str, ...]
    reviewer: str  # who wrote it
    created: str
    updated: str
    retracted: bool
    history: tuple[Any, ...]  # Finding, FindingUpdate, Retraction lines

    @property
    def date(self) -> str:
        return self.created[:10]

    @property
    def updated_by(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.reviewer for line in self.history))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "severity": self.severity,
                "status": self.status, "mitigation": self.mitigation, "evidence": list(self.evidence),
                "reviewer": self.reviewer, "created": self.created, "updated": self.updated,
                "retracted": self.retracted, "history": [line.to_json() for line in self.history]}


def _fold_finding(first: Finding, later: Iterable[Any]) -> FindingState:
    state = {"severity": first.severity, "status": first.status, "mitigation": first.mitigation}
    evidence, updated, retracted, history = list(first.evidence), first.time, False, [first]
    for line in later:
        history.append(line)
        updated = line.time
        if isinstance(line, Retraction):
            retracted = True
            continue
        for key in state:
            if getattr(line, key) is not None:
                state[key] = getattr(line, key)
        evidence += [e for e in line.evidence if e not in evidence]
    return FindingState(first.id, first.title, first.text, state["severity"], state["status"], state["mitigation"],
                        tuple(evidence), first.reviewer, first.time, updated, retracted, tuple(history))


@dataclass(frozen=True)
class ReviewState:
    """Everything the store holds, folded. `warnings` names lines that refer to ids the store does not have."""

    annotations: tuple[Annotation, ...] = ()
    retractions: tuple[Retraction, ...] = ()
    findings: tuple[FindingState, ...] = ()
    warnings: tuple[str, ...] = ()
    retracted: frozenset[str] = field(default_factory=frozenset)

    @property
    def active(self) -> list[Annotation]:
        """Flags not retracted, oldest first."""
        return [a for a in self.annotations if a.id not in self.retracted]

    def current(self) -> dict[tuple[str, str], Annotation]:
        """(target key, reviewer) -> that reviewer's latest active flag on that target."""
        return dict(self._current)

    @cached_property
    def _current(self) -> dict[tuple[str, str], Annotation]:
        out: dict[tuple[str, str], Annotation] = {}
        for a in self.active:
            out[(a.target.key, a.reviewer)] = a
        return out

    def image_flags(self) -> dict[str, dict[str, Annotation]]:
        """image path -> {reviewer: their current flag on it} (computed once per state; treat as read-only)."""
        return self._by_image

    @cached_property
    def _by_image(self) -> dict[str, dict[str, Annotation]]:
        out: dict[str, dict[str, Annotation]] = {}
        for (_, reviewer), a in self._current.items():
            if a.target.type == "image":
                out.setdefault(a.target.path, {})[reviewer] = a
        return out

    def other_flags(self) -> list[Annotation]:
        """Current flags on checkpoints and on the whole run."""
        return [a for a in self.current().values() if a.target.type != "image"]

    @property
    def reviewers(self) -> list[str]:
        return sorted({a.reviewer for a in self.annotations} | {f.reviewer for f in self.findings})

    def live_findings(self) -> list[FindingState]:
        return [f for f in self.findings if not f.retracted]

    def flag_counts(self) -> dict[str, int]:
        """flag -> number of current flags (all targets, all reviewers)."""
        counts = dict.fromkeys(FLAGS, 0)
        for a in self.current().values():
            counts[a.flag] += 1
        return counts

    def find(self, ident: str) -> Any:
        """The annotation or finding with this id, or None."""
        return next((a for a in self.annotations if a.id == ident), None) or \
            next((f for f in self.findings if f.id == ident), None)

    def to_json(self) -> dict[str, Any]:
        return {"flags": [a.to_json() for a in self.active],
                "retractions": [r.to_json() for r in self.retractions],
                "findings": [f.to_json() for f in self.findings], "warnings": list(self.warnings)}


def fold(annotation_lines: Iterable[AnnotationLine], finding_lines: Iterable[FindingLine],
         sources: tuple[str, str] = ("annotations.jsonl", "findings.jsonl")) -> ReviewState:
    """The state of the store from its lines, in file order."""
    annotations, retractions, warnings = [], [], []
    for line in annotation_lines:
        (retractions if isinstance(line, Retraction) else annotations).append(line)
    flag_ids = {a.id for a in annotations}
    for r in retractions:
        if r.retracts not in flag_ids:
            warnings.append(f"{sources[0]}: {r.id} retracts {r.retracts}, which is not a flag of this run; ignored")
    firsts: dict[str, Finding] = {}
    later: dict[str, list[Any]] = {}
    for line in finding_lines:
        if isinstance(line, Finding):
            firsts[line.id] = line
            later.setdefault(line.id, [])
            continue
        target = line.retracts if isinstance(line, Retraction) else line.updates
        if target not in firsts:
            warnings.append(f"{sources[1]}: {line.id} names {target}, which is not a finding written before it; "
                            "ignored")
            continue
        later[target].append(line)
        if isinstance(line, Retraction):
            retractions.append(line)
    findings = tuple(_fold_finding(first, later[fid]) for fid, first in firsts.items())
    retracted = frozenset(r.retracts for r in retractions)
    return ReviewState(tuple(annotations), tuple(retractions), findings, tuple(warnings), retracted)


class ReviewStore:
    """Reads and appends the review lines of `run` (RUN/review/, paths owned by core.runfolder)."""

    def __init__(self, run: Run):
        self.run = run

    # ------------------------------------------------------------------------------------------- reading
    def annotation_lines(self) -> list[AnnotationLine]:
        path = self.run.annotations_path
        return [parse_annotation_line(f"{path}: line {n}", data)
                for n, data in enumerate(self.run.read_annotations(), 1)]

    def finding_lines(self) -> list[FindingLine]:
        path = self.run.findings_path
        return [parse_finding_line(f"{path}: line {n}", data) for n, data in enumerate(self.run.read_findings(), 1)]

    def state(self) -> ReviewState:
        """The folded state; a damaged line is a UserError naming the file, the line and the key."""
        return fold(self.annotation_lines(), self.finding_lines(),
                    (self.run.annotations_path.name, self.run.findings_path.name))

    # ------------------------------------------------------------------------------------------- checks
    def image_paths(self) -> set[str]:
        """The image paths images.csv lists (the only images a reviewer can flag)."""
        return {row.get("path", "") for row in self.run.read_images()}

    def check_target(self, target: Target) -> Target:
        """The target exists in this run: an image it lists (and that stays inside it), or one of its checkpoints."""
        if target.type == "image":
            self.run.resolve_inside(target.path, what="image")  # `..`, absolute, a symlink out: refused
            if target.path not in self.image_paths():
                raise UserError(f"image {target.path!r}: not an image of {self.run.path} (images.csv does not list "
                                "it); give a path as images.csv spells it")
        elif target.type == "checkpoint":
            steps = sorted(set(self.run.embedding_steps()) | {int(r.get("step") or 0) for r in self.run.read_images()})
            if target.step not in steps:
                raise UserError(f"checkpoint {target.step}: not a checkpoint of {self.run.path} (have: "
                                f"{', '.join(map(str, steps)) or 'none'})")
        return target

    # ------------------------------------------------------------------------------------------- writing
    def add_flag(self, reviewer: str, target: Target, flag: str, note: str = "") -> Annotation:
        line = Annotation.new(reviewer, target, flag, note)  # the fields first, then the run
        self.check_target(target)
        self.run.append_annotations([line.to_json()])
        return line

    def add_finding(self, reviewer: str, title: str, text: str, severity: str, status: str = "open",
                    mitigation: str = "", evidence: Iterable[str] = ()) -> Finding:
        line = Finding.new(reviewer, title, text, severity, status, mitigation, list(evidence))
        self.run.append_findings([line.to_json()])
        return line

    def update_finding(self, reviewer: str, finding_id: str, **changes: Any) -> FindingUpdate:
        line = FindingUpdate.new(reviewer, finding_id, **changes)
        current = next((f for f in self.state().findings if f.id == finding_id), None)
        if current is None:
            raise UserError(f"--update {finding_id}: no such finding in {self.run.path}; see `python -m core review "
                            f"{self.run.path} --list`")
        if current.retracted:
            raise UserError(f"--update {finding_id}: that finding was retracted; write a new one")
        self.run.append_findings([line.to_json()])
        return line

    def retract(self, reviewer: str, ident: str, note: str = "") -> Retraction:
        """Withdraw a flag (a-...) or a finding (f-...): a new line naming it; the history keeps both."""
        check_id(ident, "--retract")
        line = Retraction.new(reviewer, ident, note)
        state = self.state()
        if ident in state.retracted:
            raise UserError(f"--retract {ident}: already retracted")
        found = state.find(ident)
        if found is None:
            raise UserError(f"--retract {ident}: no flag or finding with this id in {self.run.path}; see "
                            f"`python -m core review {self.run.path} --list`")
        if isinstance(found, Annotation):
            self.run.append_annotations([line.to_json()])
        else:
            self.run.append_findings([line.to_json()])
        return line
