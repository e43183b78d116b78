"""How far the learned token moved from its initializer word: L2 distance, cosine and norm per saved checkpoint
(from the run's embeddings/), and the nearest vocabulary tokens at the first and last step (from neighbors.csv)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.runfolder import Run

NEIGHBORS_SHOWN = 5  # nearest tokens listed per step


@dataclass(frozen=True)
class Movement:
    steps: list                                  # checkpoint steps with a saved embedding
    rows: list = field(default_factory=list)     # [{step, vector, l2_from_init, cosine_to_init, norm, init_norm}]
    neighbors: dict = field(default_factory=dict)  # {step: [{vector, rank, token, cosine, distance_from_init}]}
    error: str = ""                              # why movement cannot be measured ('' when it can)

    def at_last_step(self) -> list[dict]:
        return [row for row in self.rows if self.steps and row["step"] == self.steps[-1]]

    def as_json(self) -> dict:
        out = {"steps": self.steps, "rows": self.rows,
               "neighbors": {str(step): rows for step, rows in self.neighbors.items()}}
        return {**out, "error": self.error} if self.error else out


def _vector_rows(step: int, initial: np.ndarray, current: np.ndarray) -> list[dict]:
    rows = []
    for index in range(initial.shape[0]):
        start, now = initial[index], current[index]
        norms = np.linalg.norm(start) * np.linalg.norm(now)
        rows.append({"step": step, "vector": index, "l2_from_init": float(np.linalg.norm(now - start)),
                     "cosine_to_init": float(start @ now / norms) if norms else float("nan"),
                     "norm": float(np.linalg.norm(now)), "init_norm": float(np.linalg.norm(start))})
    return rows


def _nearest_tokens(run: Run) -> dict[int, list[dict]]:
    by_step: dict[int, list[dict]] = {}
    for row in run.read_neighbors():
        try:
            by_step.setdefault(int(row["step"]), []).append(row)
        except (KeyError, ValueError):
            continue
    out = {}
    for step in sorted({min(by_step), max(by_step)}) if by_step else []:
        ranked = sorted(by_step[step], key=lambda row: (int(row.get("vector") or 0), int(row.get("rank") or 0)))
        out[step] = [{key: row.get(key) for key in ("vector", "rank", "token", "cosine", "distance_from_init")}
                     for row in ranked[:NEIGHBORS_SHOWN]]
    return out


def measure_movement(run: Run, token: str) -> Movement:
    steps = run.embedding_steps()
    if not steps:
        return Movement(steps=steps)
    if steps[0] != 0:  # e.g. an imported embedding: no initializer saved, so no movement to measure
        return Movement(steps=steps, error=(
            f"no step-0 (initializer) embedding in {run.embeddings_dir.name}/ (have steps "
            f"{', '.join(map(str, steps))}): how far the token moved cannot be measured"))
    first = run.load_embedding(steps[0])
    if token not in first:
        return Movement(steps=steps, error=f"{run.embedding_path(steps[0]).name}: no tensor named {token!r} "
                                           f"(have: {', '.join(first)})")
    initial = np.asarray(first[token], dtype=np.float64)
    rows = []
    for step in steps:
        current = run.load_embedding(step).get(token, np.full_like(initial, np.nan))
        rows += _vector_rows(step, initial, np.asarray(current, dtype=np.float64))
    return Movement(steps=steps, rows=rows, neighbors=_nearest_tokens(run))
